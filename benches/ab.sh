#!/usr/bin/env bash
# Two strata binaries on the same build, runs interleaved (A, B, A, B, ...), so that load from
# elsewhere on the machine falls on both alike: the check that a change costs no speed.
#
#   bash benches/ab.sh OLD_BINARY NEW_BINARY [CASE...]
#
# Cases (default: ten-step one-run):
#   ten-step   testdata/bench/ten-step, cold (a fresh root holding only the base image) and
#              no-op (the same build again)
#   one-run    `FROM busybox:bench` + `RUN true`, built with --no-cache: the fixed cost of
#              a build with one RUN (sandbox set-up, seccomp, network)
#   three-stage  testdata/bench/three-stage, cold (fresh root): three stages that each
#              `RUN sleep 1` side by side, then the final stage's three COPY --from; what is
#              above one second is the build's own time on its critical path
#   unexported-400m  two stages, cold: the first `RUN`s 400 MiB of files, the final stage
#              copies one small file from it; the first stage's layer is not exported, so
#              what is above the RUN's own time is making (or only hashing) that layer
#   debian-two-stage  testdata/bench/debian-two-stage, cold (fresh root holding the
#              bookworm minbase as debian:bench): needs a Debian mirror and DEBIAN_TAR (a base
#              made by examples/make-base.sh with PACKAGES=); the apt downloads vary with the
#              mirror, so run it with several rounds
#
# Env: RUNS (interleaved rounds, default 10); ARGS, extra `build` arguments for both (e.g.
# `--network host`, the network benches/build.sh gives BuildKit); B_ARGS, extra `build`
# arguments for NEW only (to see a change apart from what a new default costs). Prints best
# and median per binary and the ratio NEW/OLD (below 1.00 is faster).
. "$(dirname "$0")/lib.sh"

[ $# -ge 2 ] || { echo "usage: bash benches/ab.sh OLD_BINARY NEW_BINARY [CASE...]" >&2; exit 2; }
BIN_A=$(realpath "$1")
BIN_B=$(realpath "$2")
shift 2
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(ten-step one-run)
RUNS=${RUNS:-10}

ONE_RUN=$BENCH_WORK/one-run
mkdir -p "$ONE_RUN"
printf 'FROM busybox:bench\nRUN true\n' >"$ONE_RUN/Dockerfile"

UNEXPORTED=$BENCH_WORK/unexported-400m
mkdir -p "$UNEXPORTED"
printf 'FROM busybox:bench AS build\nRUN mkdir /d && for i in 0 1 2 3; do head -c 104857600 /dev/zero > /d/$i; done && echo hi > /small\nFROM busybox:bench\nCOPY --from=build /small /small\n' >"$UNEXPORTED/Dockerfile"

read -r -a BOTH_EXTRA <<<"${ARGS:-}"
read -r -a B_EXTRA <<<"${B_ARGS:-}"

# build_args A|B: the extra build arguments of that binary.
build_args() {
    echo "${BOTH_EXTRA[@]}"
    if [ "$1" = B ]; then echo "${B_EXTRA[@]}"; fi
}

# with_binary A|B CMD...: run CMD with STRATA and the root of that binary (each its own root:
# two versions need not share a store format).
with_binary() {
    local which=$1
    shift
    if [ "$which" = A ]; then STRATA=$BIN_A; else STRATA=$BIN_B; fi
    STRATA_BENCH_ROOT=$BENCH_WORK/root-$which
    "$@"
}

make_base
STRATA_BASES=("$BASE_TAR|busybox:bench")
if [[ " ${CASES[*]} " == *" debian-two-stage "* ]]; then
    [ -f "${DEBIAN_TAR:-}" ] || { echo "debian-two-stage needs DEBIAN_TAR=a bookworm minbase tar" >&2; exit 2; }
    STRATA_BASES+=("$DEBIAN_TAR|debian:bench")
fi
STRATA_OK=1

# samples CASE MODE WHICH: append one timed run to $BENCH_WORK/CASE-MODE-WHICH.
sample() {
    local case=$1 mode=$2 which=$3 t
    case "$case/$mode" in
    ten-step/cold)
        with_binary "$which" strata_fresh_root
        t=$(with_binary "$which" time_once strata_ build -q $(build_args "$which") -t ab:ten "$BENCH_REPO/testdata/bench/ten-step")
        ;;
    ten-step/no-op)
        t=$(with_binary "$which" time_once strata_ build -q $(build_args "$which") -t ab:ten "$BENCH_REPO/testdata/bench/ten-step")
        ;;
    three-stage/cold)
        with_binary "$which" strata_fresh_root
        t=$(with_binary "$which" time_once strata_ build -q $(build_args "$which") -t ab:three "$BENCH_REPO/testdata/bench/three-stage")
        ;;
    unexported-400m/cold)
        with_binary "$which" strata_fresh_root
        t=$(with_binary "$which" time_once strata_ build -q $(build_args "$which") -t ab:unexported "$UNEXPORTED")
        ;;
    debian-two-stage/cold)
        with_binary "$which" strata_fresh_root
        t=$(with_binary "$which" time_once strata_ build -q $(build_args "$which") -t ab:debian "$BENCH_REPO/testdata/bench/debian-two-stage")
        ;;
    one-run/no-cache)
        t=$(with_binary "$which" time_once strata_ build -q $(build_args "$which") --no-cache -t ab:one "$ONE_RUN")
        ;;
    esac
    if [ "$t" = fail ]; then
        log "$which failed on $case $mode:"
        tail -5 "$BENCH_WORK/last.log" >&2
        exit 1
    fi
    echo "$t" >>"$BENCH_WORK/$case-$mode-$which"
}

modes_of() {
    case $1 in
    ten-step) echo cold no-op ;;
    one-run) echo no-cache ;;
    three-stage | unexported-400m | debian-two-stage) echo cold ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

# stats FILE: "best median" of the samples in FILE.
stats() { sort -n "$1" | awk '{v[NR]=$1} END {printf "%d %d", v[1], v[int((NR+1)/2)]}'; }

for which in A B; do with_binary "$which" strata_fresh_root; done
printf '\n%-10s %-9s %16s %16s %12s\n' case mode 'A best/median' 'B best/median' 'B/A (best)'
for case in "${CASES[@]}"; do
    for mode in $(modes_of "$case"); do
        for ((i = 0; i < RUNS; i++)); do
            sample "$case" "$mode" A
            sample "$case" "$mode" B
        done
        read -r a_best a_med <<<"$(stats "$BENCH_WORK/$case-$mode-A")"
        read -r b_best b_med <<<"$(stats "$BENCH_WORK/$case-$mode-B")"
        printf '%-10s %-9s %16s %16s %12s\n' "$case" "$mode" "$a_best/$a_med ms" "$b_best/$b_med ms" \
            "$(awk -v a="$a_best" -v b="$b_best" 'BEGIN{ if (a <= 0) a = 1; printf "%.2f", b/a }')"
    done
done
echo "A = $BIN_A"
echo "B = $BIN_B"
