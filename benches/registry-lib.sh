# Shared by the registry benchmarks (registry.sh, push-gzip.sh) and lib.sh: Debian's
# docker-registry on 127.0.0.1, and the set-up of a skopeo-vs-strata run.
#   . "$(dirname "$0")/registry-lib.sh"

# launch_registry DIR: docker-registry (plain http) on a free 127.0.0.1 port with its storage
# under DIR; sets REG (host:port) and REG_PID. Stopping it is the caller's.
# REGISTRY_SESSION=own starts it in a session of its own (`setsid`), and so in a scheduling
# group of its own (autogroup), as a registry run as a service or container is: it then
# gets its share of the cores as one group, not as one thread among the measured tool's.
launch_registry() {
  local dir=$1 port i
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
  secret: bench
YML
  # Not exported to it: docker-registry reads REGISTRY_* variables as config overrides.
  local session=()
  if [ "${REGISTRY_SESSION:-}" = own ]; then session=(setsid); fi
  env -u REGISTRY_AUTH_FILE "${session[@]}" docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REG_PID=$!
  for ((i = 0; i < 600; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then REG=127.0.0.1:$port; return 0; fi
    sleep 0.05
  done
  cat "$dir/log" >&2
  echo "docker-registry did not start on port $port" >&2
  exit 1
}

# skopeo_bench_setup NAME: checks the tools, builds strata (unless STRATA is set), makes the
# work dir W (removed at exit unless KEEP=1) and the skopeo wrapper; registries started with
# start_registry are stopped at exit.
skopeo_bench_setup() {
  local t
  for t in skopeo:skopeo docker-registry:docker-registry python3:python3; do
    command -v "${t%%:*}" >/dev/null || { echo "needs ${t%%:*}: apt-get install -y ${t##*:}" >&2; exit 1; }
  done
  if [ -z "${STRATA:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
    cargo build --release --quiet --bin strata
    STRATA=$CARGO_TARGET_DIR/release/strata
  fi
  W=$(mktemp -d "${BENCH_TMP:-/var/tmp}/strata-$1-bench.XXXXXX")
  PIDS=()
  trap _skopeo_bench_cleanup EXIT
  export DOCKER_CONFIG=$W/docker-config
}
_skopeo_bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
skopeo() { REGISTRY_AUTH_FILE=$W/auth.json command skopeo "$@"; }

# start_registry NAME / stop_last_registry NAME: a fresh, empty registry per measurement.
start_registry() {
  launch_registry "$W/reg-$1"
  PIDS+=("$REG_PID")
}
stop_last_registry() {
  local p=${PIDS[-1]}
  kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  unset 'PIDS[-1]'
  rm -rf "$W/reg-$1"
}

now() { date +%s.%N; }
best() { tr ' ' '\n' | sed '/^$/d' | sort -g | head -1; }
secs() { awk "BEGIN { printf \"%.3f\", $2 - $1 }"; }
