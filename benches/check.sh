#!/usr/bin/env bash
# issue 4: `strata build --check` on a 300-line Dockerfile must take < 5 ms of process time.
#
# Generates a 300-line multi-stage Dockerfile (global ARGs, continuations, heredocs, COPY
# --from, ENV/LABEL, RUN --mount, HEALTHCHECK), checks it once for the verdict, then
# measures CPU time (task-clock = user + sys) with `perf stat -r RUNS`, falling back to
# /usr/bin/time. Then checks a 100,000-line Dockerfile of ENV lines once: the check's cost
# must stay linear in the file (a quadratic step made this 45 s against 0.25 s for 12,500
# lines). Usage: benches/check.sh [RUNS]   (STRATA=path/to/strata, default
# target/release/strata; build it first with `cargo build --release`).
set -euo pipefail

cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
RUNS=${1:-${RUNS:-50}}
TARGET_MS=5

if [[ ! -x $STRATA ]]; then
    echo "no strata binary at $STRATA: run \`cargo build --release\` or set STRATA" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
df=$work/Dockerfile

generate() {
    echo '# syntax=docker/dockerfile:1'
    echo 'ARG GO_VERSION=1.22'
    echo 'ARG ALPINE_VERSION=3.20'
    echo 'ARG APP=bench'
    for s in 1 2 3 4 5 6; do
        echo "FROM --platform=\$BUILDPLATFORM golang:\${GO_VERSION} AS build$s"
        echo 'ARG APP'
        echo "ENV CGO_ENABLED=0 GOFLAGS=-trimpath APP_DIR=/src/\${APP}/$s"
        echo 'WORKDIR $APP_DIR'
        echo 'COPY go.mod go.sum ./'
        echo 'RUN --mount=type=cache,target=/go/pkg/mod \'
        echo '    go mod download'
        echo 'COPY --chown=1000:1000 . .'
        for r in 1 2 3 4 5; do
            echo "RUN --mount=type=cache,target=/root/.cache/go-build,id=build$s \\"
            echo "    set -eux; \\"
            echo "    go vet ./pkg$r/... \\"
            echo "    && go test -run 'Test$r' ./pkg$r/... \\"
            echo "    && go build -o /out/step$r ./cmd/step$r"
        done
        echo 'RUN <<EOF'
        echo 'set -e'
        echo 'echo "stage '"$s"' built for $APP_DIR" > /out/info'
        echo 'EOF'
        echo "LABEL org.opencontainers.image.title=\"\${APP}-$s\" stage=$s"
        echo ''
    done
    echo 'FROM alpine:${ALPINE_VERSION} AS final'
    echo 'RUN apk add --no-cache ca-certificates tzdata \'
    echo '    && addgroup -S app && adduser -S -G app app'
    for s in 1 2 3 4 5 6; do
        echo "COPY --from=build$s --chmod=0755 /out/ /usr/local/bin/build$s/"
    done
    echo 'COPY <<EOF /etc/app.conf'
    for i in $(seq 1 20); do echo "key$i = value$i"; done
    echo 'EOF'
    echo 'ENV PATH=/usr/local/bin/build1:$PATH'
    echo 'USER app'
    echo 'WORKDIR /home/app'
    echo 'EXPOSE 8080/tcp 9090/tcp'
    echo 'HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/build1/step1", "health"]'
    echo 'STOPSIGNAL SIGTERM'
    echo 'ENTRYPOINT ["/usr/local/bin/build1/step1"]'
    echo 'CMD ["serve"]'
}

generate > "$df"
lines=$(wc -l < "$df")
while (( lines < 300 )); do echo "LABEL pad$lines=x" >> "$df"; lines=$((lines + 1)); done
echo "Dockerfile: $lines lines"

"$STRATA" build --check -f "$df" "$work" || { echo "check failed on the generated Dockerfile" >&2; exit 1; }

if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
    ms=$(perf stat -r "$RUNS" -x, -e task-clock "$STRATA" build --check -f "$df" "$work" 2>&1 >/dev/null \
        | awk -F, '/task-clock/ { printf "%.2f", $1 }')
    how="perf stat -r $RUNS task-clock (mean)"
else
    total=0
    for _ in $(seq 1 "$RUNS"); do
        t=$( { /usr/bin/time -f '%U %S' "$STRATA" build --check -f "$df" "$work" >/dev/null; } 2>&1 | tail -1)
        total=$(awk -v t="$total" -v u="${t% *}" -v s="${t#* }" 'BEGIN { print t + (u + s) * 1000 }')
    done
    ms=$(awk -v t="$total" -v n="$RUNS" 'BEGIN { printf "%.2f", t / n }')
    how="/usr/bin/time user+sys, mean of $RUNS (10 ms resolution)"
fi
verdict=$(awk -v m="$ms" -v t="$TARGET_MS" 'BEGIN { print (m < t) ? "ok" : "SLOW" }')
echo "check of $lines lines: $ms ms process time ($how); target < $TARGET_MS ms: $verdict"

# Linear cost: 100,000 ENV lines, one stage. Compare with 12,500 lines (8x fewer): a linear
# check takes about 8x less time; a quadratic one about 64x less.
for n in 12500 100000; do
    big=$work/Env$n.Dockerfile
    { echo 'FROM alpine'; seq 1 "$n" | awk '{ print "ENV V" $1 "=v" $1 }'; } > "$big"
    t=$( { /usr/bin/time -f '%e %U %S' "$STRATA" build --check -f "$big" "$work" >/dev/null; } 2>&1 | tail -1)
    read -r wall user sys <<<"$t"
    echo "check of $n ENV lines: ${wall} s wall, $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') s process time"
done
