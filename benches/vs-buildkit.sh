#!/usr/bin/env bash
# strata and BuildKit on the same cold build, runs interleaved (BuildKit, strata, BuildKit,
# strata, ...), so that load from elsewhere on the machine and a mirror's ups and downs fall
# on both alike. benches/build.sh measures one tool's runs and then the other's; on a busy
# machine, or with apt downloads in the build, the two sets can see different conditions.
#
#   bash benches/vs-buildkit.sh [CASE]
#
# CASE: a directory of testdata/bench (default debian-two-stage, which needs a Debian mirror
# and DEBIAN_TAR, a bookworm minbase made by examples/make-base.sh with PACKAGES=). Cold:
# BuildKit after `builder prune -af`, strata in a fresh root holding only the base image;
# both with `--network host` (the bench's dockerd has no bridge).
#
# Env: RUNS (rounds, default 5), STRATA (binary), DEBIAN_TAR. Run it under
# `flock /work/docker.lock` on a shared machine (it starts a dockerd). Prints each round,
# then best and median per tool and the ratio BuildKit/strata (above 1 means strata is
# faster).
. "$(dirname "$0")/lib.sh"

CASE=${1:-debian-two-stage}
CTX=$BENCH_REPO/testdata/bench/$CASE
[ -f "$CTX/Dockerfile" ] || { echo "no case $CASE in testdata/bench" >&2; exit 2; }
TOOLS="strata buildkit"
install_peers
check_strata
[ "$STRATA_OK" = 1 ] || exit 1
STRATA_BENCH_ROOT=$BENCH_WORK/strata-root
start_dockerd
if [ "$CASE" = debian-two-stage ]; then
    [ -f "${DEBIAN_TAR:-}" ] || { echo "debian-two-stage needs DEBIAN_TAR=a bookworm minbase tar" >&2; exit 2; }
    import_image "$DEBIAN_TAR" debian:bench
else
    import_base
fi

for ((i = 1; i <= RUNS; i++)); do
    docker_reset_cache "bench-$CASE"
    bk=$(time_once docker_ build --network host --progress plain -t "bench-$CASE" "$CTX")
    strata_fresh_root
    st=$(time_once strata_ build --network host -q -t "bench-$CASE" "$CTX")
    if [ "$bk" = fail ] || [ "$st" = fail ]; then
        tail -5 "$BENCH_WORK/last.log" >&2
        exit 1
    fi
    echo "$bk" >>"$BENCH_WORK/buildkit"
    echo "$st" >>"$BENCH_WORK/strata"
    printf 'round %d: buildkit %d ms, strata %d ms, load %s\n' "$i" "$bk" "$st" "$(cut -d' ' -f1 /proc/loadavg)"
done

stats() { sort -n "$1" | awk '{v[NR]=$1} END {printf "%d %d", v[1], v[int((NR+1)/2)]}'; }
read -r bk_best bk_med <<<"$(stats "$BENCH_WORK/buildkit")"
read -r st_best st_med <<<"$(stats "$BENCH_WORK/strata")"
printf '%s cold: buildkit %d/%d ms, strata %d/%d ms (best/median), buildkit/strata %s (best) %s (median)\n' \
    "$CASE" "$bk_best" "$bk_med" "$st_best" "$st_med" \
    "$(awk -v a="$bk_best" -v b="$st_best" 'BEGIN{printf "%.2f", a/b}')" \
    "$(awk -v a="$bk_med" -v b="$st_med" 'BEGIN{printf "%.2f", a/b}')"
