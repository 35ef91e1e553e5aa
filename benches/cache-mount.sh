#!/usr/bin/env bash
# RUN --mount=type=cache benchmark (issue 9): strata vs BuildKit vs buildah.
#
#   bash benches/cache-mount.sh
#
# testdata/bench/cache-mount/Dockerfile has a RUN that fills a 200 MB cache mount only when it
# is empty. Two measurements per tool:
#   cold     every cache empty, including the cache mount: the RUN fills it (200 MB)
#   src-edit a source file changed after a build: COPY and the RUN re-run, the mount is full
# Each measurement is best of RUNS (default 3): the cold prep empties everything; the src-edit
# prep changes a source file to a new value. The context is a copy in the work dir.
# Env as in lib.sh; TOOLS (default "strata buildkit buildah").
RUNS=${RUNS:-3}
. "$(dirname "$0")/lib.sh"

install_peers
check_strata
if uses buildkit; then start_dockerd; fi
import_base

ctx=$BENCH_WORK/ctx-cache-mount
cp -r "$BENCH_REPO/testdata/bench/cache-mount" "$ctx"
edit_src() { echo "module main v$(date +%s%N)" >"$ctx/src/main.txt"; }
reset_src() { echo 'module main v1' >"$ctx/src/main.txt"; }
tag=bench-cache-mount

# buildah keeps cache mounts under $TMPDIR/buildah-cache-UID; give it its own TMPDIR.
BUILDAH_TMP=$BENCH_WORK/buildah-tmp
mkdir -p "$BUILDAH_TMP"
buildah_cold_prep() { buildah_reset_cache; rm -rf "${BUILDAH_TMP:?}"/*; reset_src; }

strata_cold_prep() { strata_fresh_root && reset_src; }

# The logs are checked for the RUN's own words, so a tool that ignores the mount shows up.
report_tool() { # report_tool TOOL BUILD-CMD... (cold prep in $cold_prep)
    local tool=$1
    shift
    local t
    t=$(best_of "$RUNS" "$cold_prep" "$@")
    record cache-mount cold "$tool" "$t"
    if [ "$t" = fail ]; then record cache-mount src-edit "$tool" fail; return; fi
    grep -q "cache empty" "$BENCH_WORK/last.log" || log "$tool: cold build did not report an empty cache"
    record cache-mount src-edit "$tool" "$(best_of "$RUNS" edit_src "$@")"
    grep -q "cache full" "$BENCH_WORK/last.log" || log "$tool: rebuild did not find the cache full"
}

if uses buildkit; then
    cold_prep="docker_reset_cache $tag; reset_src"
    report_tool buildkit docker_ build --network host --progress plain -t "$tag" "$ctx"
    # The cache mount must not be in the image: the image stays about the size of the base.
    log "buildkit image size: $(docker_ image inspect "$tag" --format '{{.Size}}') bytes"
    docker_reset_cache "$tag"
fi

if uses buildah; then
    cold_prep=buildah_cold_prep
    report_tool buildah env TMPDIR="$BUILDAH_TMP" buildah --root "$BUILDAH_ROOT" \
        --runroot "$BUILDAH_RUNROOT" --storage-driver overlay bud --pull-never \
        --isolation chroot --layers -t "$tag" "$ctx"
    buildah_reset_cache
fi

if uses strata; then
    if [ "$STRATA_OK" = 1 ]; then
        cold_prep=strata_cold_prep
        report_tool strata strata_ build --progress plain -t "$tag" "$ctx"
    else
        record cache-mount cold strata n/a
        record cache-mount src-edit strata n/a
    fi
fi

print_table
