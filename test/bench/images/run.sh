#!/bin/sh
# Image import benchmark: pictl's importer vs xz -dc + loop mount + cp -a.
# Usage: test/bench/images/run.sh [-rounds N] [-keep]
set -eu
cd "$(dirname "$0")/../../.."
exec go run ./test/bench/images "$@"
