#!/usr/bin/env bash
# hack/kind/node-image.sh — build the kind node image realm-operator/kind-node:<k8s version> entirely
# on this machine (no registry is needed or used), and print its name as the last line of stdout.
# Progress and stage timings go to stderr. Idempotent and cached by version:
#
#   binaries    hack/kind/node-binaries.sh: kubeadm, kubelet, kube-proxy, kube-scheduler,
#               kube-controller-manager, pause, containerd + ctr + shim, runc, crictl, CNI plugins,
#               CoreDNS from the Go module proxy on the host; etcd, kube-apiserver, kubectl from
#               hack/kube-assets.sh.
#   base        realm-operator/kind-base:<key> — kind's own images/base recipe (its files/ and its
#               apt package list, read from the kind module) on the Debian base image of
#               hack/kind/images.sh, plus the binaries above and hack/kind/node/rootfs.
#   components  the control-plane images under the names kubeadm expects
#               (`kubeadm config images list`): registry.k8s.io/kube-*:<k8s>, etcd, pause, coredns;
#               single-layer images from the built binaries (kube-proxy on Debian, for nft/conntrack).
#   node        what `kind build node-image` does, minus the pulls: run the base image, put the
#               Kubernetes binaries in /usr/bin and the version in /kind/version, import the component
#               images into the node's containerd with kind's pinned label, `docker commit` with kind's
#               entrypoint. The result is saved to a tarball under the cache and reloaded from it when
#               Docker no longer has the image.
#
# The cache key covers every version, this script, node-binaries.sh and hack/kind/node/**; a change
# to any of them builds a new image.
#
# Env: K8S_VERSION (v1.37.2), KIND_VERSION (v0.33.0), DEBIAN_BASE_IMAGE (realm-operator/debian:bookworm),
#      KIND_NODE_IMAGE (realm-operator/kind-node:<k8s>), REALM_OPERATOR_CACHE.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
ETCD_IMAGE_TAG="${ETCD_IMAGE_TAG:-3.7.0-0}"
DEBIAN_BASE_IMAGE="${DEBIAN_BASE_IMAGE:-realm-operator/debian:bookworm}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-realm-operator/kind-node:$K8S_VERSION}"
HERE="$REPO_ROOT/hack/kind"
NODE_CACHE="$REALM_OPERATOR_CACHE/kind-node"
# kind's build container label, also used on the images here so stale ones can be told apart
KEY_LABEL="io.realm-operator.kind-node.key"

have docker || die "docker is not on PATH: run hack/kind/docker.sh first"
have go || die "go is not on PATH: the node's binaries are built from the Go module proxy (Go >= 1.26)"

t_total=$(date +%s)

# --- binaries -----------------------------------------------------------------------------------
BIN=""
binaries() { BIN="$("$HERE/node-binaries.sh" | tail -n1)"; }
stage node-binaries binaries
[[ -x "$BIN/bin/kubeadm" ]] || die "node-binaries.sh did not produce $BIN/bin/kubeadm"

# The Debian base's own cache key (images.sh knows it without Docker), so a rebuilt base rebuilds this.
DEBIAN_KEY="$("$HERE/images.sh" tags 2>/dev/null | awk -v t="$DEBIAN_BASE_IMAGE" '$1 == t { print $2 }')"
KEY="$( {
  echo "k8s=$K8S_VERSION kind=$KIND_VERSION etcd=$ETCD_IMAGE_TAG base=$DEBIAN_BASE_IMAGE@$DEBIAN_KEY bin=$(basename "$BIN")"
  cat "$HERE/node-image.sh" "$HERE/node-binaries.sh"
  hash_paths hack/kind/node
} | sha256sum | cut -c1-12)"
BASE_IMAGE="realm-operator/kind-base:$KIND_VERSION-$KEY"
NODE_TAR="$NODE_CACHE/images/kind-node-$K8S_VERSION-$KEY.tar"
COMPONENTS_TAR="$NODE_CACHE/images/components-$K8S_VERSION-$KEY.tar"

