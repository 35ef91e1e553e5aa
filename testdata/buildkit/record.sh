#!/usr/bin/env bash
# Record BuildKit's answer for every case of the corpus (or the cases named as arguments):
# starts a private dockerd from Debian's docker.io (20.10, BuildKit built in) the way
# benches/lib.sh does (own data-root, exec-root and socket, no bridge, no iptables), then runs
# the ignored test `record_buildkit_answers`, which imports the corpus base (the busybox rootfs
# made on this machine) as busybox:bench, builds each case with `DOCKER_BUILDKIT=1 docker build`,
# `docker save`s it and writes testdata/buildkit/answers/NAME.json with the same normaliser
# the corpus test uses. Run as root from anywhere in the repository:
#
#   testdata/buildkit/record.sh [CASE...]
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
. "$repo/benches/lib.sh"
TOOLS=buildkit install_peers
start_dockerd

cases=$(IFS=,; echo "$*")
cd "$repo"
CORPUS_CASES=${cases:-} DOCKER=$DOCKER \
    cargo test --test buildkit_corpus -- --ignored --exact record_buildkit_answers --nocapture
