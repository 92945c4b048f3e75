#!/usr/bin/env bash
# hack/kind/node-binaries.sh — build, on this host from the Go module proxy, every binary a kind node
# needs that is not already provided by hack/kube-assets.sh, and print the directory holding them all
# as the last line of stdout (progress and stage timings on stderr). Idempotent: each component is
# cached under ${REALM_OPERATOR_CACHE:-$HOME/.cache/realm-operator}/kind-node/bin/<component>-<version>/
# and built only when missing. Builds happen on the host because the Go module proxy is not reachable
# from inside containers here.
#
# Versions are those kind v0.33.0's images/base recipe and Kubernetes v1.37.2's kubeadm pin:
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.3.4}"  # kind v0.33.0 images/base
RUNC_VERSION="${RUNC_VERSION:-v1.4.3}"              # kind v0.33.0 images/base
CRICTL_VERSION="${CRICTL_VERSION:-v1.36.0}"         # kind v0.33.0 images/base
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.9.1}" # kind v0.33.0 images/base
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.6}"       # kubeadm v1.37.2 constants.CoreDNSVersion
PAUSE_VERSION="${PAUSE_VERSION:-3.10.2}"            # kubeadm v1.37.2 constants.PauseVersion

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${REALM_OPERATOR_CACHE:-$HOME/.cache/realm-operator}"
BIN_ROOT="$CACHE/kind-node/bin"
OUT="$BIN_ROOT/set-k8s-${K8S_VERSION}-containerd-${CONTAINERD_VERSION}-runc-${RUNC_VERSION}-crictl-${CRICTL_VERSION}-cni-${CNI_PLUGINS_VERSION}-coredns-${COREDNS_VERSION}-pause-${PAUSE_VERSION}"

log() { printf '[node-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export GO111MODULE=on GOWORK=off GOFLAGS="-mod=mod -buildvcs=false"
unset GOOS GOARCH
command -v go >/dev/null || die "go is not on PATH (need Go >= 1.26 for Kubernetes ${K8S_VERSION})"

# component NAME VERSION FUNCTION BINARIES... — run FUNCTION (which writes into $1) once per version.
component() {
  local name="$1" ver="$2" fn="$3" dir="$BIN_ROOT/$1-$2" t0=$SECONDS b ok=1
  shift 3
  for b in "$@"; do [[ -x "$dir/$b" ]] || ok=0; done
  if ((ok)); then
    log "cached: $name $ver"
    return 0
  fi
  log "building $name $ver…"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  "$fn" "$dir.tmp" || die "building $name $ver failed"
  for b in "$@"; do [[ -x "$dir.tmp/$b" ]] || die "$name build did not produce $b"; done
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  log "stage build-$name took $((SECONDS - t0))s"
}

# gen_replaces GOMOD SIBLING_VERSION: hack/kube-assets.sh's own function (one copy of it): local-path
# replaces in a release's go.mod (k8s.io/kubernetes replaces its staging modules with ./staging/...)
# become `M => M <sibling version>`.
# shellcheck source=/dev/null
source <(sed -n '/^gen_replaces() {$/,/^}$/p' "$HERE/../kube-assets.sh")
declare -F gen_replaces >/dev/null || die "hack/kube-assets.sh no longer defines gen_replaces()"

# wrapper DIR MODULE VERSION SIBLING_VERSION PKG... — a throwaway module requiring the release, so
# its packages build with exactly the dependency versions (and replaces) it was released with.
wrapper() {
  local dir="$1" mod="$2" ver="$3" sib="$4" gomod godir p
  shift 4
  gomod="$(go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
  [[ -f "$gomod" ]] || die "could not download $mod@$ver from the Go module proxy"
  godir="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
  mkdir -p "$dir"
  {
    printf 'module kindnode.local/wrapper\n\ngo %s\n' "${godir:-1.26.0}"
    grep -E '^godebug[[:space:]]' "$gomod" || true
    printf '\nrequire %s %s\n\n' "$mod" "$ver"
    gen_replaces "$gomod" "$sib"
  } >"$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
    printf ')\n'
  } >"$dir/tools.go"
  (cd "$dir" && go mod tidy) >&2
}

moddir() { go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1; }

build_kubernetes() {
  local out="$1" w kver="${K8S_VERSION#v}" kmajor kminor kpatch kdate kld pkgv b
  IFS=. read -r kmajor kminor kpatch <<<"${kver%%-*}"
  w="$(mktemp -d)"
  wrapper "$w" k8s.io/kubernetes "$K8S_VERSION" "v0.${kminor}.${kpatch}" \
    k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-controller-manager
  kdate="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' \
    "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${K8S_VERSION}.info" 2>/dev/null || true)"
  # The same ldflags as hack/kube-assets.sh, so these binaries share its build cache and report the release.
  kld="-s -w"
  for pkgv in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kld+=" -X ${pkgv}.gitVersion=${K8S_VERSION} -X ${pkgv}.gitMajor=${kmajor} -X ${pkgv}.gitMinor=${kminor}"
    [[ -z "$kdate" ]] || kld+=" -X ${pkgv}.buildDate=${kdate}"
  done
  for b in kubeadm kubelet kube-proxy kube-scheduler kube-controller-manager; do
    local t0=$SECONDS
    (cd "$w" && CGO_ENABLED=0 go build -trimpath -ldflags "$kld" -o "$out/$b" "k8s.io/kubernetes/cmd/$b") >&2 || return 1
    log "  $b built in $((SECONDS - t0))s"
  done
  # pause: a static C program (Kubernetes's own build/pause/linux/pause.c, as its Makefile builds it)
  local src
  src="$(moddir k8s.io/kubernetes "$K8S_VERSION")/build/pause/linux/pause.c"
  gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_VERSION}-realm-operator" -o "$out/pause" "$src" >&2 || return 1
  strip "$out/pause"
  rm -rf "$w"
}

