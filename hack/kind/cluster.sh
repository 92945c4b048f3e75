#!/usr/bin/env bash
# hack/kind/cluster.sh — the project's single-node kind cluster, from the node image that
# hack/kind/node-image.sh builds on this machine.
#
#   up                     create the cluster (reuse it when it is already up), install the host's
#                          egress counter, print the KUBECONFIG path (last stdout line)
#   down                   delete the cluster and the host's egress counter
#   load IMAGE...          `kind load docker-image` each image into the cluster
#   load-overlay [DIR]     load every image the kustomization DIR (deploy/kind) names; each must be
#                          in Docker already (hack/kind/images.sh builds the project's)
#   deploy [DIR]           kubectl apply -k DIR (deploy/kind), then wait: every StatefulSet,
#                          Deployment and DaemonSet rolled out, every Job complete
#   namespaces [DIR]       the namespaces DIR's objects live in (for diagnostics)
#   kubeconfig             print the KUBECONFIG path
#   egress-count           print how many pod- or Service-range packets tried to leave the kind
#                          Docker network through the host (the run asserts 0), or "unavailable"
#                          where the host cannot see the kind bridge (Docker Desktop)
#   status                 print UP or DOWN
#
# The cluster (config written to the cache, see cluster_config below):
#   - API server published on 127.0.0.1 only;
#   - no default CNI (kindnetd cannot be built here): the node image's static ptp CNI config;
#   - kubelet: failCgroupV1: false (cgroup v1 hosts), and a resolvConf naming a closed port inside
#     the node, so CoreDNS has no upstream and pods' DNS never leaves the machine;
#   - kube-proxy in nftables mode (no iptables-legacy/nft mismatch with the node's choice);
#   - storage: kind's fallback host-path StorageClass "standard" (no image needed).
# Network: nothing may leave the machine. The node rejects packets from pods (and itself) leaving its
# Docker network interface toward anything outside that network (hack/kind/node); on the host a
# mangle-table chain counts, then drops, packets from the pod range or to the Service range that
# leave the kind bridge for anywhere else.
#
# Env: KIND_CLUSTER (realm-operator), KIND_NODE_IMAGE (built by node-image.sh), REALM_OPERATOR_CACHE,
#      KIND_WAIT (3m).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KIND_CLUSTER="${KIND_CLUSTER:-realm-operator}"
POD_SUBNET="10.244.0.0/16"     # must match hack/kind/node/rootfs (CNI config, resolv.conf, lockdown)
SERVICE_SUBNET="10.96.0.0/16"
CLUSTER_DIR="$REALM_OPERATOR_CACHE/kind-cluster/$KIND_CLUSTER"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"
CONFIG_PATH="$CLUSTER_DIR/kind-config.yaml"
# One chain per cluster (iptables chain names are at most 28 characters).
EGRESS_CHAIN="REALM-EGRESS-${KIND_CLUSTER:0:15}"
HERE="$REPO_ROOT/hack/kind"

kind_bin() { "$HERE/kind-binary.sh" | tail -n1; }
KIND=""
ensure_kind() { [[ -n "$KIND" ]] || KIND="$(kind_bin)"; }

cluster_exists() {
  ensure_kind
  "$KIND" get clusters 2>/dev/null | grep -qxF "$KIND_CLUSTER"
}

cluster_config() {
  local image="$1"
  cat <<EOF
# written by hack/kind/cluster.sh
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: $KIND_CLUSTER
networking:
  apiServerAddress: 127.0.0.1
  disableDefaultCNI: true
  kubeProxyMode: nftables
  podSubnet: $POD_SUBNET
  serviceSubnet: $SERVICE_SUBNET
nodes:
  - role: control-plane
    image: $image
kubeadmConfigPatches:
  - |
    kind: KubeletConfiguration
    apiVersion: kubelet.config.k8s.io/v1beta1
    failCgroupV1: false
    resolvConf: /kind/realm-resolv.conf
EOF
}

bridge_of_kind_network() {
  local id name
  id="$(docker network inspect kind -f '{{.Id}}' 2>/dev/null)" || return 1
  name="$(docker network inspect kind -f '{{ index .Options "com.docker.network.bridge.name" }}' 2>/dev/null || true)"
  if [[ -n "$name" && "$name" != "<no value>" ]]; then echo "$name"; else echo "br-${id:0:12}"; fi
}

