#!/bin/sh
# Boot storm: N simulated Raspberry Pis (3B, 3B+, 4, 5 in turn) power on at
# once and netboot — DHCP, TFTP, NFS root and a 60 MB working set — from
# `pictl serve` (bin/pictl, make build), then from dnsmasq + nfs-ganesha
# serving the same files, each Pi from its own network namespace.
# Needs root and make bench-deps (dnsmasq-base, nfs-ganesha, rpcbind).
# Usage: test/bench/storm/run.sh [-n 1,25,100] [-servers pictl,dnsmasq] [-v]
set -eu
cd "$(dirname "$0")/../../.."
go build -o /tmp/pictl-storm-bench ./test/bench/storm
exec /tmp/pictl-storm-bench "$@"
