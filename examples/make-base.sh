#!/bin/sh
# Make a Debian bookworm root filesystem tar with a C toolchain (gcc, libc6-dev), for the
# examples that compile C: `debootstrap --variant=minbase` from Debian's own package mirror.
#
#   make-base.sh OUT.tar        then: strata import OUT.tar debian-gcc:bookworm
#
# PACKAGES (default gcc,libc6-dev) are the extra packages; PACKAGES= makes a plain minbase.
#
# Needs root and access to a Debian mirror (MIRROR, default: the first one apt uses here, else
# http://deb.debian.org/debian). Measured on a 2-core machine: about 2 minutes, a 460 MB tree,
# a ~300 MB tar (apt's package cache and lists are left out).
set -eu
out=${1:?usage: make-base.sh OUT.tar}
suite=${SUITE:-bookworm}
packages=${PACKAGES-gcc,libc6-dev}
include=
[ -z "$packages" ] || include=--include=$packages

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "make-base.sh: installing debootstrap (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi
if [ -z "${MIRROR:-}" ]; then
    MIRROR=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" && $2 ~ /^http/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/make-base.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
echo "make-base.sh: debootstrap --variant=minbase $include $suite from $MIRROR" >&2
debootstrap --variant=minbase $include "$suite" "$work/root" "$MIRROR" >"$work/log" 2>&1 || {
    tail -20 "$work/log" >&2
    echo "make-base.sh: debootstrap failed (log above)" >&2
    exit 1
}
# What an image does not need: downloaded packages, package lists, device nodes (the runtime
# makes /dev), anything under /proc and /sys.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* \
    "$work/root/dev/"* "$work/root/proc/"* "$work/root/sys/"* "$work/root/tmp/"*
tar --create --file "$out" --directory "$work/root" --sort=name --numeric-owner .
ls -l "$out" >&2
