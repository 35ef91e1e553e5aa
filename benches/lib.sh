# Shared helpers for the strata benchmarks. Source it from bash:  . "$(dirname "$0")/lib.sh"
#
# Peers, all from Debian's packages and all building FROM the same busybox base made on this
# machine (testdata/rootfs/make-busybox-rootfs.sh), so nothing touches the network:
#   BuildKit  docker.io's dockerd (20.10, BuildKit built in; `DOCKER_BUILDKIT=1 docker build`),
#             a private daemon started here: own data-root, exec-root and socket, no bridge.
#   buildah   `buildah --storage-driver overlay bud --pull-never --isolation chroot --layers`,
#             own --root (--pull-never: "busybox" is a short-name alias for docker.io here).
#   strata    $STRATA (default target/release/strata), own --root.
#
# Environment knobs: STRATA (binary), RUNS (best-of-N, default 5), BENCH_TMP (work dir parent),
# KEEP=1 (keep the work dir for inspection).

set -euo pipefail

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STRATA=${STRATA:-$BENCH_REPO/target/release/strata}
RUNS=${RUNS:-5}
# Debian's docker client (20.10) talks to its BuildKit directly. A newer client elsewhere on
# PATH (23+) wants the buildx plugin for BuildKit, which Debian does not package.
DOCKER=${DOCKER:-/usr/bin/docker}

log() { printf '== %s\n' "$*" >&2; }

# uses TOOL: whether TOOL (strata, rootless, buildkit, buildah) is in $TOOLS (default: all).
# rootless is strata run by an ordinary user (benches/build.sh only).
TOOLS=${TOOLS:-strata rootless buildkit buildah}
uses() { [[ " $TOOLS " == *" $1 "* ]]; }

# need CMD PACKAGE: install PACKAGE from Debian when CMD is missing.
need() {
    local cmd=$1 pkg=${2:-$1}
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "installing $pkg (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
}

install_peers() {
    need busybox busybox-static
    if uses buildkit && ! { [ -x /usr/bin/docker ] && command -v dockerd >/dev/null; }; then need dockerd docker.io; fi
    if uses buildah; then need buildah buildah; fi
    return 0
}

# One work dir per run; everything the bench creates lives under it and goes at exit.
BENCH_WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/strata-bench.XXXXXX")
_cleanups=()
at_exit() { _cleanups+=("$*"); }
_run_cleanups() {
    local i
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[i]}" || true; done
    if [ "${KEEP:-0}" = 1 ]; then log "kept $BENCH_WORK"; else rm -rf "$BENCH_WORK"; fi
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- dockerd (BuildKit)

DOCKERD_DIR=$BENCH_WORK/docker
export DOCKER_HOST=unix://$DOCKERD_DIR/docker.sock
export DOCKER_BUILDKIT=1
export DOCKER_CONFIG=$BENCH_WORK/docker-config
DOCKERD_PID=

start_dockerd() {
    mkdir -p "$DOCKERD_DIR/data" "$DOCKERD_DIR/exec" "$DOCKER_CONFIG"
    [ -f "$DOCKER_CONFIG/config.json" ] || echo '{}' >"$DOCKER_CONFIG/config.json"
    log "starting dockerd (data-root $DOCKERD_DIR/data)"
    dockerd --iptables=false --ip6tables=false --bridge=none \
        --data-root "$DOCKERD_DIR/data" --exec-root "$DOCKERD_DIR/exec" \
        --pidfile "$DOCKERD_DIR/dockerd.pid" -H "$DOCKER_HOST" \
        >"$DOCKERD_DIR/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    at_exit stop_dockerd
    local i
    for ((i = 0; i < 300; i++)); do
        if "$DOCKER" version >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -20 "$DOCKERD_DIR/dockerd.log" >&2
            echo "dockerd exited; log above" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "dockerd did not answer on $DOCKER_HOST within 30 s" >&2
    return 1
}

