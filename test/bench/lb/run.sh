#!/bin/sh
# Benchmark pictl's balancer (L7 and L4) against nginx and HAProxy in front
# of two nginx backends on loopback, with wrk (needs nginx, haproxy, wrk:
# make bench-deps). Extra arguments go to the bench, e.g. -duration 20s
# -only nginx,pictl-http -profile DIR. With none: wrk and the proxy on
# CPUs of their own (-pin 0:1), 10 s per row, 64 and 256 connections,
# 1 KiB and 64 KiB responses, and the CPU profile of pictl's rows in
# test/bench/lb/profiles (summarised with go tool pprof -top).
set -eu
cd "$(dirname "$0")/../../.."
bin=$(mktemp -d)/lb-bench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./test/bench/lb
if [ $# -gt 0 ]; then
	"$bin" "$@"
	exit
fi
pin=""
[ "$(nproc)" -ge 2 ] && pin="-pin 0:1"
prof=$(dirname "$bin")/profiles
mkdir -p "$prof"
# shellcheck disable=SC2086
"$bin" $pin -profile "$prof"
for p in "$prof"/pictl-http-1024-*.pprof; do
	[ -f "$p" ] || continue
	echo "== CPU profile: $(basename "$p" .pprof)"
	go tool pprof -top -nodecount=25 "$bin" "$p" 2>/dev/null | sed -n '1,32p'
done
