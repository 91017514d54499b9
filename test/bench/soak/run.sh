#!/bin/sh
# Hardening soak (issue 18): `pictl serve` in a network namespace under
# mixed hostile load on every port — idle NFS connections, unfinished 15 MiB
# RPC records, idle and 401'd API keep-alives, forged-MAC DISCOVERs and
# spoofed DECLINEs — for SOAK (default 3m) while node n1 boots every two
# seconds (udhcpc lease, TFTP download with curl, NFS mount and read with
# the project's NFS client, `pictl node ls`). Fails on any failed boot, or
# when serve goes over its descriptor, memory or database limits; prints
# the boots, the attack volume and serve's peak descriptors and RSS.
# Usage: test/bench/soak/run.sh [DURATION]   (root; Go duration, e.g. 5m)
set -eu
cd "$(dirname "$0")/../../.."
SOAK=${1:-${SOAK:-3m}}
exec env PICTL_SOAK_DURATION="$SOAK" go test -count=1 -timeout 1h -v \
	-run '^TestServeUnderHostileLoad$' ./test/hardening
