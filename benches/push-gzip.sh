#!/usr/bin/env bash
# Push a freshly built image with one large plain layer into an empty registry: `strata
# push` (which gzips the plain tar on its first push, docs/design.md §4.4) against `skopeo
# copy --dest-compress` of an OCI layout holding the same uncompressed layer. Prints
# best-of-RUNS seconds, the ratio skopeo/strata (>1: strata is faster) and the gzip sizes.
#
#   benches/push-gzip.sh     RUNS=3 (default), SIZE_MB=500 (half random, half text),
#                            KEEP=1 keeps the work dir, STRATA=path skips the release build,
#                            RT=1 runs the pushes and their registry round-robin real-time
#                            (`chrt -r 1`, root only): on a machine busy with other work
#                            they take the cores first, so the times come near an idle
#                            machine's (the other work gets what they leave idle),
#                            REGISTRY_SESSION=own (the default here) runs each registry in a
#                            session (so a scheduling group) of its own, as a registry runs
#                            as a service or container; REGISTRY_SESSION=shared runs it in
#                            the bench's, where it gets the cores as one thread among the
#                            measured tool's (docs/design.md §4.4)
#
# The image: `FROM scratch` + `COPY random.bin text.txt /data/`, built once by strata (a
# plain-tar layer of SIZE_MB). Before every strata run the built root is copied afresh, so
# each push compresses (nothing recorded yet); "strata, gzip kept" pushes the same root again
# into another empty registry (the gzip form recorded by the first push: upload only); its
# ratio to skopeo is the most a first push could show against the same registry that run.
# skopeo reads the same plain layer (hard links of the strata root's blobs into a layout)
# and compresses while uploading: at its default level, and at level 1 (strata's level).
# Registry: Debian's docker-registry on 127.0.0.1 (plain http), a fresh one for every push.
# Page cache is warm for the sources of both tools.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-500}
export REGISTRY_SESSION=${REGISTRY_SESSION:-own}
. benches/registry-lib.sh
skopeo_bench_setup push-gzip
PRIO=""
if [ "${RT:-0}" = 1 ]; then PRIO="chrt -r 1"; fi

# start_registry, and with RT=1 the registry (every thread) real-time too.
start_measured_registry() {
  start_registry "$1"
  if [ -n "$PRIO" ]; then chrt -a -r -p 1 "$REG_PID" >/dev/null; fi
}
# skopeo (registry-lib's wrapper) run as $PRIO says.
skopeo_measured() { REGISTRY_AUTH_FILE=$W/auth.json $PRIO "$(type -P skopeo)" "$@"; }

echo "== building a ${SIZE_MB} MiB plain layer with strata" >&2
mkdir -p "$W/ctx"
half=$((SIZE_MB / 2))
head -c "${half}M" /dev/urandom >"$W/ctx/random.bin"
python3 - "$W/ctx/text.txt" "$((SIZE_MB - half))" <<'PY'
import sys
path, mb = sys.argv[1], int(sys.argv[2])
want = mb * 1024 * 1024
with open(path, "wb") as f:
    n = 0
    while n < want:
        chunk = b"".join(b"the quick brown fox jumps over the lazy dog %08d\n" % i
                         for i in range(n // 52, n // 52 + 20000))
        f.write(chunk[: want - n])
        n += min(len(chunk), want - n)
PY
printf 'FROM scratch\nCOPY random.bin text.txt /data/\n' >"$W/ctx/Dockerfile"
"$STRATA" --root "$W/built" build -q -t bench/big:1 "$W/ctx" >/dev/null

# The same image as an OCI layout with the uncompressed layer, for skopeo (hard links).
python3 - "$W/built" "$W/plain" <<'PY'
import json, os, sys
root, out = sys.argv[1], sys.argv[2]
index = json.load(open(f"{root}/index.json"))
m = next(e for e in index["manifests"]
         if e.get("annotations", {}).get("io.containerd.image.name") == "docker.io/bench/big:1")
os.makedirs(f"{out}/blobs/sha256")
def link(d):
    h = d.split(":")[1]
    os.link(f"{root}/blobs/sha256/{h}", f"{out}/blobs/sha256/{h}")
manifest = json.load(open(f"{root}/blobs/sha256/{m['digest'].split(':')[1]}"))
for d in [m["digest"], manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]:
    link(d)
assert [l["mediaType"] for l in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar"]
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": m["mediaType"], "digest": m["digest"],
    "size": m["size"], "annotations": {"org.opencontainers.image.ref.name": "bench"}}]},
    open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(f"layer: {manifest['layers'][0]['size']} bytes plain", file=sys.stderr)
