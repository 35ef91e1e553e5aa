#!/usr/bin/env bash
# Build every example with strata, list the images and save them to one archive.
#
#   cargo build --release && bash examples/run.sh [--with-gcc] [--with-cache-mount]
#
# 1. makes a busybox base image from Debian's busybox-static (testdata/rootfs/make-busybox-rootfs.sh)
# 2. `strata import` it as busybox:latest (like `docker import`; no registry needed)
# 3. `strata build -t` each example, `strata images`, `strata save -o /tmp/strata-examples.tar`
#
# --with-gcc also makes a Debian gcc base (examples/make-base.sh: debootstrap from Debian's mirror,
# about 2-3 minutes) and builds examples/multi-stage-gcc, a C program compiled in a build stage.
# --with-cache-mount (implies --with-gcc) also builds examples/cache-mount (RUN --mount=type=cache).
# The store is $STRATA_ROOT when set, else a new temporary directory (printed at the end).
# Env: STRATA (binary; default target/release/strata), OUT (archive; default /tmp/strata-examples.tar).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
strata=${STRATA:-$repo/target/release/strata}
out=${OUT:-/tmp/strata-examples.tar}
examples=(static-site multi-stage app-with-dependency)
with_gcc=0 with_cache_mount=0
for arg in "$@"; do
    case $arg in
    --with-gcc) with_gcc=1 ;;
    --with-cache-mount) with_gcc=1 with_cache_mount=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

if [ -t 1 ]; then
    step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
    step() { printf '\n==> %s\n' "$*"; }
fi

if [ ! -x "$strata" ]; then
    echo "run.sh: $strata not found; build it first: cargo build --release" >&2
    exit 1
fi
if [ ! -x /bin/busybox ] && [ -z "${BUSYBOX:-}" ]; then
    echo "run.sh: /bin/busybox not found; install it: apt-get install -y busybox-static" >&2
    exit 1
fi

export STRATA_ROOT=${STRATA_ROOT:-$(mktemp -d "${TMPDIR:-/tmp}/strata-examples-root.XXXXXX")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "making the busybox base image (rootfs tar from Debian's busybox-static)"
sh "$repo/testdata/rootfs/make-busybox-rootfs.sh" "$work/busybox-rootfs.tar"
ls -l "$work/busybox-rootfs.tar"

step "strata import busybox-rootfs.tar busybox:latest"
"$strata" import "$work/busybox-rootfs.tar" busybox:latest

if [ "$with_gcc" = 1 ]; then
    step "making the Debian gcc base (examples/make-base.sh, debootstrap) and importing it"
    sh "$repo/examples/make-base.sh" "$work/debian-gcc.tar"
    "$strata" import "$work/debian-gcc.tar" debian-gcc:bookworm
    examples+=(multi-stage-gcc)
    [ "$with_cache_mount" = 0 ] || examples+=(cache-mount)
fi

tags=()
for ex in "${examples[@]}"; do
    tag=strata-example/$ex:latest
    step "strata build -t $tag examples/$ex"
    "$strata" build --progress plain -t "$tag" "$repo/examples/$ex"
    tags+=("$tag")
done

step "strata images"
"$strata" images

step "strata save -o $out ${tags[*]}"
"$strata" save -o "$out" "${tags[@]}"
ls -l "$out"

cat <<EOF

Done. The store is $STRATA_ROOT (export STRATA_ROOT=$STRATA_ROOT to keep using it).
To run the images with docker:  docker load -i $out
  docker run --rm strata-example/multi-stage            # prints a greeting
  docker run --rm strata-example/app-with-dependency    # prints a table
  docker run --rm -p 8080:8080 strata-example/static-site   # then open http://localhost:8080/
EOF