build_containerd() {
  local out="$1" w
  w="$(mktemp -d)"
  wrapper "$w" github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" "$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
  local ld="-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION} -X github.com/containerd/containerd/v2/version.Revision=modproxy"
  local b
  for b in containerd ctr containerd-shim-runc-v2; do
    (cd "$w" && CGO_ENABLED=0 go build -trimpath -tags "no_aufs no_zfs no_btrfs no_devmapper urfave_cli_no_docs" \
      -ldflags "$ld" -o "$out/$b" "github.com/containerd/containerd/v2/cmd/$b") >&2 || return 1
  done
  rm -rf "$w"
}

build_runc() {
  local out="$1" w
  # runc needs cgo and libseccomp (static, as runc's own `make static` builds it).
  [[ -f /usr/lib/x86_64-linux-gnu/libseccomp.a || -f /usr/lib/libseccomp.a ]] || {
    log "installing libseccomp-dev (runc links libseccomp)…"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libseccomp-dev pkg-config >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libseccomp-dev pkg-config >&2; } || return 1
  }
  w="$(mktemp -d)"
  wrapper "$w" github.com/opencontainers/runc "$RUNC_VERSION" "$RUNC_VERSION" github.com/opencontainers/runc
  (cd "$w" && CGO_ENABLED=1 go build -trimpath -tags "seccomp netgo osusergo urfave_cli_no_docs" \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v} -X main.gitCommit=modproxy -extldflags -static" \
    -o "$out/runc" github.com/opencontainers/runc) >&2 || return 1
  rm -rf "$w"
}

build_crictl() {
  local out="$1" w
  w="$(mktemp -d)"
  wrapper "$w" sigs.k8s.io/cri-tools "$CRICTL_VERSION" "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
  (cd "$w" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}" \
    -o "$out/crictl" sigs.k8s.io/cri-tools/cmd/crictl) >&2 || return 1
  rm -rf "$w"
}

build_cni() {
  local out="$1" w p
  w="$(mktemp -d)"
  wrapper "$w" github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" "$CNI_PLUGINS_VERSION" \
    github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/main/ptp github.com/containernetworking/plugins/plugins/meta/portmap
  for p in ipam/host-local main/loopback main/ptp meta/portmap; do
    (cd "$w" && CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=${CNI_PLUGINS_VERSION}" \
      -o "$out/${p#*/}" "github.com/containernetworking/plugins/plugins/$p") >&2 || return 1
  done
  rm -rf "$w"
}

build_coredns() {
  local out="$1" w
  w="$(mktemp -d)"
  wrapper "$w" github.com/coredns/coredns "$COREDNS_VERSION" "$COREDNS_VERSION" github.com/coredns/coredns
  (cd "$w" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=modproxy" \
    -o "$out/coredns" github.com/coredns/coredns) >&2 || return 1
  rm -rf "$w"
}

t_all=$SECONDS
mkdir -p "$BIN_ROOT"
exec 9>"$BIN_ROOT/.lock"
flock 9
component kubernetes "$K8S_VERSION-pause-$PAUSE_VERSION" build_kubernetes kubeadm kubelet kube-proxy kube-scheduler kube-controller-manager pause
component containerd "$CONTAINERD_VERSION" build_containerd containerd ctr containerd-shim-runc-v2
component runc "$RUNC_VERSION" build_runc runc
component crictl "$CRICTL_VERSION" build_crictl crictl
component cni-plugins "$CNI_PLUGINS_VERSION" build_cni host-local loopback ptp portmap
component coredns "$COREDNS_VERSION" build_coredns coredns

# One directory of links: bin/<name> for node binaries, cni/<plugin> for CNI plugins.
ASSETS="$("$HERE/../kube-assets.sh" | tail -n1)" # etcd, kube-apiserver, kubectl
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp/bin" "$OUT.tmp/cni"
for b in kubeadm kubelet kube-proxy kube-scheduler kube-controller-manager pause; do ln -s "$BIN_ROOT/kubernetes-$K8S_VERSION-pause-$PAUSE_VERSION/$b" "$OUT.tmp/bin/$b"; done
for b in etcd kube-apiserver kubectl; do ln -s "$ASSETS/$b" "$OUT.tmp/bin/$b"; done
for b in containerd ctr containerd-shim-runc-v2; do ln -s "$BIN_ROOT/containerd-$CONTAINERD_VERSION/$b" "$OUT.tmp/bin/$b"; done
ln -s "$BIN_ROOT/runc-$RUNC_VERSION/runc" "$OUT.tmp/bin/runc"
ln -s "$BIN_ROOT/crictl-$CRICTL_VERSION/crictl" "$OUT.tmp/bin/crictl"
ln -s "$BIN_ROOT/coredns-$COREDNS_VERSION/coredns" "$OUT.tmp/bin/coredns"
for b in host-local loopback ptp portmap; do ln -s "$BIN_ROOT/cni-plugins-$CNI_PLUGINS_VERSION/$b" "$OUT.tmp/cni/$b"; done
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
log "stage node-binaries took $((SECONDS - t_all))s"
printf '%s\n' "$OUT"
