#!/usr/bin/env bash
# hack/prometheus-operator-crds.sh — the Prometheus Operator's CRDs for PrometheusRule, ServiceMonitor and
# PodMonitor, so the tests can `kubectl apply --dry-run=server` deploy/monitoring against a real API
# server. Taken from the prometheus-operator Go module's example/prometheus-operator-crd/ (the Go
# module proxy is the one registry that has them), copied ONCE into
#   ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/prometheus-operator-crds-<version>/
# Prints that directory as the LAST line of stdout. Override the version with PROMETHEUS_OPERATOR_VERSION.
set -euo pipefail
# shellcheck source=hack/lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CRDS=(monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml)

copy_crds() {
  local out="$1" dir
  command -v go >/dev/null || cached_die "go not found (the CRDs come from the Go module proxy)"
  # Outside any module, so no go.mod around is consulted or changed.
  dir="$(cd "$out" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir/example/prometheus-operator-crd" ]] ||
    cached_die "go mod download of prometheus-operator@$VERSION gave no CRD directory"
  for crd in "${CRDS[@]}"; do cp "$dir/example/prometheus-operator-crd/$crd" "$out/"; done
}

cached_build prometheus-operator-crds "$CACHE/prometheus-operator-crds-$VERSION" copy_crds