# Host side of the lockdown: count (and drop) what would leave the kind bridge for elsewhere.
# mangle/FORWARD, because Docker rewrites filter/FORWARD's order whenever it creates a network.
# The counter needs the kind bridge in this host's network namespace (a Linux Docker Engine);
# Docker Desktop keeps its bridges in a VM, where this host cannot count (egress-count then says
# "unavailable", which e2e.sh refuses unless told otherwise).
host_sees_bridge() { [[ "$(uname -s)" == Linux ]] && ip link show "$1" >/dev/null 2>&1; }

install_egress_counter() {
  local br
  br="$(bridge_of_kind_network)" || die "no Docker network 'kind'"
  if ! host_sees_bridge "$br"; then
    log "WARNING: the kind bridge $br is not visible on this host (Docker Desktop?): no host egress counter"
    return 0
  fi
  have iptables || apt_install iptables
  # Idempotent without resetting the counts: a chain and rules that exist are kept.
  as_root iptables -w -t mangle -N "$EGRESS_CHAIN" 2>/dev/null || true
  local rule
  for rule in "-s $POD_SUBNET:pod-range" "-d $SERVICE_SUBNET:Service-range"; do
    # shellcheck disable=SC2086
    set -- -i "$br" ! -o "$br" ${rule%%:*} -m comment --comment "realm-operator kind: ${rule#*:} packet leaving the kind network" -j DROP
    as_root iptables -w -t mangle -C "$EGRESS_CHAIN" "$@" 2>/dev/null || as_root iptables -w -t mangle -A "$EGRESS_CHAIN" "$@"
  done
  as_root iptables -w -t mangle -C FORWARD -j "$EGRESS_CHAIN" 2>/dev/null ||
    as_root iptables -w -t mangle -I FORWARD 1 -j "$EGRESS_CHAIN"
  log "host egress counter: iptables -t mangle chain $EGRESS_CHAIN on $br"
}

remove_egress_counter() {
  have iptables || return 0
  while as_root iptables -w -t mangle -D FORWARD -j "$EGRESS_CHAIN" 2>/dev/null; do :; done
  as_root iptables -w -t mangle -F "$EGRESS_CHAIN" 2>/dev/null || true
  as_root iptables -w -t mangle -X "$EGRESS_CHAIN" 2>/dev/null || true
}

egress_count() {
  local br
  if br="$(bridge_of_kind_network)" && ! host_sees_bridge "$br"; then
    echo unavailable
    return 0
  fi
  as_root iptables -w -t mangle -L "$EGRESS_CHAIN" -n -v -x >/dev/null 2>&1 ||
    die "no host egress counter ($EGRESS_CHAIN): is the cluster up (hack/kind/cluster.sh up)?"
  as_root iptables -w -t mangle -L "$EGRESS_CHAIN" -n -v -x | awk 'NR > 2 { n += $1 } END { print n + 0 }'
}

write_kubeconfig() {
  mkdir -p "$CLUSTER_DIR"
  "$KIND" get kubeconfig --name "$KIND_CLUSTER" >"$KUBECONFIG_PATH.tmp"
  chmod 600 "$KUBECONFIG_PATH.tmp"
  mv -f "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
}

up() {
  ensure_kind
  local image
  if cluster_exists; then
    log "cluster $KIND_CLUSTER is already up"
  else
    image="${KIND_NODE_IMAGE:-$("$HERE/node-image.sh" | tail -n1)}"
    mkdir -p "$CLUSTER_DIR"
    cluster_config "$image" >"$CONFIG_PATH"
    create() { "$KIND" create cluster --name "$KIND_CLUSTER" --config "$CONFIG_PATH" --kubeconfig "$KUBECONFIG_PATH" --wait "${KIND_WAIT:-3m}" >&2; }
    stage cluster-create create || {
      log "kind create cluster failed; the node's last log lines:"
      docker exec "$KIND_CLUSTER-control-plane" journalctl --no-pager -n 60 >&2 2>/dev/null || true
      "$KIND" delete cluster --name "$KIND_CLUSTER" >&2 || true
      exit 1
    }
  fi
  node_directories
  install_egress_counter
  write_kubeconfig
  printf '%s\n' "$KUBECONFIG_PATH"
}

# deploy/kind's local PersistentVolumes need their directories on the node. The realms directory
# belongs to uid 65532 (operator, seed Job, realm servers): realm-server pods mount it read-only,
# so the kubelet's fsGroup ownership change cannot be relied on for it.
node_directories() {
  local node="$KIND_CLUSTER-control-plane"
  docker exec "$node" install -d -o 65532 -g 65532 -m 0775 /var/local/realm-operator/realms
  docker exec "$node" install -d -m 0755 /var/local/realm-operator/postgres
}

