#!/usr/bin/env bash
# strata build vs BuildKit (docker.io's dockerd, warm daemon) vs buildah.
#
#   bash benches/build.sh [CASE...]
#
# Cases (default: all but debian-two-stage):
#   ten-step          10 instructions, 3 RUNs
#   multi-stage       3 stages, COPY --from
#   three-stage       3 independent stages that each `RUN sleep 1`, copied into a final stage
#                     (concurrent stages take ~1 s, one after another ~3 s)
#   copy-1g           COPY of a generated 1 GiB context of 1,000 files
#   edit-1g           the copy-1g build again after one 1 MiB file of it changed
#   debian-two-stage  opt-in (needs a Debian mirror; ~2 min to debootstrap the base): two
#                     stages on a bookworm minbase, apt-get gcc + compile / apt-get python3,
#                     useradd, COPY --from, COPY --chown
#
# Modes:
# cold       the base image is there and nothing else: docker rmi + builder prune -af (which
#            keeps nothing), buildah rmi of everything but the base, strata a fresh root with
#            only the base imported (its `builder prune` keeps blobs younger than the GC grace,
#            so a prune is not cold).
# no-op      the same build again with nothing changed (fully cached).
# warm-blobs (copy-1g, strata) `builder prune -af` and build again: the cache records are gone
#            but the young layer blob is reused; what "cold" measured before it was fresh-root.
# edit       (edit-1g) one file of the context rewritten (new random bytes) after a build.
#
# Every tool builds FROM busybox:bench (debian:bench), imported from the same tar.
#
# Network: the same work for every tool. The bench's dockerd has no bridge (--bridge=none),
# so BuildKit's RUNs take `--network host`; strata's do too (`build --network host`), while
# its default gives every RUN its own network namespace and a slirp4netns. That default is
# measured as well, in the "+slirp" rows (strata only; cases with a RUN); buildah runs with
# its default (host network under --isolation chroot); rootless strata with --network none.
# Env: STRATA (binary; default target/release/strata), RUNS (best of N, default 5),
# RUNS_BIG (for the 1 GiB and debian cases, default 3), TOOLS (default "strata rootless buildkit
# buildah"; rootless is strata run by an ordinary user with a subuid range, see lib.sh),
# DEBIAN_TAR (a debootstrap base made before, for debian-two-stage).
# A strata that cannot build yet shows as "fail"/"n/a"; the peers are still measured.
. "$(dirname "$0")/lib.sh"

CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(ten-step multi-stage three-stage copy-1g edit-1g)
RUNS_BIG=${RUNS_BIG:-3}

install_peers
check_strata
if uses rootless; then setup_rootless; fi
if uses buildkit; then start_dockerd; fi
import_base

# The 1 GiB context: ~1,000 files of random data, made here once and never committed.
CTX_1G=$BENCH_WORK/ctx-1g
make_ctx_1g() {
    [ -f "$CTX_1G/Dockerfile" ] && return 0
    mkdir -p "$CTX_1G/data"
    log "generating 1 GiB context of 1000 files in $CTX_1G"
    local d f
    for d in $(seq -w 0 9); do
        mkdir -p "$CTX_1G/data/d$d"
        for f in $(seq -w 0 99); do
            head -c 1048576 /dev/urandom >"$CTX_1G/data/d$d/f$f.bin"
        done
    done
    cat >"$CTX_1G/Dockerfile" <<'EOF'
FROM busybox:bench
COPY data/ /data/
EOF
}

# edit_one_file: new content for one file of the 1 GiB context (same size, new bytes).
edit_one_file() { head -c 1048576 /dev/urandom >"$CTX_1G/data/d5/f50.bin"; }

