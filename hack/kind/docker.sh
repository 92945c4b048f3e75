#!/usr/bin/env bash
# hack/kind/docker.sh — make sure a Docker Engine answers `docker info`, installing and starting
# one if needed. Idempotent; prints each stage's time on stderr.
#
#   1. A daemon already answers (a user's Docker Desktop/Engine, or one this script started
#      earlier): use it as it is — nothing is installed, restarted or reconfigured.
#   2. No `dockerd`: install Debian's `docker.io` (Docker Engine 20.10, containerd, runc) with apt.
#   3. Start `dockerd` as root in the background, log at $REALM_OPERATOR_CACHE/docker/dockerd.log,
#      and wait for `docker info`.
#      Where root lacks CAP_SYS_RESOURCE in its bounding set (some sandboxes), privileged
#      containers — every kind node — fail with "unable to apply caps". Then the daemon's default
#      runtime is hack/kind/runtime-wrapper (built here with Go), which removes that capability
#      from the OCI spec before running the real runc.
#
# The Docker client may be newer than the 20.10 daemon (API 1.41): the client negotiates the API
# version down by itself; if it cannot, this script says to export DOCKER_API_VERSION=1.41.
# Builds need the legacy builder here: export DOCKER_BUILDKIT=0 (hack/kind/lib.sh does).
#
# Env: REALM_OPERATOR_CACHE, DOCKERD_EXTRA_ARGS (appended to dockerd's arguments),
#      DOCKER_WAIT_SECONDS (default 60).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKER_STATE="$REALM_OPERATOR_CACHE/docker"
WRAPPER_SRC="$REPO_ROOT/hack/kind/runtime-wrapper/main.go"
WRAPPER_RUNTIME="realm-runc"
CAP_SYS_RESOURCE=24

docker_answers() { docker info >/dev/null 2>&1; }

needs_cap_wrapper() { ! cap_bounding_has "$CAP_SYS_RESOURCE"; }

install_engine() {
  apt_install docker.io
  have dockerd || die "docker.io installed but dockerd is not on PATH"
}

# The wrapper binary is keyed by its source's hash, so an edited wrapper is rebuilt.
build_wrapper() {
  local hash bin
  hash=$(sha256sum "$WRAPPER_SRC" | cut -c1-12)
  bin="$DOCKER_STATE/runc-capstrip-$hash"
  if [ ! -x "$bin" ]; then
    have go || die "CAP_SYS_RESOURCE is missing from the bounding set and the runc wrapper needs Go to build (install golang)"
    mkdir -p "$DOCKER_STATE"
    (cd "$(dirname "$WRAPPER_SRC")" && CGO_ENABLED=0 GOFLAGS='' go build -trimpath -o "$bin.tmp" "$WRAPPER_SRC")
    mv -f "$bin.tmp" "$bin"
  fi
  WRAPPER_BIN="$bin"
}

start_daemon() {
  local args=() real_runc
  mkdir -p "$DOCKER_STATE"
  if needs_cap_wrapper; then
    build_wrapper
    real_runc=$(command -v runc || true)
    [ -n "$real_runc" ] || die "runc not found (Debian's docker.io depends on it)"
    log "CAP_SYS_RESOURCE is not in the bounding set: default runtime $WRAPPER_RUNTIME -> $WRAPPER_BIN -> $real_runc"
    args+=(--add-runtime "$WRAPPER_RUNTIME=$WRAPPER_BIN" --default-runtime "$WRAPPER_RUNTIME")
    export REALM_OPERATOR_REAL_RUNC="$real_runc"
  fi
  # shellcheck disable=SC2206 # word splitting of the extra args is the point
  args+=(${DOCKERD_EXTRA_ARGS:-})
  log "starting dockerd ${args[*]} (log: $DOCKER_STATE/dockerd.log)"
  local launcher=()
  [ "$(id -u)" -eq 0 ] || launcher=(sudo)
  spawn_detached "$DOCKER_STATE/dockerd.log" "${launcher[@]}" \
    env REALM_OPERATOR_REAL_RUNC="${REALM_OPERATOR_REAL_RUNC:-}" dockerd "${args[@]}"
  local waited=0 limit="${DOCKER_WAIT_SECONDS:-60}"
  until docker_answers; do
    if [ "$waited" -ge "$limit" ]; then
      tail -n 30 "$DOCKER_STATE/dockerd.log" >&2 || true
      die "dockerd did not answer within ${limit}s (log above: $DOCKER_STATE/dockerd.log)"
    fi
    if [ "$waited" -ge 3 ] && ! pgrep -x dockerd >/dev/null 2>&1; then
      tail -n 30 "$DOCKER_STATE/dockerd.log" >&2 || true
      die "dockerd exited at start (log above: $DOCKER_STATE/dockerd.log)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

check_api() {
  local out
  if ! out=$(docker version --format '{{.Client.Version}} (API {{.Client.APIVersion}}) -> daemon {{.Server.Version}} (API {{.Server.APIVersion}})' 2>&1); then
    die "docker client and daemon disagree: $out — try: export DOCKER_API_VERSION=1.41"
  fi
  log "docker $out"
}

warn_if_privileged_will_fail() {
  needs_cap_wrapper || return 0
  local runtime
  runtime=$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)
  if [ "$runtime" != "$WRAPPER_RUNTIME" ]; then
    log "WARNING: CAP_SYS_RESOURCE is missing from the bounding set and the running daemon's default runtime is '$runtime':"
    log "  privileged containers (kind nodes) will fail with 'unable to apply caps'. Stop that dockerd and rerun this script,"
    log "  or register hack/kind/runtime-wrapper as its default runtime yourself."
  fi
}

main() {
  if docker_answers; then
    log "a Docker daemon is already running: using it as it is"
  else
    if ! have dockerd; then stage install-docker-engine install_engine; fi
    # A dockerd that runs but does not answer may be starting: give it a moment. Never start a
    # second one beside it (they would fight over the socket, docker0 and iptables).
    if pgrep -x dockerd >/dev/null 2>&1; then
      for _ in $(seq 1 20); do
        if docker_answers; then break; fi
        sleep 1
      done
      if ! docker_answers; then
        die "a dockerd is running but \`docker info\` fails: $(docker info 2>&1 | tail -n 1) — fix its access (socket permissions, DOCKER_HOST) or stop it"
      fi
    else
      stage start-dockerd start_daemon
    fi
  fi
  check_api
  warn_if_privileged_will_fail
}

main "$@"; exit
