#!/usr/bin/env bash
# N strata processes on one root, as CI runners that share a root run them: each case runs N
# commands one after another (sequential) and all N started together (parallel), RUNS times,
# and prints the wall time of the whole batch (min / median / max over the runs: the spread)
# and the slowest single process of a parallel batch.
#
#   bash benches/concurrent-root.sh        N=8 (processes), RUNS=10, STRATA=binary
#
# Cases (all on one root holding busybox:bench and the warm ten-step build):
#   noop-build   N × `build` of testdata/bench/ten-step, fully cached
#   images       N × `images`
#   mixed        N/2 no-op builds + N/2 `images` started together with one cold build (a RUN
#                whose build arg changes every run, so it misses the cache and writes a layer);
#                the cold build's time alone is printed beside it
# Parallel no slower than sequential, with a small spread, means readers do not wait for each
# other and a writer holds the metadata lock only for its own short transaction.
N=${N:-8}
RUNS=${RUNS:-10}
. "$(dirname "$0")/lib.sh"

check_strata
[ "$STRATA_OK" = 1 ] || exit 1
TOOLS=strata import_base
CTX=$BENCH_REPO/testdata/bench/ten-step
strata_ build -q -t bench/ten:1 "$CTX" >/dev/null
COLD=$BENCH_WORK/cold
mkdir -p "$COLD"
printf 'FROM busybox:bench\nARG NONCE\nRUN echo "$NONCE" >/nonce && head -c 1048576 /dev/zero >/mb\n' \
    >"$COLD/Dockerfile"

# batch.py: runs the commands of one batch (one per line on stdin; "seq" runs them one after
# another, "par" all at once) and prints "<batch ms> <slowest process ms>"; exits 1 when one
# fails, with its output on stderr.
cat >"$BENCH_WORK/batch.py" <<'PY'
import shlex, subprocess, sys, time
mode = sys.argv[1]
cmds = [shlex.split(l) for l in sys.stdin.read().splitlines() if l.strip()]
def run(procs):
    worst, failed = 0.0, False
    for p, t0 in procs:
        out, _ = p.communicate()
        worst = max(worst, time.monotonic() - t0)
        if p.returncode != 0:
            failed = True
            sys.stderr.write(out.decode(errors="replace")[-2000:])
    return worst, failed
t0 = time.monotonic()
worst, failed = 0.0, False
if mode == "seq":
    for c in cmds:
        w, f = run([(subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), time.monotonic())])
        worst, failed = max(worst, w), failed or f
else:
    procs = [(subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), time.monotonic()) for c in cmds]
    worst, failed = run(procs)
print(f"{(time.monotonic() - t0) * 1000:.0f} {worst * 1000:.0f}")
sys.exit(1 if failed else 0)
PY

S="$STRATA --root $STRATA_BENCH_ROOT"
noop_cmd() { echo "$S build -q -t bench/ten:1 $CTX"; }
images_cmd() { echo "$S images"; }
cold_cmd() { echo "$S build -q -t bench/cold:1 --build-arg NONCE=$RANDOM$RANDOM $COLD"; }

# commands CASE: the N command lines of one batch of CASE.
commands() {
    local i
    case $1 in
    noop-build) for ((i = 0; i < N; i++)); do noop_cmd; done ;;
    images) for ((i = 0; i < N; i++)); do images_cmd; done ;;
    mixed)
        cold_cmd
        for ((i = 0; i < N / 2; i++)); do noop_cmd; done
        for ((i = 0; i < N - N / 2; i++)); do images_cmd; done
        ;;
    cold-alone) cold_cmd ;;
    esac
}

# stats "ms ms ...": min / median / max.
stats() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END{printf "%d / %d / %d", a[1], a[int((NR+1)/2)], a[NR]}'; }

# measure CASE MODE: RUNS batches; prints "batch-stats | slowest-process-stats".
measure() {
    local case=$1 mode=$2 i out batch= worst=
    for ((i = 0; i < RUNS; i++)); do
        if ! out=$(commands "$case" | python3 "$BENCH_WORK/batch.py" "$mode"); then
            log "$case $mode failed"
            exit 1
        fi
        batch+=" ${out% *}"
        worst+=" ${out#* }"
    done
    echo "$(stats "$batch") | $(stats "$worst")"
}

commands noop-build | head -1 | python3 "$BENCH_WORK/batch.py" seq >/dev/null # warm the page cache
echo
echo "N=$N processes on one root, RUNS=$RUNS; ms, min / median / max over the runs"
echo
echo "| case | mode | whole batch | slowest process |"
echo "|---|---|---|---|"
for case in noop-build images mixed; do
    for mode in seq par; do
        printf '| %s | %s | %s |\n' "$case" "$mode" "$(measure "$case" "$mode" | sed 's/ | / | /')"
    done
done
printf '| cold build alone | - | %s |\n' "$(measure cold-alone seq)"
