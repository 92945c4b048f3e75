#!/usr/bin/env bash
# hack/promtool.sh — provide Prometheus's real `promtool` (rule checking and rule unit tests) for
# the monitoring tests: built ONCE from the Go module proxy at a pinned version into
#   ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/promtool-<version>/promtool
# and reused afterwards. Prints that binary's path as the LAST line of stdout (progress goes to
# stderr), so `export REALM_OPERATOR_PROMTOOL="$(hack/promtool.sh | tail -n1)"` works.
#
# Version: Prometheus v3's Go module is tagged v0.3xx.y on the proxy (v0.316.0 is Prometheus
# 3.16.0); its go.mod has no replace directives, so `go install …/cmd/promtool@<version>` builds it
# with exactly the dependencies it was released with. Override with PROMTOOL_VERSION.
#
# Built with `-tags remove_all_sd`, Prometheus's own build tag (plugins/plugin_*.go) that leaves out
# the cloud service-discovery plugins (AWS, Azure, GCE, …): they are only for `promtool check
# service-discovery` against those clouds, and compiling their SDKs made the full build take more than
# 10 minutes on 2 cores. `check rules`, `test rules` and the PromQL parser are the same code either way.
#
# Concurrent runs are serialized with flock (the lock's descriptor is closed for go, so a compiler
# left running by an interrupted build cannot hold it); the binary is built into a scratch directory and
# renamed into place only once `promtool --version` runs, so an interrupted build is never trusted.
# Needs Go (>= the go directive of that release, 1.26.7 for v0.316.0) and the module proxy.
set -euo pipefail

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}"
TARGET="$CACHE/promtool-$PROMTOOL_VERSION"

log() { printf '[promtool %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[promtool] ERROR: %s\n' "$*" >&2
  exit 1
}

ready() { [[ -x "$TARGET/promtool" && -f "$TARGET/.complete" ]]; }

if ready; then
  printf '%s\n' "$TARGET/promtool"
  exit 0
fi

command -v go >/dev/null || die "go not found: install Go 1.26.7 or newer (promtool is built from the Go module proxy)"

mkdir -p "$CACHE"
exec 9>"$CACHE/promtool.lock"
if ! flock -n 9; then
  log "another build holds $CACHE/promtool.lock; waiting for it"
  flock 9
fi

if ready; then # built by the run we waited for
  printf '%s\n' "$TARGET/promtool"
  exit 0
fi

started=$(date +%s)
SCRATCH="$(mktemp -d "$CACHE/promtool-$PROMTOOL_VERSION.tmp.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

log "building github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION -tags remove_all_sd (once; later runs reuse $TARGET)"
# GOFLAGS=-mod=mod: `go install pkg@version` ignores any go.work/go.mod around it; CGO off gives a
# static binary that does not depend on the machine's C library.
GOBIN="$SCRATCH" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -tags remove_all_sd -trimpath -ldflags='-s -w' \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2 9>&- \
  || die "go install of promtool@$PROMTOOL_VERSION failed (is the Go module proxy reachable? is Go new enough?)"
"$SCRATCH/promtool" --version >/dev/null 2>&1 || die "the built promtool does not run"
touch "$SCRATCH/.complete"

rm -rf "$TARGET"
mv "$SCRATCH" "$TARGET"
trap - EXIT
log "built in $(($(date +%s) - started)) s: $TARGET/promtool"
printf '%s\n' "$TARGET/promtool"
