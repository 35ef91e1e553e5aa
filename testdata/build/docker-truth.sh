#!/usr/bin/env bash
# Build every fixture here with docker/BuildKit (a private dockerd, see benches/lib.sh) and print
# what docker produced: build status, the files the fixture README says to assert, the image
# config, and the file list of each layer from `docker save`. This is the ground truth the
# strata e2e tests compare against; re-run it after changing a fixture.
#
#   bash testdata/build/docker-truth.sh [FIXTURE...] > truth.txt
. "$(dirname "$0")/../../benches/lib.sh"

here=$BENCH_REPO/testdata/build
fixtures=("$@")
[ ${#fixtures[@]} -gt 0 ] || fixtures=(multi-stage arg-env workdir-user whiteouts dockerignore failing-run)

need busybox busybox-static
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null || need dockerd docker.io
start_dockerd
make_base
docker_ import "$BASE_TAR" busybox:latest >/dev/null

# cat_file IMAGE PATH: the file's content through docker create + docker cp (no container runs).
cat_file() {
    local ctr
    ctr=$(docker_ create "$1" /bin/true)
    docker_ cp "$ctr:$2" - | tar -xO
    docker_ rm "$ctr" >/dev/null
}

# layers IMAGE: each layer's tar listing (type, mode, uid/gid, size, name) from docker save.
layers() {
    local d=$BENCH_WORK/save-$RANDOM
    mkdir -p "$d"
    docker_ save "$1" | tar -x -C "$d"
    local n=0 l
    for l in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$d/manifest.json"); do
        n=$((n + 1))
        if [ "$n" = 1 ]; then echo "-- layer 1: the base, $(tar -tf "$d/$l" | wc -l) entries"; continue; fi
        echo "-- layer $n"
        tar -tvf "$d/$l" --numeric-owner | awk '{print $1, $2, $3, $6}' | sed 's/^/   /'
    done
    rm -rf "$d"
}

config() {
    docker_ image inspect "$1" --format '{{json .Config}}' | python3 -c '
import json, sys
c = json.load(sys.stdin)
for k in ("User", "Env", "Cmd", "Entrypoint", "WorkingDir", "Labels", "ExposedPorts", "Healthcheck"):
    if c.get(k): print("  ", k, "=", json.dumps(c[k]))'
}

build() { # build FIXTURE TAG [ARGS...]
    local fx=$1 tag=$2
    shift 2
    docker_ build --network host --progress plain -t "$tag" "$@" "$here/$fx" >"$BENCH_WORK/build.log" 2>&1
}

for fx in "${fixtures[@]}"; do
    echo "=================== $fx"
    tag=fixture-$fx
    case $fx in
    arg-env)
        build "$fx" "$tag" || { echo "BUILD FAILED"; tail "$BENCH_WORK/build.log"; continue; }
        echo "# default build args: /result.txt"
        cat_file "$tag" /result.txt
        config "$tag"
        build "$fx" "$tag-args" --build-arg WHO=strata --build-arg EMPTY=x --build-arg UNSET=given \
            || { echo "BUILD FAILED"; tail "$BENCH_WORK/build.log"; continue; }
        echo "# --build-arg WHO=strata --build-arg EMPTY=x --build-arg UNSET=given: /result.txt"
        cat_file "$tag-args" /result.txt
        config "$tag-args"
        ;;
    failing-run)
        if build "$fx" "$tag"; then echo "UNEXPECTED: build succeeded"; else echo "build failed (exit $?) as expected; log tail:"; fi
        tail -12 "$BENCH_WORK/build.log" | sed 's/^/   | /'
        echo "# images tagged $tag: $(docker_ images -q "$tag" | wc -l)"
        build "$fx" "$tag" || true
        echo "# second attempt: CACHED steps: $(grep -c CACHED "$BENCH_WORK/build.log" || true)"
        ;;
    *)
        build "$fx" "$tag" || { echo "BUILD FAILED"; tail "$BENCH_WORK/build.log"; continue; }
        case $fx in
        multi-stage) echo "# /out/shout.txt"; cat_file "$tag" /out/shout.txt; echo "# /out/base.txt"; cat_file "$tag" /out/base.txt
            echo "# build log mentions the broken stage: $(grep -c 'broken' "$BENCH_WORK/build.log" || true)"
            if build "$fx" "$tag-target" --target build; then
                echo "# --target build: /work/shout.txt"; cat_file "$tag-target" /work/shout.txt; config "$tag-target"
            else echo "--target build FAILED"; fi ;;
        workdir-user) for f in /tmp/pwd.txt /tmp/uid-nobody.txt /tmp/uid-1234.txt /tmp/owner.txt; do echo "# $f"; cat_file "$tag" "$f"; done ;;
        whiteouts) echo "# /listing.txt"; cat_file "$tag" /listing.txt ;;
        dockerignore) echo "# /listing.txt"; cat_file "$tag" /listing.txt ;;
        esac
        config "$tag"
        if [ "$fx" != dockerignore ]; then echo "# layers (docker save)"; layers "$tag"; fi
        ;;
    esac
done
