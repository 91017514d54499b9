#!/bin/sh
# Benchmark pictl's dhcpd against kea-dhcp4 with perfdhcp (needs root,
# iproute2, kea-admin, kea-dhcp4-server). Extra arguments go to the bench,
# e.g. -duration 30s -search-duration 5s -clients 50000. With none it
# prints two tables: the machine as is (perfdhcp, single-threaded, and the
# server share every CPU; kea with 2 threads and with 1), then perfdhcp and
# the server on CPUs of their own with the server capped at a quarter of a
# CPU, so the server, not perfdhcp, is what runs out (see main.go).
set -eu
cd "$(dirname "$0")/../../.."
bin=$(mktemp -d)/dhcp-bench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./test/bench/dhcp
if [ $# -gt 0 ]; then
	"$bin" "$@"
	exit
fi
"$bin" -perfdhcp-args "-g single" -kea-threads 2,0
"$bin" -pin 0:1 -server-cpu 0.25 -kea-threads 2,0
