#!/bin/sh
# TFTP benchmark: pictl's tftpd vs tftpd-hpa, side by side, in network
# namespaces joined by a veth (MTU 1500), curl as the client.
# Usage: test/bench/tftp/run.sh [-runs N] [-storm-clients N] [-only ROW] [-ours-env GOMAXPROCS=1]
set -eu
cd "$(dirname "$0")/../../.."
go build -o /tmp/pictl-tftp-bench ./test/bench/tftp
exec /tmp/pictl-tftp-bench "$@"
