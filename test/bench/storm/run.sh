#!/bin/sh
# Boot storm: N simulated Raspberry Pis (3B, 3B+, 4, 5 in turn) power on at
# once and netboot — DHCP, TFTP, NFS root and a 60 MB working set — from
# `pictl serve` (bin/pictl, make build), then from dnsmasq + nfs-ganesha
# serving the same files, each Pi from its own network namespace.
# By default it prints two tables: -pace none (Pis answer at once: server
# throughput) and -pace real (each Pi spends a real Pi's own time between
# the exchanges: does the server keep up?). See main.go and pace.go.
# Needs root and make bench-deps (dnsmasq-base, nfs-ganesha, rpcbind).
# Usage: test/bench/storm/run.sh [-n 1,25,100] [-servers pictl,dnsmasq] [-pace none,real] [-v]
set -eu
cd "$(dirname "$0")/../../.."
go build -o /tmp/pictl-storm-bench ./test/bench/storm
exec /tmp/pictl-storm-bench "$@"