# The debootstrap base of debian-two-stage, imported into every tool once (here, not in a
# subshell: import_image adds it to the bases of every fresh strata root). DEBIAN_TAR may
# name a tar made before (examples/make-base.sh with PACKAGES=) to skip the debootstrap.
DEBIAN_TAR=${DEBIAN_TAR:-$BENCH_WORK/debian-minbase.tar}
DEBIAN_IMPORTED=0
make_debian_base() {
    [ "$DEBIAN_IMPORTED" = 1 ] && return 0
    if [ ! -f "$DEBIAN_TAR" ]; then
        log "debootstrap bookworm minbase (examples/make-base.sh, PACKAGES=)"
        PACKAGES= sh "$BENCH_REPO/examples/make-base.sh" "$DEBIAN_TAR"
    fi
    import_image "$DEBIAN_TAR" debian:bench
    DEBIAN_IMPORTED=1
}

ctx_for() {
    case $1 in
    ten-step | multi-stage | three-stage) echo "$BENCH_REPO/testdata/bench/$1" ;;
    copy-1g | edit-1g) make_ctx_1g >&2 && echo "$CTX_1G" ;;
    debian-two-stage) echo "$BENCH_REPO/testdata/bench/$1" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

# has_run DOCKERFILE: whether it has a RUN (only then does the network mode matter).
has_run() { grep -qiE '^[[:space:]]*RUN[[:space:]]' "$1"; }

# measure NAME TOOL COLD-PREP BUILD...: cold and no-op (edit-1g: edit) of one tool.
measure() {
    local name=$1 tool=$2 prep=$3 n=$RUNS
    shift 3
    case $name in copy-1g | edit-1g | debian-two-stage) n=$RUNS_BIG ;; esac
    if [ "$name" = edit-1g ]; then
        eval "$prep" >/dev/null 2>&1 || true
        "$@" >/dev/null 2>&1 || true
        record "$name" edit "$tool" "$(best_of "$n" edit_one_file "$@")"
        return 0
    fi
    local cold
    cold=$(best_of "$n" "$prep" "$@")
    record "$name" cold "$tool" "$cold"
    if [ "$cold" = fail ]; then
        record "$name" no-op "$tool" fail
        return 0
    fi
    "$@" >/dev/null 2>&1 || true
    record "$name" no-op "$tool" "$(best_of "$n" "" "$@")"
    if [ "$name" = copy-1g ] && [ "$tool" = strata ]; then
        record "$name" warm-blobs "$tool" \
            "$(best_of "$n" "strata_ builder prune -af" "$@")"
    fi
}

bench_case() {
    local name=$1 ctx tag=bench-$1
    if [ "$name" = debian-two-stage ]; then make_debian_base >&2; fi
    ctx=$(ctx_for "$name")
    local df=$ctx/Dockerfile

    if uses buildkit; then
        measure "$name" buildkit "docker_reset_cache $tag" \
            docker_ build --network host --progress plain -t "$tag" -f "$df" "$ctx"
        docker_reset_cache "$tag"
    fi

    if uses buildah; then
        measure "$name" buildah buildah_reset_cache \
            buildah_ bud --pull-never --isolation chroot --layers -t "$tag" -f "$df" "$ctx"
        buildah_reset_cache
    fi

    if uses rootless && [ "$STRATA_OK" = 1 ]; then
        measure "$name" rootless rootless_fresh_root \
            rootless_ build --progress plain --network none -t "$tag" -f "$df" "$ctx"
        rm -rf "$ROOTLESS_ROOT"
    fi

    if uses strata; then
        if [ "$STRATA_OK" = 1 ]; then
            measure "$name" strata strata_fresh_root \
                strata_ build --progress plain --network host -t "$tag" -f "$df" "$ctx"
            strata_fresh_root >/dev/null 2>&1 || true
            if has_run "$df"; then
                measure "$name" strata+slirp strata_fresh_root \
                    strata_ build --progress plain -t "$tag" -f "$df" "$ctx"
                strata_fresh_root >/dev/null 2>&1 || true
            fi
        else
            record "$name" "$([ "$name" = edit-1g ] && echo edit || echo cold)" strata n/a
        fi
    fi
    return 0
}

for c in "${CASES[@]}"; do bench_case "$c"; done
rm -rf "$CTX_1G"
print_table
