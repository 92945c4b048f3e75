#!/usr/bin/env bash
# hack/gitops-tools.sh — the real tools the GitOps and Helm tests run, built or installed once
# and cached, and printed as ONE directory (the last line of stdout) holding:
#   kstatus-check  hack/tools/kstatus-check: sigs.k8s.io/cli-utils' kstatus (the health logic
#                  Flux's kustomize-controller and `flux` use), built from the Go module proxy
#   helm           helm.sh/helm/v3/cmd/helm at HELM_VERSION, built from the Go module proxy
#   lua5.1         Debian's Lua 5.1 (Argo CD runs health checks in gopher-lua, Lua 5.1
#                  semantics), installed with apt-get when not on PATH
# Progress goes to stderr. Builds use their own GOMODCACHE/GOCACHE under the cache directory,
# ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/gitops-tools, so a
# second run is instant; the kstatus-check build is keyed by a hash of its sources.
#
# Usage: hack/gitops-tools.sh [kstatus-check|helm|lua5.1]...   # default: all three
#        PATH="$(hack/gitops-tools.sh | tail -n1):$PATH"
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}" # newest v3 on the module proxy (go.mod: go 1.26.0)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/gitops-tools"
KSTATUS_SRC="$ROOT/hack/tools/kstatus-check"
BIN_DIR="$CACHE_ROOT/bin"

log() { printf '[gitops-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[gitops-tools] ERROR: %s\n' "$*" >&2
  exit 1
}

mkdir -p "$CACHE_ROOT" "$BIN_DIR"
# One builder per tool at a time (make and tests may call this at once); a test that needs only
# one tool does not wait for another's build.
lock() {
  exec 9>"$CACHE_ROOT/.$1.lock"
  flock 9
}

go_env() {
  command -v go >/dev/null 2>&1 || die "'go' is not on PATH (Go >= 1.26 builds kstatus-check and helm from the module proxy)"
  export GOMODCACHE="$CACHE_ROOT/gomod" GOCACHE="$CACHE_ROOT/gocache"
  export CGO_ENABLED=0 GO111MODULE=on GOWORK=off GOTOOLCHAIN=local
  unset GOOS GOARCH
}

ensure_kstatus_check() {
  lock kstatus-check
  local key out
  key="$( (cat "$KSTATUS_SRC/go.mod" "$KSTATUS_SRC/go.sum" "$KSTATUS_SRC"/*.go; go env GOVERSION) | sha256sum | cut -c1-16)"
  out="$CACHE_ROOT/kstatus-check-$key/kstatus-check"
  if [[ ! -x "$out" ]]; then
    go_env
    log "building kstatus-check (sigs.k8s.io/cli-utils kstatus) from the Go module proxy…"
    local t0=$SECONDS tmp
    tmp="$(mktemp -d "$CACHE_ROOT/.kstatus-check.XXXXXX")"
    (cd "$KSTATUS_SRC" && GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -ldflags "-s -w" -o "$tmp/kstatus-check" .) >&2 ||
      die "go build of hack/tools/kstatus-check failed"
    rm -rf "$(dirname "$out")"
    mv "$tmp" "$(dirname "$out")"
    log "built kstatus-check in $((SECONDS - t0)) s"
  fi
  ln -sfn "$out" "$BIN_DIR/kstatus-check"
}

ensure_helm() {
  lock helm
  local out="$CACHE_ROOT/helm-$HELM_VERSION/helm"
  if [[ ! -x "$out" ]]; then
    go_env
    log "building helm $HELM_VERSION from the Go module proxy (several minutes on 2 cores)…"
    local t0=$SECONDS tmp
    tmp="$(mktemp -d "$CACHE_ROOT/.helm.XXXXXX")"
    # `go install pkg@version` builds in module mode from the release's own go.mod (which has no
    # replace directives); -mod=mod does not apply to it. The ldflags set what `helm version`
    # prints, as helm's Makefile does.
    GOFLAGS=-buildvcs=false GOBIN="$tmp" go install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
    "$tmp/helm" version --short >&2 || die "the helm just built does not run"
    rm -rf "$(dirname "$out")"
    mv "$tmp" "$(dirname "$out")"
    log "built helm $HELM_VERSION in $((SECONDS - t0)) s"
  fi
  ln -sfn "$out" "$BIN_DIR/helm"
}

ensure_lua() {
  lock lua5.1
  local lua
  lua="$(command -v lua5.1 || true)"
  if [[ -z "$lua" ]]; then
    local sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo -n)
    log "installing Debian's lua5.1 with apt-get…"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lua5.1 >&2; then
      "${sudo[@]}" apt-get update >&2 || die "apt-get update failed"
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lua5.1 >&2 ||
        die "apt-get install lua5.1 failed (needs root or passwordless sudo)"
    fi
    lua="$(command -v lua5.1)" || die "lua5.1 is still not on PATH after apt-get install"
  fi
  ln -sfn "$lua" "$BIN_DIR/lua5.1"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(lua5.1 kstatus-check helm)
for tool in "${tools[@]}"; do
  case "$tool" in
    lua5.1) ensure_lua ;;
    kstatus-check) ensure_kstatus_check ;;
    helm) ensure_helm ;;
    *) die "unknown tool '$tool' (kstatus-check, helm, lua5.1)" ;;
  esac
done
echo "$BIN_DIR"