down() {
  if cluster_exists; then
    stage cluster-delete "$KIND" delete cluster --name "$KIND_CLUSTER" >&2
  else
    log "cluster $KIND_CLUSTER is not up"
  fi
  remove_egress_counter
  rm -f "$KUBECONFIG_PATH"
}

load() {
  (($# > 0)) || die "usage: cluster.sh load IMAGE..."
  ensure_kind
  cluster_exists || die "cluster $KIND_CLUSTER is not up (hack/kind/cluster.sh up)"
  local img
  for img in "$@"; do
    stage "load $img" "$KIND" load docker-image "$img" --name "$KIND_CLUSTER" >&2
  done
}

kubectl_bin() { [[ -n "${KUBECTL:-}" ]] || KUBECTL="$("$REPO_ROOT/hack/kube-assets.sh" | tail -n1)/kubectl"; }

# "Kind namespace name" of every object the overlay renders (namespace "-" for cluster-scoped kinds
# that have none, "default" for namespaced ones without one).
rendered_objects() {
  kubectl_bin
  "$KUBECTL" kustomize "$1" | awk '
    function flush() { if (kind != "") print kind, (ns == "" ? "-" : ns), name; kind = ns = name = ""; meta = 0 }
    /^---/ { flush(); next }
    /^kind: / { kind = $2; next }
    /^metadata:/ { meta = 1; next }
    /^[^ #]/ { meta = 0 }
    meta && /^  name: / && name == "" { name = $2 }
    meta && /^  namespace: / { ns = $2 }
    END { flush() }'
}

load_overlay() {
  local overlay="${1:-deploy/kind}" images=() img
  kubectl_bin
  while read -r img; do
    [[ -n "$img" ]] || continue
    docker_image_present "$img" || die "$overlay names image $img, which Docker does not have (hack/kind/images.sh builds the project's images)"
    images+=("$img")
  done < <("$KUBECTL" kustomize "$overlay" | sed -n 's/^[[:space:]-]*image:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}[[:space:]]*$/\1/p' | sort -u)
  ((${#images[@]} > 0)) || die "$overlay names no images"
  load "${images[@]}"
}

deploy() {
  local overlay="${1:-deploy/kind}" kind ns name objects
  kubectl_bin
  cluster_exists || die "cluster $KIND_CLUSTER is not up (hack/kind/cluster.sh up)"
  ensure_kind && write_kubeconfig
  export KUBECONFIG="$KUBECONFIG_PATH"
  objects="$(rendered_objects "$overlay")"
  "$KUBECTL" apply -k "$overlay" >&2
  # StatefulSets first (the database the seed Job and the operator need), then the rest, then Jobs.
  while read -r kind ns name; do
    case "$kind" in
      StatefulSet | Deployment | DaemonSet)
        stage "rollout $kind/$name" "$KUBECTL" -n "$ns" rollout status "$kind/$name" --timeout=300s >&2 ;;
      Job)
        stage "job $name" "$KUBECTL" -n "$ns" wait --for=condition=complete "job/$name" --timeout=300s >&2 ;;
    esac
  done < <(awk '{ o = ($1 == "StatefulSet" ? 0 : ($1 == "Job" ? 2 : 1)); print o, $0 }' <<<"$objects" | sort -k1,1n -s | cut -d' ' -f2-)
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  load) shift && load "$@" ;;
  load-overlay) load_overlay "${2:-deploy/kind}" ;;
  deploy) deploy "${2:-deploy/kind}" ;;
  namespaces) rendered_objects "${2:-deploy/kind}" | awk '$1 == "Namespace" { print $3 } $2 != "-" { print $2 }' | sort -u ;;
  kubeconfig)
    cluster_exists || die "cluster $KIND_CLUSTER is not up (hack/kind/cluster.sh up)"
    ensure_kind && write_kubeconfig && printf '%s\n' "$KUBECONFIG_PATH"
    ;;
  egress-count) egress_count ;;
  status) if cluster_exists; then echo UP; else echo DOWN; fi ;;
  *) die "usage: hack/kind/cluster.sh up|down|load IMAGE...|load-overlay [DIR]|deploy [DIR]|namespaces [DIR]|kubeconfig|egress-count|status" ;;
esac
