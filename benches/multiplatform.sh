#!/usr/bin/env bash
# Two-platform build (linux/amd64 + linux/arm64, arm64's RUNs through QEMU user emulation):
# strata's one `build --platform linux/amd64,linux/arm64 --push` vs BuildKit in Debian's
# docker 20.10, which builds one platform per `DOCKER_BUILDKIT=1 docker build --platform`:
# its column is the two builds one after the other, kept in its image store and not pushed;
# strata's time also includes pushing both manifests and the index to a local
# docker-registry.
#
#   bash benches/multiplatform.sh
#
# Case: testdata/bench/ten-step with `FROM busybox:bench-$TARGETARCH`; both bases are the
# busybox rootfs of testdata/rootfs/make-busybox-rootfs.sh, arm64's from Debian's
# busybox-static:arm64 (`dpkg --add-architecture arm64 && apt-get update` first).
# Needs a binfmt_misc handler for aarch64 (qemu-user-static; the bench registers nothing:
# see tests/util/foreign.rs for the two commands). Modes: cold and no-op as in build.sh.
# Env: STRATA, RUNS, TOOLS (default "strata buildkit").
TOOLS=${TOOLS:-strata buildkit}
. "$(dirname "$0")/lib.sh"

if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    echo "no binfmt_misc handler for aarch64: install qemu-user-static and register it (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register)" >&2
    exit 1
fi
need skopeo skopeo
install_peers
check_strata
if uses buildkit; then start_dockerd; fi
start_bench_registry

make_base
ARM64_TAR=$BENCH_WORK/busybox-rootfs-arm64.tar
(cd "$BENCH_WORK" && apt-get download busybox-static:arm64 >/dev/null 2>&1) || {
    echo "apt-get download busybox-static:arm64 failed: dpkg --add-architecture arm64 && apt-get update" >&2
    exit 1
}
dpkg-deb -x "$BENCH_WORK"/busybox-static_*_arm64.deb "$BENCH_WORK/arm64"
BUSYBOX=$BENCH_WORK/arm64/bin/busybox APPLETS_FROM=/bin/busybox \
    sh "$BENCH_REPO/testdata/rootfs/make-busybox-rootfs.sh" "$ARM64_TAR"

CTX=$BENCH_WORK/ctx
cp -r "$BENCH_REPO/testdata/bench/ten-step" "$CTX"
sed -i 's/^FROM busybox:bench$/FROM busybox:bench-$TARGETARCH/' "$CTX/Dockerfile"

# strata's bases; docker gets the same images through `strata save | docker load`, so each
# keeps its platform in the config.
strata_bases() {
    rm -rf "$STRATA_BENCH_ROOT"
    strata_ import --platform linux/amd64 "$BASE_TAR" busybox:bench-amd64 >/dev/null &&
        strata_ import --platform linux/arm64 "$ARM64_TAR" busybox:bench-arm64 >/dev/null
}
strata_bases
if [ -n "$DOCKERD_PID" ]; then
    strata_ save busybox:bench-amd64 busybox:bench-arm64 | docker_ load >/dev/null
fi

docker_both() {
    docker_ build --network host --progress plain --platform linux/amd64 -t bench-mp:amd64 "$CTX" &&
        docker_ build --network host --progress plain --platform linux/arm64 -t bench-mp:arm64 "$CTX"
}
docker_cold() { docker_ rmi -f bench-mp:amd64 bench-mp:arm64; docker_ builder prune -af; }
strata_both() {
    strata_ build --progress plain --platform linux/amd64,linux/arm64 --push \
        -t "$BENCH_REG/bench-mp:1" "$CTX"
}

for tool in $TOOLS; do
    case $tool in
    buildkit) prep=docker_cold cmd=docker_both ;;
    strata) prep=strata_bases cmd=strata_both ;;
    *) continue ;;
    esac
    cold=$(best_of "$RUNS" "$prep" "$cmd")
    record two-platform cold "$tool" "$cold"
    "$cmd" >/dev/null 2>&1 || true
    record two-platform no-op "$tool" "$(best_of "$RUNS" "" "$cmd")"
done
print_table