stop_dockerd() {
    [ -n "$DOCKERD_PID" ] || return 0
    kill "$DOCKERD_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=
    # dockerd may leave mounts (overlay, netns) under its dirs.
    grep -o " $DOCKERD_DIR[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

docker_() { "$DOCKER" "$@"; }

# BuildKit's cache is dropped with `builder prune -af` (and the images with rmi).
docker_reset_cache() {
    local tag
    for tag in "$@"; do docker_ rmi -f "$tag" >/dev/null 2>&1 || true; done
    docker_ builder prune -af >/dev/null
}

# ---------------------------------------------------------------- buildah

BUILDAH_ROOT=$BENCH_WORK/buildah/root
BUILDAH_RUNROOT=$BENCH_WORK/buildah/run
buildah_() {
    mkdir -p "$DOCKER_CONFIG"
    [ -f "$DOCKER_CONFIG/config.json" ] || echo '{}' >"$DOCKER_CONFIG/config.json"
    buildah --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver overlay "$@"
}
at_exit 'buildah_ rm --all >/dev/null 2>&1; grep -o " $BENCH_WORK/buildah[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done'

# Remove every image except the base, so the next build is cold (buildah --layers keeps its
# cache as intermediate images).
buildah_reset_cache() {
    buildah_ rm --all >/dev/null 2>&1 || true
    local ids
    ids=$(buildah_ images -a -q --no-trunc | grep -Ev "${BUILDAH_BASE_ID:-none}" || true)
    [ -z "$ids" ] || buildah_ rmi -f $ids >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- strata

STRATA_BENCH_ROOT=$BENCH_WORK/strata
strata_() { "$STRATA" --root "$STRATA_BENCH_ROOT" "$@"; }

# rootless: the same binary run by an ordinary user with a subuid range (made here if missing
# and then removed at exit), in a root of its own. Its builds take --network none: this
# machine's /dev/net/tun is 0600, and slirp4netns needs it open as that user (Debian's
# default is 0666).
ROOTLESS_USER=strata-bench
ROOTLESS_ROOT=$BENCH_WORK/rootless/root
rootless_() { runuser -u "$ROOTLESS_USER" -- "$STRATA" --root "$ROOTLESS_ROOT" "$@"; }
setup_rootless() {
    if ! id "$ROOTLESS_USER" >/dev/null 2>&1; then
        useradd -m "$ROOTLESS_USER"
        at_exit "userdel -r $ROOTLESS_USER >/dev/null 2>&1"
    fi
    chmod 755 "$BENCH_WORK"
    install -d -o "$ROOTLESS_USER" "$BENCH_WORK/rootless"
}

# rootless_fresh_root: strata_fresh_root for the rootless user's root.
rootless_fresh_root() {
    rm -rf "$ROOTLESS_ROOT"
    local b
    for b in "${STRATA_BASES[@]}"; do rootless_ import "${b%%|*}" "${b#*|}" >/dev/null || return 1; done
}

# Whether strata can build at all right now; the bench prints n/a for it otherwise.
STRATA_OK=0
check_strata() {
    if [ ! -x "$STRATA" ]; then
        log "strata binary $STRATA not found (cargo build --release); strata column is n/a"
        return 0
    fi
    STRATA_OK=1
}

# ---------------------------------------------------------------- the base image

BASE_TAR=$BENCH_WORK/busybox-rootfs.tar
make_base() {
    [ -f "$BASE_TAR" ] || sh "$BENCH_REPO/testdata/rootfs/make-busybox-rootfs.sh" "$BASE_TAR"
}

# busybox:bench in all three, from the same tar.
import_base() {
    make_base
    BUILDAH_BASE_ID=
    import_image "$BASE_TAR" busybox:bench
}

# import_image TAR TAG: one root filesystem tar as TAG in every tool in use (a base image).
# Sets STRATA_OK=0 when strata cannot import it.
import_image() {
    local tar=$1 tag=$2
    if [ -n "$DOCKERD_PID" ]; then docker_ import "$tar" "$tag" >/dev/null; fi
    if uses buildah; then
        local ctr
        ctr=$(buildah_ from scratch)
        buildah_ add "$ctr" "$tar" / >/dev/null
        BUILDAH_BASE_ID="${BUILDAH_BASE_ID:+$BUILDAH_BASE_ID|}$(buildah_ commit -q "$ctr" "$tag")"
        buildah_ rm "$ctr" >/dev/null
    fi
    if [ "$STRATA_OK" = 1 ]; then
        STRATA_BASES+=("$tar|$tag")
        if ! strata_ import "$tar" "$tag" >"$BENCH_WORK/strata-import.log" 2>&1; then
            log "strata import of $tag failed ($(tail -1 "$BENCH_WORK/strata-import.log")); strata column is n/a"
            STRATA_OK=0
        fi
    fi
}

# strata_fresh_root: an empty strata root holding only the base images imported so far, so a
# cold build reuses nothing (a `builder prune` keeps blobs younger than the GC grace).
STRATA_BASES=()
strata_fresh_root() {
    rm -rf "$STRATA_BENCH_ROOT"
    local b
    for b in "${STRATA_BASES[@]}"; do strata_ import "${b%%|*}" "${b#*|}" >/dev/null || return 1; done
}

# ---------------------------------------------------------------- timing

# time_ms CMD...: wall time of one run in ms; prints "fail" when CMD fails. Output of CMD goes
# to $BENCH_WORK/last.log.
time_once() {
    local t0 t1
    t0=$(date +%s%N)
    if "$@" >"$BENCH_WORK/last.log" 2>&1; then
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000000))
    else
        echo fail
    fi
}

