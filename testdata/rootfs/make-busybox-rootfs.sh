#!/bin/sh
# Build a minimal, reproducible busybox root filesystem tar.
#
#   make-busybox-rootfs.sh OUT.tar
#
# Uses /bin/busybox from Debian's busybox-static (`apt-get install -y busybox-static`):
# the binary is static, so the tar needs nothing else to run. Every applet becomes a
# symlink to /bin/busybox at the path busybox itself reports (`--list-full`). /etc/passwd
# and /etc/group hold root and nobody; /tmp is 1777. Entries are sorted, owned by 0:0
# and stamped with SOURCE_DATE_EPOCH (default 0) so the same busybox gives the same bytes.
#
# BUSYBOX=PATH takes another busybox binary (e.g. the arm64 one from busybox-static:arm64);
# APPLETS_FROM=PATH is the busybox that lists the applets, for a binary this machine
# cannot run (the host's busybox-static of the same Debian version has the same applets).
set -eu
umask 022

out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
busybox=${BUSYBOX:-/bin/busybox}
applets_from=${APPLETS_FROM:-$busybox}
epoch=${SOURCE_DATE_EPOCH:-0}

if [ ! -x "$busybox" ] || [ ! -x "$applets_from" ]; then
    echo "make-busybox-rootfs.sh: $busybox not found; run: apt-get install -y busybox-static" >&2
    exit 1
fi
if ! "$applets_from" --list-full >/dev/null 2>&1; then
    echo "make-busybox-rootfs.sh: $applets_from does not support --list-full (need a busybox-static build)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/etc" \
    "$root/root" "$root/home" "$root/var" "$root/tmp"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"

"$applets_from" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"

tar --create --file "$out" --directory "$root" \
    --sort=name --numeric-owner --owner=0 --group=0 \
    --mtime="@$epoch" --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    .
