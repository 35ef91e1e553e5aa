#!/bin/sh
# Throughput of `strata import` and `strata load` against `skopeo copy` of the same
# docker-archive into an `oci:` directory. Prints MB/s for each and the ratios.
#
#   benches/store-load.sh [SIZE_MB]     (default 400; needs skopeo: apt-get install -y skopeo)
#
# The rootfs is a third incompressible bytes, a third base64 text and a third real
# binaries from /usr, so compression does real work. Every run uses fresh roots;
# page cache is warm for the input (we measure the tools, not the disk's reads).
set -eu
SIZE_MB=${1:-400}
cd "$(dirname "$0")/.."
command -v skopeo >/dev/null || { echo "needs skopeo: apt-get install -y skopeo" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --bin strata
STRATA=$CARGO_TARGET_DIR/release/strata
W=$(mktemp -d /var/tmp/strata-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT

third=$((SIZE_MB / 3))
mkdir -p "$W/rootfs/data" "$W/rootfs/usr"
head -c "${third}M" /dev/urandom > "$W/rootfs/data/random.bin"
head -c "$((third * 3 / 4))M" /dev/urandom | base64 > "$W/rootfs/data/text.b64"
# Real binaries until the third is filled.
budget=$((third * 1024 * 1024))
find /usr/lib /usr/bin -type f -size +16k 2>/dev/null | while read -r f; do
  s=$(stat -c %s "$f"); [ "$budget" -gt 0 ] || break
  cp "$f" "$W/rootfs/usr/$(echo "$f" | tr / _)" 2>/dev/null || true
  budget=$((budget - s))
done
tar -C "$W/rootfs" -cf "$W/rootfs.tar" .
rm -rf "$W/rootfs"
TAR_MB=$(( $(stat -c %s "$W/rootfs.tar") / 1000000 ))

now() { date +%s.%N; }
rate() { echo "$1 $2 $3" | awk '{ printf "%.1f", $1 / ($3 - $2) }'; }

t0=$(now); "$STRATA" --root "$W/r1" import "$W/rootfs.tar" bench:1 >/dev/null; t1=$(now)
IMPORT=$(rate "$TAR_MB" "$t0" "$t1")
"$STRATA" --root "$W/r1" save -o "$W/bench.tar" bench:1
ARCH_MB=$(( $(stat -c %s "$W/bench.tar") / 1000000 ))
sync
t0=$(now); "$STRATA" --root "$W/r2" load -i "$W/bench.tar" >/dev/null; t1=$(now)
LOAD=$(rate "$ARCH_MB" "$t0" "$t1")
t0=$(now); skopeo copy -q "docker-archive:$W/bench.tar:bench:1" "oci:$W/sk1:bench" >/dev/null; t1=$(now)
SKOPEO=$(rate "$ARCH_MB" "$t0" "$t1")
t0=$(now); skopeo copy -q --dest-decompress "docker-archive:$W/bench.tar:bench:1" "oci:$W/sk2:bench" >/dev/null; t1=$(now)
SKOPEO_PLAIN=$(rate "$ARCH_MB" "$t0" "$t1")

echo "rootfs tar: ${TAR_MB} MB, docker-archive: ${ARCH_MB} MB ($(nproc) cores)"
echo "strata import (gzip -1 on 2 threads):         ${IMPORT} MB/s"
echo "strata load   (verify + store as is):         ${LOAD} MB/s"
echo "skopeo copy docker-archive: -> oci: (gzip):   ${SKOPEO} MB/s"
echo "skopeo copy --dest-decompress -> oci: (tar):  ${SKOPEO_PLAIN} MB/s"
echo "ratio load/skopeo: $(echo "$LOAD $SKOPEO" | awk '{printf "%.1fx", $1/$2}')  load/skopeo-plain: $(echo "$LOAD $SKOPEO_PLAIN" | awk '{printf "%.1fx", $1/$2}')  import/skopeo: $(echo "$IMPORT $SKOPEO" | awk '{printf "%.1fx", $1/$2}')"