image_key() { docker image inspect -f "{{ index .Config.Labels \"$KEY_LABEL\" }}" "$1" 2>/dev/null || true; }

# --- node image already built or cached? --------------------------------------------------------
if [[ "$(image_key "$KIND_NODE_IMAGE")" == "$KEY" ]]; then
  log "node image $KIND_NODE_IMAGE is current (key $KEY)"
  log "stage node-image total: $(fmt_secs $(($(date +%s) - t_total)))"
  printf '%s\n' "$KIND_NODE_IMAGE"
  exit 0
fi
if [[ -f "$NODE_TAR" ]]; then
  stage node-image-load docker_load_cached "$NODE_TAR"
  if [[ "$(image_key "$KIND_NODE_IMAGE")" == "$KEY" ]]; then
    log "stage node-image total: $(fmt_secs $(($(date +%s) - t_total)))"
    printf '%s\n' "$KIND_NODE_IMAGE"
    exit 0
  fi
  log "cached tarball $NODE_TAR did not hold $KIND_NODE_IMAGE with key $KEY; rebuilding"
fi

if ! docker_image_present "$DEBIAN_BASE_IMAGE"; then
  log "no $DEBIAN_BASE_IMAGE yet; building it with hack/kind/images.sh debian"
  "$HERE/images.sh" debian >&2
  docker_image_present "$DEBIAN_BASE_IMAGE" || die "hack/kind/images.sh did not build $DEBIAN_BASE_IMAGE"
fi

