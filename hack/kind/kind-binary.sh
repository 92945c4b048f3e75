#!/usr/bin/env bash
# hack/kind/kind-binary.sh — provide kind (pinned version) built from the Go module proxy, cached under
# ${REALM_OPERATOR_CACHE:-$HOME/.cache/realm-operator}/kind/<version>/kind. Prints its path as the last
# line of stdout; progress goes to stderr. Idempotent: a cached binary is reused.
#   KIND_VERSION (default v0.33.0)
set -euo pipefail

KIND_VERSION="${KIND_VERSION:-v0.33.0}"
CACHE="${REALM_OPERATOR_CACHE:-$HOME/.cache/realm-operator}"
DIR="$CACHE/kind/$KIND_VERSION"
BIN="$DIR/kind"
t0=$SECONDS
log() { printf '[kind-binary %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
  log "cached: $BIN ($("$BIN" version))"
else
  command -v go >/dev/null || { log "ERROR: go is not on PATH; install Go >= 1.24 (https://go.dev/dl/) and re-run"; exit 1; }
  mkdir -p "$DIR"
  log "building kind $KIND_VERSION from the Go module proxy…"
  # A temporary GOBIN, moved into place only when complete, so an interrupted build leaves nothing behind.
  tmp="$(mktemp -d "$DIR/.gobin.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-trimpath go install "sigs.k8s.io/kind@$KIND_VERSION" >&2
  mv -f "$tmp/kind" "$BIN"
  log "built $("$BIN" version)"
fi
log "stage kind-binary took $((SECONDS - t0))s"
printf '%s\n' "$BIN"
