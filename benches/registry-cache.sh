#!/usr/bin/env bash
# Registry build cache (issue 5): a second CI runner, starting with an empty cache, builds
# from the cache the first runner pushed. strata vs BuildKit.
#
#   bash benches/registry-cache.sh        RUNS (default 3), DEPS_MB (default 64), WORK_S (3)
#
# The Dockerfile is a CI build in small: COPY a dependency file (DEPS_MB random), a RUN that
# "compiles" for WORK_S seconds and writes DEPS_MB of output, COPY the sources.
#   cold        an empty cache and no registry cache: everything runs
#   from-cache  an empty local cache, the registry cache of an earlier build: nothing runs,
#               the layers come from the registry
# strata: `--cache-to type=registry,ref=R,mode=max` then `--cache-from R` on a fresh root.
# BuildKit (docker 20.10's, no buildx): the inline cache, `--build-arg BUILDKIT_INLINE_CACHE=1`
# and push, then `docker builder prune -af`, rmi, and `--cache-from` the pushed image.
RUNS=${RUNS:-3}
DEPS_MB=${DEPS_MB:-64}
WORK_S=${WORK_S:-3}
TOOLS=${TOOLS:-strata buildkit}
. "$(dirname "$0")/lib.sh"

install_peers
check_strata
if uses buildkit; then start_dockerd; fi
import_base
start_bench_registry

ctx=$BENCH_WORK/ctx
mkdir -p "$ctx"
head -c "$((DEPS_MB << 20))" /dev/urandom >"$ctx/deps.bin"
echo 'the app' >"$ctx/app.txt"
cat >"$ctx/Dockerfile" <<DF
FROM busybox:bench
COPY deps.bin /deps.bin
RUN sleep $WORK_S && head -c $((DEPS_MB << 20)) /dev/urandom > /built.bin
COPY app.txt /app.txt
DF

if uses buildkit; then
    image=$BENCH_REG/bench/app:inline
    build=(docker_ build --network host --progress plain -t "$image" "$ctx")
    record registry-cache cold buildkit "$(best_of "$RUNS" "docker_reset_cache $image" "${build[@]}")"
    docker_reset_cache "$image"
    docker_ build --network host --build-arg BUILDKIT_INLINE_CACHE=1 -t "$image" "$ctx" >/dev/null 2>&1
    docker_ push "$image" >/dev/null
    record registry-cache from-cache buildkit "$(best_of "$RUNS" "docker_reset_cache $image" \
        "${build[@]}" --cache-from "$image")"
    grep -q CACHED "$BENCH_WORK/last.log" || log "buildkit: the build from the cache ran its steps"
fi

if [ "$STRATA_OK" = 1 ] && uses strata; then
    cache=$BENCH_REG/bench/app:cache
    # Every runner has the same base image (as if pulled): an OCI archive of the one import,
    # loaded into each fresh root (a new import would stamp a new `created`, a new digest).
    strata_ save --format oci -o "$BENCH_WORK/base-oci.tar" busybox:bench
    fresh_root() { rm -rf "$STRATA_BENCH_ROOT" && strata_ load -i "$BENCH_WORK/base-oci.tar"; }
    build=(strata_ build --progress plain -t bench/app "$ctx")
    record registry-cache cold strata "$(best_of "$RUNS" fresh_root "${build[@]}")"
    fresh_root >/dev/null
    "${build[@]}" --cache-to "type=registry,ref=$cache,mode=max" >/dev/null 2>&1
    record registry-cache from-cache strata "$(best_of "$RUNS" fresh_root "${build[@]}" --cache-from "$cache")"
    [ "$(grep -c ' CACHED$' "$BENCH_WORK/last.log")" -ge 4 ] || log "strata: the build from the cache ran its steps"
fi

print_table
