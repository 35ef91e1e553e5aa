#!/usr/bin/env bash
# Push into an empty registry and pull a 500 MiB, 5-layer image (3 layers random, 2
# compressible, gzip) with strata and with `skopeo copy`; prints best-of-RUNS seconds and
# the ratios (skopeo time / strata time; target >= 1.2 on both). Issue 5.
#
#   benches/registry.sh            RUNS=3 (default), SIZE_MB=500, KEEP=1 keeps the work dir,
#                                  STRATA=path skips the release build
#
# Registry: Debian's docker-registry on 127.0.0.1 (plain http), a fresh one for every push.
# Pull: skopeo copy docker://… oci:DIR vs strata pull into a fresh root (both fsync blobs).
# Push: skopeo copy oci:LAYOUT docker://… vs strata push of the pulled image (the layers are
# already gzip, so neither needs to compress). Page cache is warm for the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-500}
. benches/registry-lib.sh
skopeo_bench_setup registry

echo "== making a ${SIZE_MB} MiB 5-layer OCI layout" >&2
python3 - "$W/layout" "$SIZE_MB" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out, size_mb = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
per = size_mb * 1024 * 1024 // 5
layers, diff_ids = [], []
for i in range(5):
    if i in (1, 3):  # compressible: text
        line = b"the quick brown fox jumps over the lazy dog %08d\n"
        content = b"".join(line % n for n in range(per // len(line % 0) + 1))[:per]
    else:
        content = os.urandom(per)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        ti = tarfile.TarInfo(f"layer{i}.bin"); ti.size = len(content); ti.mtime = 1700000000
        t.addfile(ti, io.BytesIO(content))
    tar = buf.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    d = blob(gzip.compress(tar, compresslevel=1, mtime=0))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **d})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
c = blob(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **c}, "layers": layers}).encode()
m = blob(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **m,
    "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
du -sh "$W/layout" >&2



start_registry src
SRC=$REG
skopeo copy -q --dest-tls-verify=false "oci:$W/layout:bench" "docker://$SRC/bench:1"

sk_pull="" st_pull="" sk_push="" st_push=""
for run in $(seq "$RUNS"); do
  rm -rf "$W/sk-oci" "$W/root"
  t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$SRC/bench:1" "oci:$W/sk-oci:bench"; t1=$(now)
  sk_pull+=" $(secs "$t0" "$t1")"
  t0=$(now); "$STRATA" --root "$W/root" pull -q "$SRC/bench:1" >/dev/null; t1=$(now)
  st_pull+=" $(secs "$t0" "$t1")"

  start_registry "push-sk-$run"
  t0=$(now); skopeo copy -q --dest-tls-verify=false "oci:$W/layout:bench" "docker://$REG/bench:1"; t1=$(now)
  sk_push+=" $(secs "$t0" "$t1")"
  stop_last_registry "push-sk-$run"

  start_registry "push-st-$run"
  "$STRATA" --root "$W/root" tag "$SRC/bench:1" "$REG/bench:1"
  t0=$(now); "$STRATA" --root "$W/root" push -q "$REG/bench:1" >/dev/null; t1=$(now)
  st_push+=" $(secs "$t0" "$t1")"
  stop_last_registry "push-st-$run"
  echo "run $run: pull skopeo/strata ${sk_pull##* }/${st_pull##* } s, push ${sk_push##* }/${st_push##* } s" >&2
done

SKP=$(echo "$sk_pull" | best); STP=$(echo "$st_pull" | best)
SKU=$(echo "$sk_push" | best); STU=$(echo "$st_push" | best)
printf '%-6s %10s %10s %8s\n' op skopeo_s strata_s ratio
printf '%-6s %10s %10s %8s\n' pull "$SKP" "$STP" "$(awk "BEGIN { printf \"%.2f\", $SKP / $STP }")"
printf '%-6s %10s %10s %8s\n' push "$SKU" "$STU" "$(awk "BEGIN { printf \"%.2f\", $SKU / $STU }")"
