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
# Concurrent runs wait for one build; the binary is built into a scratch directory and renamed into
# place only once `promtool --version` runs (hack/lib/cached-build.sh).
# Needs Go (>= the go directive of that release, 1.26.7 for v0.316.0) and the module proxy.
set -euo pipefail
# shellcheck source=hack/lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"

build_promtool() {
  local out="$1"
  command -v go >/dev/null || cached_die "go not found: install Go 1.26.7 or newer (promtool is built from the Go module proxy)"
  cached_log "building github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION -tags remove_all_sd (once)"
  # GOFLAGS=-mod=mod: `go install pkg@version` ignores any go.work/go.mod around it; CGO off gives a
  # static binary that does not depend on the machine's C library.
  GOBIN="$out" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -tags remove_all_sd -trimpath -ldflags='-s -w' \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2 ||
    cached_die "go install of promtool@$PROMTOOL_VERSION failed (is the Go module proxy reachable? is Go new enough?)"
  "$out/promtool" --version >/dev/null 2>&1 || cached_die "the built promtool does not run"
}

# The last line is the binary, not the directory: callers run it directly.
target="$(cached_build promtool "$CACHE/promtool-$PROMTOOL_VERSION" build_promtool promtool | tail -n1)"
printf '%s\n' "$target/promtool"
