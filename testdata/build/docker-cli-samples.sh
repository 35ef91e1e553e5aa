#!/usr/bin/env bash
# Print what the docker CLI (Debian's docker.io, BuildKit on) shows for the commands strata mirrors,
# so strata's output can be compared line by line. Uses a private dockerd (benches/lib.sh).
#
#   bash testdata/build/docker-cli-samples.sh > testdata/build/docker-cli-samples.txt
. "$(dirname "$0")/../../benches/lib.sh"
ex=$BENCH_REPO/examples
start_dockerd
make_base
show() {
    echo
    echo "\$ docker $*" | sed "s|$BENCH_WORK|\$WORK|g; s|$BENCH_REPO/||g"
    { docker_ "$@" 2>&1 && echo "[exit 0]" || echo "[exit $?]"; } | sed -E "s/sha256:[0-9a-f]{64}/sha256:<digest>/g; s|$BENCH_WORK|\$WORK|g"
}

show import "$BASE_TAR" busybox:latest
show build --network host --progress plain -t strata-example/app-with-dependency "$ex/app-with-dependency"
show build --network host --progress plain -t strata-example/app-with-dependency "$ex/app-with-dependency"
show build -q --network host -t strata-example/multi-stage "$ex/multi-stage"
show build --network host --progress plain --target nosuchstage "$ex/multi-stage"
bad=$BENCH_WORK/bad
mkdir -p "$bad"
printf 'FROM busybox:latest\nRUN true\nRUNN echo typo\n' >"$bad/Dockerfile"
show build --network host --progress plain "$bad"
printf 'FROM busybox:latest\nCOPY missing.txt /\n' >"$bad/Dockerfile"
show build --network host --progress plain "$bad"
printf 'FROM busybox:latest\nRUN echo ${X:?X must be set}\n' >"$bad/Dockerfile"
show build --network host --progress plain "$bad"
printf 'FROM nosuchimage:locally\nRUN true\n' >"$bad/Dockerfile"
show build --network none --progress plain "$bad"
show images
show images -a
show images --digests
show images -q
show history strata-example/app-with-dependency
show history --no-trunc --format '{{.CreatedBy}}' strata-example/multi-stage
show tag strata-example/multi-stage mytag:1
show rmi mytag:1
show rmi nosuch:image
show save -o "$BENCH_WORK/out.tar" strata-example/multi-stage
show rmi strata-example/multi-stage
show load -i "$BENCH_WORK/out.tar"
show system df
show builder prune -af
show image prune -f
show image prune -af
show system df