KIND_MOD="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
[[ -d "$KIND_MOD/images/base/files" ]] || die "kind $KIND_VERSION module has no images/base/files (Go module proxy reachable?)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/realm-kind-node.XXXXXX")"
BUILD_CONTAINER=""
cleanup() {
  stage_report_failed
  [[ -z "$BUILD_CONTAINER" ]] || docker rm -f -v "$BUILD_CONTAINER" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- base image: kind's images/base recipe ------------------------------------------------------
# The apt packages are read from kind's Dockerfile (the `clean-install` list of its base stage).
kind_base_packages() {
  awk '/clean-install \\$/ { on = 1; next } on && /&&/ { exit } on { gsub(/\\/, ""); print }' \
    "$KIND_MOD/images/base/Dockerfile" | tr -s ' \n' ' '
}

build_base() {
  local ctx="$WORK/base" pkgs
  pkgs="$(kind_base_packages)"
  [[ "$pkgs" == *systemd* && "$pkgs" == *iptables* ]] || die "could not read the package list from kind's images/base/Dockerfile (got: $pkgs)"
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/usr/local/sbin" "$ctx/rootfs/opt/cni/bin"
  # kind's files, with the modes its Dockerfile gives them (the legacy builder has no COPY --chmod)
  cp -a "$KIND_MOD/images/base/files/." "$ctx/rootfs/"
  chmod -R u+w "$ctx/rootfs"
  find "$ctx/rootfs" -type d -exec chmod 0755 {} +
  find "$ctx/rootfs" -type f -exec chmod 0644 {} +
  chmod 0755 "$ctx/rootfs/usr/local/bin/"* "$ctx/rootfs/kind/bin/"*
  cp -a "$REPO_ROOT/hack/kind/node/rootfs/." "$ctx/rootfs/"
  chmod 0755 "$ctx/rootfs/kind/bin/"*
  local b
  for b in containerd ctr containerd-shim-runc-v2 crictl; do install -m 0755 "$BIN/bin/$b" "$ctx/rootfs/usr/local/bin/$b"; done
  install -m 0755 "$BIN/bin/runc" "$ctx/rootfs/usr/local/sbin/runc"
  for b in "$BIN"/cni/*; do install -m 0755 "$b" "$ctx/rootfs/opt/cni/bin/$(basename "$b")"; done
  cat >"$ctx/Dockerfile" <<EOF
# generated by hack/kind/node-image.sh from kind $KIND_VERSION's images/base/Dockerfile
FROM $DEBIAN_BASE_IMAGE
COPY rootfs/ /
RUN echo "Installing Packages ..." \\
    && DEBIAN_FRONTEND=noninteractive clean-install $pkgs \\
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
    && rm -f /lib/systemd/system/multi-user.target.wants/* \\
    && rm -f /etc/systemd/system/*.wants/* \\
    && rm -f /lib/systemd/system/local-fs.target.wants/* \\
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \\
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \\
    && rm -f /lib/systemd/system/basic.target.wants/* \\
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
    && ln -sf /usr/lib/systemd/systemd /sbin/init
RUN echo "Enabling / Disabling services ... " \\
    && systemctl enable kubelet.service \\
    && systemctl enable containerd.service \\
    && systemctl enable undo-mount-hacks.service \\
    && systemctl enable realm-node-lockdown.service \\
    && systemctl mask systemd-binfmt.service \\
    && mkdir -p /etc/kubernetes/manifests
RUN ctr oci spec \\
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
        | jq 'del(.process.rlimits)' \\
        > /etc/containerd/cri-base.json \\
    && containerd --version && runc --version && crictl --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL $KEY_LABEL=$KEY
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
EOF
  docker build -q -t "$BASE_IMAGE" "$ctx" >&2
}

# --- component images ---------------------------------------------------------------------------
# import_image DIR TAG [--change ...]: a single-layer image of DIR's contents, owned by root.
import_image() {
  local dir="$1" tag="$2"
  shift 2
  mkdir -p "$dir/tmp" && chmod 1777 "$dir/tmp"
  tar -C "$dir" --owner=0 --group=0 --numeric-owner -c . |
    docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change "LABEL $KEY_LABEL=$KEY" "$@" - "$tag" >/dev/null
}

COMPONENT_IMAGES=()
build_components() {
  local list img name tag d
  list="$("$BIN/bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null)" ||
    die "kubeadm config images list failed"
  log "kubeadm expects: $(tr '\n' ' ' <<<"$list")"
  for img in $list; do
    name="${img%:*}" tag="${img##*:}" d="$WORK/img/$(basename "$name")"
    mkdir -p "$d/usr/local/bin"
    case "$(basename "$name")" in
      kube-apiserver | kube-controller-manager | kube-scheduler)
        install -m 0755 "$BIN/bin/$(basename "$name")" "$d/usr/local/bin/"
        [[ "$tag" == "$K8S_VERSION" ]] || die "kubeadm wants $img but the binaries are $K8S_VERSION"
        import_image "$d" "$img"
        ;;
      etcd)
        install -m 0755 "$BIN/bin/etcd" "$d/usr/local/bin/"
        [[ "$tag" == "$ETCD_IMAGE_TAG" ]] || die "kubeadm wants $img but etcd is built for $ETCD_IMAGE_TAG (set KUBE_ASSETS_ETCD_VERSION/ETCD_IMAGE_TAG)"
        import_image "$d" "$img"
        ;;
      coredns)
        install -m 0755 "$BIN/bin/coredns" "$d/coredns"
        import_image "$d" "$img" --change 'ENTRYPOINT ["/coredns"]' --change 'EXPOSE 53 53/udp'
        ;;
      pause)
        install -m 0755 "$BIN/bin/pause" "$d/pause"
        import_image "$d" "$img" --change 'ENTRYPOINT ["/pause"]'
        ;;
      kube-proxy)
        # kube-proxy runs nft/iptables and conntrack: Debian with those, as upstream's image has.
        install -m 0755 "$BIN/bin/kube-proxy" "$d/kube-proxy"
        cat >"$d/Dockerfile" <<EOF
FROM $DEBIAN_BASE_IMAGE
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables iptables conntrack ipset kmod \\
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/* /usr/share/doc/* /usr/share/man/*
COPY kube-proxy /usr/local/bin/kube-proxy
LABEL $KEY_LABEL=$KEY
EOF
        docker build -q -t "$img" "$d" >&2
        ;;
      *) die "kubeadm wants $img, which this script does not know how to build" ;;
    esac
    COMPONENT_IMAGES+=("$img")
  done
  # kind's containerd config names its own sandbox image; give the pause image that name too.
  local sandbox
  sandbox="$(sed -n 's/^[[:space:]]*sandbox_image = "\(.*\)"/\1/p' "$KIND_MOD/images/base/files/etc/containerd/config.toml")"
  if [[ -n "$sandbox" ]] && ! printf '%s\n' "${COMPONENT_IMAGES[@]}" | grep -qxF "$sandbox"; then
    docker tag "$(printf '%s\n' "${COMPONENT_IMAGES[@]}" | grep '/pause:')" "$sandbox"
    COMPONENT_IMAGES+=("$sandbox")
  fi
  mkdir -p "$(dirname "$COMPONENTS_TAR")"
  docker save -o "$COMPONENTS_TAR.tmp" "${COMPONENT_IMAGES[@]}"
  mv -f "$COMPONENTS_TAR.tmp" "$COMPONENTS_TAR"
}

# --- node image: kind build node-image's steps, without pulling ---------------------------------
build_node() {
  local id="realm-kind-node-build-$$" b
  BUILD_CONTAINER="$id"
  docker run -d --name "$id" --entrypoint=sleep --security-opt seccomp=unconfined "$BASE_IMAGE" infinity >/dev/null
  for b in kubeadm kubelet kubectl; do
    docker cp -L "$BIN/bin/$b" "$id:/usr/bin/$b"
  done
  docker exec "$id" chmod 0755 /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
  docker exec "$id" chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
  docker exec "$id" sh -c "printf '%s' '$K8S_VERSION' > /kind/version"
  docker exec "$id" bash -c 'nohup containerd > /tmp/containerd.log 2>&1 &'
  docker exec "$id" bash -c 'for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr info >/dev/null 2>&1 && exit 0; sleep 1; done; cat /tmp/containerd.log; exit 1' >&2
  docker exec -i "$id" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
    --all-platforms --no-unpack --digests - <"$COMPONENTS_TAR" >&2
  log "images in the node: $(docker exec "$id" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' | tr '\n' ' ')"
  docker exec "$id" pkill containerd || true
  # (the build container's init is `sleep`, which reaps nothing: a stopped containerd stays a zombie)
  docker exec "$id" bash -c 'for i in $(seq 1 20); do ps -eo stat=,comm= | awk '"'"'$2 == "containerd" && $1 !~ /^Z/ { f = 1 } END { exit !f }'"'"' || exit 0; sleep 0.5; done; exit 1'
  docker exec "$id" rm -f /tmp/containerd.log
  docker commit \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
    --change "LABEL $KEY_LABEL=$KEY" \
    "$id" "$KIND_NODE_IMAGE" >/dev/null
  docker rm -f -v "$id" >/dev/null
  BUILD_CONTAINER=""
}

if [[ "$(image_key "$BASE_IMAGE")" == "$KEY" ]]; then
  log "base image $BASE_IMAGE is current"
else
  stage node-base-image build_base
fi
stage node-component-images build_components
stage node-image-build build_node
stage node-image-save docker_save_cached "$KIND_NODE_IMAGE" "$NODE_TAR"
# older tarballs of this image are superseded
find "$NODE_CACHE/images" -maxdepth 1 -name "kind-node-$K8S_VERSION-*.tar" ! -name "$(basename "$NODE_TAR")" -delete 2>/dev/null || true
find "$NODE_CACHE/images" -maxdepth 1 -name "components-*.tar" -delete 2>/dev/null || true
log "stage node-image total: $(fmt_secs $(($(date +%s) - t_total)))"
printf '%s\n' "$KIND_NODE_IMAGE"