PY

# layer_of REF: "mediaType size" of the pushed image's only layer.
layer_of() {
  skopeo inspect --tls-verify=false --raw "docker://$1" |
    python3 -c 'import json,sys; l=json.load(sys.stdin)["layers"][0]; print(l["mediaType"], l["size"])'
}


st="" st_kept="" sk="" sk1=""
for run in $(seq "$RUNS"); do
  rm -rf "$W/root"
  cp -a "$W/built" "$W/root"
  sync

  start_measured_registry "st-$run"
  "$STRATA" --root "$W/root" tag bench/big:1 "$REG/bench/big:1"
  t0=$(now); $PRIO "$STRATA" --root "$W/root" push -q "$REG/bench/big:1" >/dev/null; t1=$(now)
  st+=" $(secs "$t0" "$t1")"
  st_layer=$(layer_of "$REG/bench/big:1")
  stop_last_registry "st-$run"

  start_measured_registry "st-kept-$run"
  "$STRATA" --root "$W/root" tag bench/big:1 "$REG/bench/big:1"
  t0=$(now); $PRIO "$STRATA" --root "$W/root" push -q "$REG/bench/big:1" >/dev/null; t1=$(now)
  st_kept+=" $(secs "$t0" "$t1")"
  stop_last_registry "st-kept-$run"

  start_measured_registry "sk-$run"
  t0=$(now); skopeo_measured copy -q --dest-compress --dest-tls-verify=false "oci:$W/plain:bench" "docker://$REG/bench/big:1"; t1=$(now)
  sk+=" $(secs "$t0" "$t1")"
  sk_layer=$(layer_of "$REG/bench/big:1")
  stop_last_registry "sk-$run"

  start_measured_registry "sk1-$run"
  t0=$(now); skopeo_measured copy -q --dest-compress --dest-compress-level 1 --dest-tls-verify=false "oci:$W/plain:bench" "docker://$REG/bench/big:1"; t1=$(now)
  sk1+=" $(secs "$t0" "$t1")"
  sk1_layer=$(layer_of "$REG/bench/big:1")
  stop_last_registry "sk1-$run"
  echo "run $run: strata ${st##* } s (gzip kept ${st_kept##* } s), skopeo ${sk##* } s, skopeo level 1 ${sk1##* } s" >&2
done

ST=$(echo "$st" | best); STK=$(echo "$st_kept" | best)
SK=$(echo "$sk" | best); SK1=$(echo "$sk1" | best)
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
printf '%-30s %9s %12s  %s\n' "push of ${SIZE_MB} MiB plain layer" seconds skopeo/strata "pushed layer (type, bytes)"
printf '%-30s %9s %12s  %s\n' "strata (compresses)" "$ST" "" "$st_layer"
printf '%-30s %9s %12s  %s\n' "strata, gzip kept (2nd push)" "$STK" "$(ratio "$SK" "$STK")" "(same; the ratio: what a first push would show if compressing cost nothing)"
printf '%-30s %9s %12s  %s\n' "skopeo --dest-compress" "$SK" "$(ratio "$SK" "$ST")" "$sk_layer"
printf '%-30s %9s %12s  %s\n' "skopeo ... --dest-compress-level 1" "$SK1" "$(ratio "$SK1" "$ST")" "$sk1_layer"
echo "(best of $RUNS runs, wall clock; each into an empty docker-registry${REGISTRY_SESSION:+ (session: $REGISTRY_SESSION)}${PRIO:+; pushes and registry under $PRIO})"
