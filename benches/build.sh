#!/usr/bin/env bash
# strata build vs BuildKit (docker.io's dockerd, warm daemon) vs buildah, cold and fully cached.
#
#   bash benches/build.sh [CASE...]        CASE: ten-step multi-stage copy-1g (default: all)
#
# cold   = the base image is there, every build cache is empty (docker: rmi + builder prune -af;
#          buildah: rmi of everything but the base; strata: a fresh root with the base imported).
# no-op  = the same build again with nothing changed (fully cached).
# Every tool builds FROM busybox:bench, imported from the same busybox rootfs tar.
# Env: STRATA (binary; default target/release/strata), RUNS (best of N, default 5),
# RUNS_BIG (for copy-1g, default 3), TOOLS (default "strata buildkit buildah").
# A strata that cannot build yet shows as "fail"/"n/a"; the peers are still measured.
. "$(dirname "$0")/lib.sh"

CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(ten-step multi-stage copy-1g)
RUNS_BIG=${RUNS_BIG:-3}

install_peers
check_strata
if uses buildkit; then start_dockerd; fi
import_base

# copy-1g: ~1,000 files of random data, 1 GiB in all, made here and never committed.
make_ctx_1g() {
    local dir=$BENCH_WORK/ctx-1g
    mkdir -p "$dir/data"
    log "generating 1 GiB context of 1000 files in $dir"
    local d f
    for d in $(seq -w 0 9); do
        mkdir -p "$dir/data/d$d"
        for f in $(seq -w 0 99); do
            head -c 1048576 /dev/urandom >"$dir/data/d$d/f$f.bin"
        done
    done
    cat >"$dir/Dockerfile" <<'EOF'
FROM busybox:bench
COPY data/ /data/
EOF
    echo "$dir"
}

ctx_for() {
    case $1 in
    ten-step | multi-stage) echo "$BENCH_REPO/testdata/bench/$1" ;;
    copy-1g) make_ctx_1g ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

strata_cold_prep() {
    rm -rf "$STRATA_BENCH_ROOT" && strata_ import "$BASE_TAR" busybox:bench
}

bench_case() {
    local name=$1 ctx n=$RUNS tag=bench-$1
    ctx=$(ctx_for "$name")
    [ "$name" = copy-1g ] && n=$RUNS_BIG
    local df=$ctx/Dockerfile

    if uses buildkit; then
        local dbuild=(docker_ build --network host --progress plain -t "$tag" -f "$df" "$ctx")
        record "$name" cold buildkit "$(best_of "$n" "docker_reset_cache $tag" "${dbuild[@]}")"
        "${dbuild[@]}" >/dev/null 2>&1 || true
        record "$name" no-op buildkit "$(best_of "$n" "" "${dbuild[@]}")"
        docker_reset_cache "$tag"
    fi

    if uses buildah; then
        local bbuild=(buildah_ bud --pull-never --isolation chroot --layers -t "$tag" -f "$df" "$ctx")
        record "$name" cold buildah "$(best_of "$n" buildah_reset_cache "${bbuild[@]}")"
        "${bbuild[@]}" >/dev/null 2>&1 || true
        record "$name" no-op buildah "$(best_of "$n" "" "${bbuild[@]}")"
        buildah_reset_cache
    fi

    if uses strata; then
        if [ "$STRATA_OK" = 1 ]; then
            local sbuild=(strata_ build --progress plain -t "$tag" -f "$df" "$ctx")
            local cold
            cold=$(best_of "$n" strata_cold_prep "${sbuild[@]}")
            record "$name" cold strata "$cold"
            if [ "$cold" = fail ]; then
                record "$name" no-op strata fail
            else
                "${sbuild[@]}" >/dev/null 2>&1 || true
                record "$name" no-op strata "$(best_of "$n" "" "${sbuild[@]}")"
            fi
            rm -rf "$STRATA_BENCH_ROOT"
            strata_ import "$BASE_TAR" busybox:bench >/dev/null 2>&1 || true
        else
            record "$name" cold strata n/a
            record "$name" no-op strata n/a
        fi
    fi

    [ "$name" = copy-1g ] && rm -rf "$BENCH_WORK/ctx-1g"
    return 0
}

for c in "${CASES[@]}"; do bench_case "$c"; done
print_table
