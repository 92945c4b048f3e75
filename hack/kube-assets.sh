#!/usr/bin/env bash
# hack/kube-assets.sh — provide real Kubernetes test-control-plane binaries
# (etcd, kube-apiserver, kubectl) in ONE directory, envtest/KUBEBUILDER_ASSETS
# style, and print that directory's absolute path as the LAST line of stdout.
# All progress/diagnostics go to stderr.
#
# Resolution order (first that yields all three binaries wins):
#   1. TEST_ASSET_ETCD / TEST_ASSET_KUBE_APISERVER / TEST_ASSET_KUBECTL
#      (per-binary paths, like controller-runtime's envtest), with any that are
#      unset taken from $KUBEBUILDER_ASSETS if it has them. When any TEST_ASSET_*
#      is used, a directory of symlinks under the cache dir is created/refreshed
#      and printed.
#   2. $KUBEBUILDER_ASSETS, if it contains all three binaries (printed as is).
#   3. Build from source via the Go module proxy at the pinned versions below,
#      ONCE, into a cache dir outside the repo:
#        ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/kube-assets/k8s-<ver>-etcd-<ver>/
#      Later runs reuse it instantly. Anything still missing from 1./2. is taken
#      from this build.
#
# Pinned versions (override with KUBE_ASSETS_K8S_VERSION / KUBE_ASSETS_ETCD_VERSION):
#   - Kubernetes v1.37.2: the newest release on the module proxy; its go.mod says
#     `go 1.26.0` and build/dependencies.yaml pins golang 1.26, so it builds with
#     the Go 1.26 toolchain we have (Go >= 1.26.0 required).
#   - etcd v3.7.0: the version that Kubernetes v1.37.2 is tested with
#     (build/dependencies.yaml `etcd: 3.7.0`, hack/lib/etcd.sh ETCD_VERSION=3.7.0,
#     and its go.mod requires go.etcd.io/etcd/*/v3 v3.7.0).
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/...@vX` fails because
# k8s.io/kubernetes's go.mod replaces all k8s.io/* staging modules with
# ./staging/... paths (and requires them at v0.0.0); etcd's server module does
# the same with ../api etc. We therefore build in a throwaway module that
# requires the release and replaces each such module with its published version
# (k8s.io/<m> v0.<minor>.<patch>; go.etcd.io/etcd/<m> <same version>).
# Kube and etcd are built in separate wrapper modules so each gets exactly the
# dependency versions it was released with.
#
# Usage: hack/kube-assets.sh            # prints the assets dir (last stdout line)
#        export KUBEBUILDER_ASSETS="$(hack/kube-assets.sh | tail -n1)"
set -euo pipefail

K8S_VERSION="${KUBE_ASSETS_K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${KUBE_ASSETS_ETCD_VERSION:-v3.7.0}"
MIN_GO_VERSION="1.26.0" # from k8s v1.37.2 go.mod `go` directive (etcd v3.7.0 needs 1.26 too)

K8S_VERSION="v${K8S_VERSION#v}"
ETCD_VERSION="v${ETCD_VERSION#v}"

BINARIES=(etcd kube-apiserver kubectl)

log() { printf '[kube-assets %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[kube-assets] ERROR: %s\n' "$*" >&2
  exit 1
}
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 0
    ;;
  "") ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

CACHE_ROOT="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/kube-assets"
BUILD_KEY="k8s-${K8S_VERSION#v}-etcd-${ETCD_VERSION#v}"
BUILD_DIR="${CACHE_ROOT}/${BUILD_KEY}"
STAMP=".kube-assets-complete"

# abs_path PATH -> absolute, symlink-resolved path (portable-ish: no realpath on old macOS)
abs_path() {
  local p="$1"
  if command -v realpath >/dev/null 2>&1; then
    realpath "$p"
  else
    (cd "$(dirname "$p")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$p")")
  fi
}

# env var name for each binary
asset_var() {
  case "$1" in
    etcd) echo TEST_ASSET_ETCD ;;
    kube-apiserver) echo TEST_ASSET_KUBE_APISERVER ;;
    kubectl) echo TEST_ASSET_KUBECTL ;;
  esac
}

build_complete() {
  local d="$1" b
  [[ -f "$d/$STAMP" ]] || return 1
  for b in "${BINARIES[@]}"; do [[ -x "$d/$b" ]] || return 1; done
}

# ---------------------------------------------------------------------------
# 1./2. Pre-provided binaries
# ---------------------------------------------------------------------------
declare -A SRC=()
any_test_asset=0
for b in "${BINARIES[@]}"; do
  var="$(asset_var "$b")"
  val="${!var:-}"
  if [[ -n "$val" ]]; then
    [[ -f "$val" && -x "$val" ]] || die "$var=$val is not an executable file"
    SRC[$b]="$(abs_path "$val")"
    any_test_asset=1
  fi
done

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if [[ -d "$KUBEBUILDER_ASSETS" ]]; then
    kba="$(cd "$KUBEBUILDER_ASSETS" && pwd -P)"
    missing=()
    for b in "${BINARIES[@]}"; do
      if [[ -x "$kba/$b" ]]; then
        [[ -n "${SRC[$b]:-}" ]] || SRC[$b]="$kba/$b"
      else
        missing+=("$b")
      fi
    done
    if ((${#missing[@]} == 0 && any_test_asset == 0)); then
      log "using KUBEBUILDER_ASSETS=$kba"
      printf '%s\n' "$kba"
      exit 0
    fi
    ((${#missing[@]} == 0)) || log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks: ${missing[*]}"
  else
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS is not a directory; ignoring it"
  fi
fi

need_build=0
for b in "${BINARIES[@]}"; do [[ -n "${SRC[$b]:-}" ]] || need_build=1; done

# ---------------------------------------------------------------------------
# 3. Build (once) from the Go module proxy
# ---------------------------------------------------------------------------
# version_ge A B: true if A >= B (dotted versions)
version_ge() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]; }

install_hint() {
  cat >&2 <<EOF
[kube-assets] To get etcd/kube-apiserver/kubectl, either:
  - install Go >= ${MIN_GO_VERSION} (https://go.dev/dl/, or your package manager) and re-run
    this script: it builds Kubernetes ${K8S_VERSION} + etcd ${ETCD_VERSION} once from the Go
    module proxy into ${BUILD_DIR}
    (several minutes, ~4 GiB of Go build cache, needs access to the Go module proxy); or
  - point KUBEBUILDER_ASSETS at a directory containing etcd, kube-apiserver and kubectl,
    e.g.  export KUBEBUILDER_ASSETS="\$(setup-envtest use -p path ${K8S_VERSION#v})"
    (setup-envtest: go install sigs.k8s.io/controller-runtime/tools/setup-envtest@latest); or
  - set TEST_ASSET_ETCD, TEST_ASSET_KUBE_APISERVER and TEST_ASSET_KUBECTL to the binaries.
EOF
}

# gen_replaces GOMOD SIBLING_VERSION: print replace lines for a wrapper module.
# Local-path replaces (=> ./x or ../x) become `M => M SIBLING_VERSION`;
# replaces to another module version are copied verbatim.
gen_replaces() {
  awk -v ver="$2" '
    /^replace[ \t]*\($/ { inblock = 1; next }
    inblock && /^\)/     { inblock = 0; next }
    {
      line = $0
      if (!inblock) { if (line !~ /^replace[ \t]/) next; sub(/^replace[ \t]+/, "", line) }
      sub(/[ \t]*\/\/.*$/, "", line)
      if (line !~ /=>/) next
      split(line, parts, /[ \t]*=>[ \t]*/)
      split(parts[1], lhs, /[ \t]+/); old = lhs[1]; if (old == "") old = lhs[2]
      tgt = parts[2]; gsub(/^[ \t]+|[ \t]+$/, "", tgt)
      if (tgt ~ /^\.\.?\//) printf "replace %s => %s %s\n", old, old, ver
      else                  printf "replace %s\n", line
    }' "$1"
}

# upstream_gomod MODULE VERSION -> path of that release's go.mod in the module cache
upstream_gomod() {
  local json
  json="$(go mod download -json "$1@$2")" || die "go mod download $1@$2 failed (is the Go module proxy reachable?)"
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1
}

# make_wrapper DIR MODULE VERSION SIBLING_VERSION PKG...
make_wrapper() {
  local dir="$1" mod="$2" ver="$3" sib="$4"
  shift 4
  local gomod godir
  gomod="$(upstream_gomod "$mod" "$ver")"
  [[ -f "$gomod" ]] || die "could not locate go.mod of $mod@$ver"
  godir="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
  if [[ -n "$godir" ]] && ! version_ge "$GO_VERSION" "$godir"; then
    die "$mod@$ver needs Go >= $godir but 'go' is $GO_VERSION"
  fi
  mkdir -p "$dir"
  {
    echo "module kubeassets.local/wrapper"
    echo
    echo "go ${godir:-$MIN_GO_VERSION}"
    grep -E '^godebug[[:space:]]' "$gomod" || true
    echo
    echo "require $mod $ver"
    echo
    gen_replaces "$gomod" "$sib"
  } >"$dir/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    local p
    for p in "$@"; do echo "	_ \"$p\""; done
    echo ")"
  } >"$dir/tools.go"
  log "resolving dependencies of $mod@$ver (go mod tidy)…"
  (cd "$dir" && go mod tidy) >&2 || die "go mod tidy failed for $mod@$ver wrapper ($dir)"
}

# gobuild WRAPPERDIR OUT PKG LDFLAGS
gobuild() {
  local dir="$1" out="$2" pkg="$3" ldflags="$4" t0=$SECONDS
  log "building $(basename "$out") from $pkg (takes several minutes on 2 cores)…"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out" "$pkg") >&2 ||
    die "go build $pkg failed"
  log "built $(basename "$out") in $(fmt_secs $((SECONDS - t0)))"
}

do_build() {
  local tmp="$1" t0=$SECONDS
  local out="$tmp/out"
  mkdir -p "$out"

  export CGO_ENABLED=0 GO111MODULE=on GOWORK=off GOFLAGS="-mod=mod -buildvcs=false"
  unset GOOS GOARCH # always build for this host

  # --- Kubernetes ---
  local kminor kpatch kmajor kver="${K8S_VERSION#v}"
  IFS=. read -r kmajor kminor kpatch <<<"${kver%%-*}"
  local kdate
  make_wrapper "$tmp/kube" k8s.io/kubernetes "$K8S_VERSION" "v0.${kminor}.${kpatch%%-*}${kver#"${kver%%-*}"}" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
  # release timestamp from the proxy's .info, used as buildDate (reproducible)
  kdate="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' \
    "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${K8S_VERSION}.info" 2>/dev/null || true)"
  local kld="-s -w" pkgv
  for pkgv in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kld+=" -X ${pkgv}.gitVersion=${K8S_VERSION} -X ${pkgv}.gitMajor=${kmajor} -X ${pkgv}.gitMinor=${kminor}"
    [[ -z "$kdate" ]] || kld+=" -X ${pkgv}.buildDate=${kdate}"
  done
  gobuild "$tmp/kube" "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$kld"
  gobuild "$tmp/kube" "$out/kubectl" k8s.io/kubernetes/cmd/kubectl "$kld"

  # --- etcd (main package is the server module root since v3.5) ---
  make_wrapper "$tmp/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  gobuild "$tmp/etcd" "$out/etcd" go.etcd.io/etcd/server/v3 \
    "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}-modproxy"

  # sanity-check the results before declaring them complete
  "$out/etcd" --version >&2 || die "built etcd does not run"
  "$out/kube-apiserver" --version >&2 || die "built kube-apiserver does not run"
  "$out/kubectl" version --client >&2 || die "built kubectl does not run"

  {
    echo "k8s=${K8S_VERSION}"
    echo "etcd=${ETCD_VERSION}"
    echo "go=$(go env GOVERSION)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds=$((SECONDS - t0))"
  } >"$out/$STAMP"

  # atomic publish: rename the fully populated dir into place
  rm -rf "$BUILD_DIR" # only ever a stale, incomplete dir here (we hold the lock)
  mv "$out" "$BUILD_DIR"
  log "built all assets in $(fmt_secs $((SECONDS - t0))) -> $BUILD_DIR"
}

ensure_build() {
  build_complete "$BUILD_DIR" && return 0

  if ! command -v go >/dev/null 2>&1; then
    log "no usable KUBEBUILDER_ASSETS/TEST_ASSET_* and 'go' is not on PATH"
    install_hint
    exit 1
  fi
  GO_VERSION="$(go env GOVERSION 2>/dev/null || true)"
  GO_VERSION="${GO_VERSION#go}"
  GO_VERSION="${GO_VERSION%%[-+ ]*}"
  if [[ -z "$GO_VERSION" ]] || ! version_ge "$GO_VERSION" "$MIN_GO_VERSION"; then
    # GOTOOLCHAIN=auto (explicitly set) lets go fetch a newer toolchain itself
    if [[ "${GOTOOLCHAIN:-}" != auto* && "${GOTOOLCHAIN:-}" != go1.* ]]; then
      log "'go' is ${GO_VERSION:-unknown}, need >= ${MIN_GO_VERSION}"
      install_hint
      exit 1
    fi
  fi

  mkdir -p "$CACHE_ROOT"
  local lockfile="$CACHE_ROOT/.${BUILD_KEY}.lock"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$lockfile"
    if ! flock -n 9; then
      log "another process is building $BUILD_KEY; waiting for its lock…"
      flock 9
    fi
  else
    log "flock not found; building without a lock (concurrent callers may build twice)"
  fi

  # someone else may have finished while we waited
  build_complete "$BUILD_DIR" && return 0

  # leftovers of interrupted (e.g. SIGKILLed) builds of this key are stale: we hold the lock
  rm -rf "$CACHE_ROOT/.build-${BUILD_KEY}."* 2>/dev/null || true

  local tmp
  tmp="$(mktemp -d "$CACHE_ROOT/.build-${BUILD_KEY}.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  log "no cached assets at $BUILD_DIR; building Kubernetes ${K8S_VERSION} + etcd ${ETCD_VERSION} with go ${GO_VERSION}"
  log "(one-off; later runs reuse the cache. Build log output follows.)"
  do_build "$tmp"
  rm -rf "$tmp"
  trap - EXIT
}

if ((need_build)); then
  ensure_build
  if ((any_test_asset == 0)) && [[ -z "${SRC[etcd]:-}${SRC[kube-apiserver]:-}${SRC[kubectl]:-}" ]]; then
    printf '%s\n' "$BUILD_DIR"
    exit 0
  fi
  for b in "${BINARIES[@]}"; do [[ -n "${SRC[$b]:-}" ]] || SRC[$b]="$BUILD_DIR/$b"; done
fi

# ---------------------------------------------------------------------------
# Mixed sources: a directory of symlinks, keyed by the targets so concurrent
# callers with different settings don't fight over one directory.
# ---------------------------------------------------------------------------
key_src="${SRC[etcd]}|${SRC[kube-apiserver]}|${SRC[kubectl]}"
if command -v sha256sum >/dev/null 2>&1; then
  key="$(printf '%s' "$key_src" | sha256sum | cut -c1-12)"
else
  key="$(printf '%s' "$key_src" | shasum -a 256 | cut -c1-12)"
fi
link_dir="$CACHE_ROOT/links-$key"
mkdir -p "$link_dir"
for b in "${BINARIES[@]}"; do
  # atomic replace of each link
  ln -sfn "${SRC[$b]}" "$link_dir/.$b.tmp.$$"
  mv -f "$link_dir/.$b.tmp.$$" "$link_dir/$b"
  log "$b -> ${SRC[$b]}"
done
printf '%s\n' "$(cd "$link_dir" && pwd -P)"
