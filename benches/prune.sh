#!/usr/bin/env bash
# Prune benchmark (issue 6): `strata image prune -f` of IMAGES (default 1000) dangling images
# with 3 layers each (5 blobs per image: manifest, config, 3 layers). Target: < 1 s.
#
#   bash benches/prune.sh
#
# Set-up (not timed): the ignored test `bench_fill_dangling_images` in tests/prune.rs (dev
# profile: only the timed binary needs --release) writes the images through the store API
# into one root, once; each run works on a fresh copy of
# it (cp -a). The timed command is the whole `strata image prune -f` process: open, mark,
# delete the records, move the files out of sight, unlink them.
# Env as in lib.sh (STRATA, RUNS default 3, BENCH_TMP, KEEP=1); IMAGES.
. "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
IMAGES=${IMAGES:-1000}
check_strata
[ -n "${STRATA_OK:-}" ] || exit 1

seed=$BENCH_WORK/seed-root
log "filling $seed with $IMAGES dangling images (3 layers each)"
t0=$(date +%s)
(cd "$BENCH_REPO" && STRATA_BENCH_ROOT=$seed STRATA_BENCH_IMAGES=$IMAGES \
    cargo test -q --test prune -- --ignored --exact bench_fill_dangling_images >&2)
log "set-up took $(($(date +%s) - t0)) s: $(ls "$seed/blobs/sha256" | wc -l) blobs"

# cp gives every file a new ctime: wait out the GC grace (2 s) so the files count as old.
prep="rm -rf '$STRATA_BENCH_ROOT' && cp -a '$seed' '$STRATA_BENCH_ROOT' && sync && sleep 2.1"
ms=$(best_of "$RUNS" "$prep" strata_ image prune -f)
left=$(ls "$STRATA_BENCH_ROOT/blobs/sha256" | wc -l)
tail -1 "$BENCH_WORK/last.log" >&2
log "blobs left after the last run: $left"
printf 'image prune -f, %s dangling images x 3 layers: %s ms (best of %s)\n' "$IMAGES" "$ms" "$RUNS"
if [ "$ms" != fail ] && [ "$ms" -lt 1000 ] && [ "$left" -eq 0 ]; then
    echo "PASS (< 1000 ms, every blob removed)"
else
    echo "FAIL (target < 1000 ms with every blob removed)"
    exit 1
fi
