#!/usr/bin/env bash
# hack/prometheus-operator-crds.sh — the Prometheus Operator's CRDs for PrometheusRule, ServiceMonitor and
# PodMonitor, so the tests can `kubectl apply --dry-run=server` deploy/monitoring against a real API
# server. Taken from the prometheus-operator Go module's example/prometheus-operator-crd/ (the Go
# module proxy is the one registry that has them), copied ONCE into
#   ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/prometheus-operator-crds-<version>/
# Prints that directory as the LAST line of stdout. Override the version with PROMETHEUS_OPERATOR_VERSION.
set -euo pipefail

VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CACHE="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}"
TARGET="$CACHE/prometheus-operator-crds-$VERSION"
CRDS=(monitoring.coreos.com_prometheusrules.yaml monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml)

if [[ -f "$TARGET/.complete" ]]; then
  printf '%s\n' "$TARGET"
  exit 0
fi
command -v go >/dev/null || { echo "[prometheus-operator-crds] ERROR: go not found (the CRDs come from the Go module proxy)" >&2; exit 1; }
mkdir -p "$CACHE"
SCRATCH="$(mktemp -d "$CACHE/prometheus-operator-crds-$VERSION.tmp.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
# Outside any module, so no go.mod around is consulted or changed.
dir="$(cd "$SCRATCH" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "$dir" && -d "$dir/example/prometheus-operator-crd" ]] || { echo "[prometheus-operator-crds] ERROR: go mod download of prometheus-operator@$VERSION gave no CRD directory" >&2; exit 1; }
for crd in "${CRDS[@]}"; do cp "$dir/example/prometheus-operator-crd/$crd" "$SCRATCH/"; done
touch "$SCRATCH/.complete"
rm -rf "$TARGET"
mv "$SCRATCH" "$TARGET"
trap - EXIT
printf '%s\n' "$TARGET"
