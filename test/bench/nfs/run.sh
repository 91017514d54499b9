#!/bin/sh
# Side-by-side NFSv3 benchmark: pictl nfsd vs nfs-ganesha (VFS) vs go-nfs's
# osnfs. Needs root, Debian nfs-ganesha nfs-ganesha-vfs rpcbind.
# Usage: test/bench/nfs/run.sh [-work DIR] [-runs N] [-servers ganesha,osnfs,pictl]
set -eu
cd "$(dirname "$0")/../../.."
exec go run ./test/bench/nfs "$@"
