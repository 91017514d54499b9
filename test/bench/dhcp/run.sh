#!/bin/sh
# Benchmark pictl's dhcpd against kea-dhcp4 with perfdhcp (needs root,
# iproute2, kea-admin, kea-dhcp4-server). Extra arguments go to the bench,
# e.g. -duration 30s -search-duration 5s -clients 50000.
set -eu
cd "$(dirname "$0")/../../.."
bin=$(mktemp -d)/dhcp-bench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./test/bench/dhcp
"$bin" "$@"