# best_of N PREPARE CMD...: run PREPARE (a shell string, not timed) then CMD, N times; print the
# fastest wall time in ms, or "fail" if any run failed.
best_of() {
    local n=$1 prep=$2
    shift 2
    local best= t i
    for ((i = 0; i < n; i++)); do
        eval "$prep" >/dev/null 2>&1 || true
        t=$(time_once "$@")
        if [ "$t" = fail ]; then
            log "failed: $* (tail of output below)"
            tail -5 "$BENCH_WORK/last.log" | sed 's/^/    /' >&2
            echo fail
            return 0
        fi
        if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
    done
    echo "$best"
}

# ---------------------------------------------------------------- results

RESULTS=()
# record CASE MODE TOOL MS
record() { RESULTS+=("$1|$2|$3|$4"); log "$1 $2 $3: $4 ms"; }

fmt_ms() {
    case $1 in
    fail | n/a | "") echo "${1:-n/a}" ;;
    *) if [ "$1" -ge 10000 ]; then awk -v m="$1" 'BEGIN{printf "%.1f s", m/1000}'; else echo "$1 ms"; fi ;;
    esac
}

ratio() { # ratio STRATA PEER: how many times faster strata is (peer/strata)
    case "$1$2" in *fail* | *n/a*) echo n/a; return ;; esac
    [ -n "$1" ] && [ -n "$2" ] || { echo n/a; return; }
    awk -v s="$1" -v p="$2" 'BEGIN{ if (s <= 0) s = 1; printf "%.2fx", p/s }'
}

lookup() { # lookup CASE MODE TOOL
    local r
    for r in "${RESULTS[@]}"; do
        IFS='|' read -r c m t v <<<"$r"
        if [ "$c" = "$1" ] && [ "$m" = "$2" ] && [ "$t" = "$3" ]; then echo "$v"; return; fi
    done
    echo n/a
}

# print_table: one row per case and mode; the ratio columns say how many times faster strata is
# than the peer (>1 is better).
print_table() {
    local seen=() r c m key s b h
    local rl
    printf '\n%-22s %-11s %10s %10s %10s %10s %12s %12s\n' case mode strata rootless buildkit buildah \
        'vs buildkit' 'vs buildah'
    for r in "${RESULTS[@]}"; do
        IFS='|' read -r c m _ _ <<<"$r"
        key="$c|$m"
        [[ " ${seen[*]-} " == *" $key "* ]] && continue
        seen+=("$key")
        s=$(lookup "$c" "$m" strata)
        rl=$(lookup "$c" "$m" rootless)
        b=$(lookup "$c" "$m" buildkit)
        h=$(lookup "$c" "$m" buildah)
        printf '%-22s %-11s %10s %10s %10s %10s %12s %12s\n' "$c" "$m" "$(fmt_ms "$s")" "$(fmt_ms "$rl")" \
            "$(fmt_ms "$b")" "$(fmt_ms "$h")" "$(ratio "$s" "$b")" "$(ratio "$s" "$h")"
        # strata with its default network (a slirp4netns per RUN), where it was measured.
        s=$(lookup "$c" "$m" strata+slirp)
        if [ "$s" != n/a ]; then
            printf '%-22s %-11s %10s %10s %10s %10s %12s %12s\n' "$c" "$m+slirp" "$(fmt_ms "$s")" "" \
                "" "" "$(ratio "$s" "$b")" "$(ratio "$s" "$h")"
        fi
    done
    local runs=$RUNS
    # build.sh: the 1 GiB and debian cases take the best of RUNS_BIG.
    if [ -n "${RUNS_BIG:-}" ]; then runs="$RUNS ($RUNS_BIG for the 1 GiB and debian cases)"; fi
    printf '(best of %s wall-clock runs; ratio = peer time / strata time, >1 means strata is faster)\n' "$runs"
}

# ---------------------------------------------------------------- a registry

# start_bench_registry: Debian's docker-registry on 127.0.0.1 (plain http, own storage under
# the work dir, stopped at exit); sets BENCH_REG to host:port.
start_bench_registry() {
    need docker-registry docker-registry
    . "$BENCH_REPO/benches/registry-lib.sh"
    launch_registry "$BENCH_WORK/registry"
    at_exit "kill $REG_PID; wait $REG_PID"
    BENCH_REG=$REG
}
