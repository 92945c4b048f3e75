#!/usr/bin/env bash
# hack/kind/e2e.sh — `make e2e-kind`: the end-to-end suite against a real kind cluster, one code path
# for this machine (no registry: everything is built here) and for users with Docker.
#
#   docker       hack/kind/docker.sh       a Docker Engine that answers (installed/started if needed)
#   images       hack/kind/images.sh       the project's images, built locally
#   kind         hack/kind/kind-binary.sh  kind from the Go module proxy
#   node-binaries hack/kind/node-binaries.sh the node's binaries (started first, in the background;
#                this stage is the wait for it)
#   node-image   hack/kind/node-image.sh   the kind node image, built locally
#   cluster-up   hack/kind/cluster.sh up   a single-node cluster, API server on 127.0.0.1
#   load         kind load docker-image    every image deploy/kind names that Docker has
#   deploy       kubectl apply -k deploy/kind, then every Deployment/StatefulSet/DaemonSet rolled out
#                and every Job complete
#   suite        jest --selectProjects kind --runInBand, KUBECONFIG exported
#   egress       the host's egress counter must be 0: no pod packet tried to leave the machine
# On failure: the logs of every pod deploy/kind created and `kubectl get events -A`. Always: the
# cluster is deleted at the end (KEEP_CLUSTER=1 keeps it) and each stage's time is printed.
#
# Env: KEEP_CLUSTER=1, KIND_CLUSTER, NODE (the node binary for jest; default: the project's
#      node_modules/.bin/node when present, else node), E2E_KIND_JEST_ARGS (extra jest arguments),
#      E2E_KIND_ALLOW_NO_EGRESS_COUNTER=1 (where the host cannot see the kind bridge, e.g. Docker
#      Desktop: run without the egress check; elsewhere the check is never skipped).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HERE="$REPO_ROOT/hack/kind"
OVERLAY="${E2E_KIND_OVERLAY:-deploy/kind}"
cd "$REPO_ROOT" || exit 1

STAGES=()
t_start=$(date +%s)
# timed NAME CMD...: run CMD under `set -e` (a failure ends the script; finish() records it).
CURRENT_STAGE=""
CURRENT_T0=0
timed() {
  local name="$1"
  shift
  CURRENT_STAGE="$name" CURRENT_T0=$(date +%s)
  log "stage $name: start"
  "$@"
  STAGES+=("$(printf '%-13s %7s' "$name" "$(fmt_secs $(($(date +%s) - CURRENT_T0)))")")
  log "stage $name: $(fmt_secs $(($(date +%s) - CURRENT_T0)))"
  CURRENT_STAGE=""
}

print_timings() {
  {
    echo "---- e2e-kind stage timings ----"
    printf '%s\n' "${STAGES[@]}"
    printf '%-13s %7s\n' total "$(fmt_secs $(($(date +%s) - t_start)))"
  } >&2
}

CLUSTER_CREATED=0
KUBECTL=""
rendered_namespaces() { "$HERE/cluster.sh" namespaces "$OVERLAY"; }

dump_diagnostics() {
  [[ -n "$KUBECTL" && -n "${KUBECONFIG:-}" && -f "${KUBECONFIG:-/nonexistent}" ]] || return 0
  local ns pod
  echo "==== diagnostics: pods ====" >&2
  "$KUBECTL" get pods -A -o wide >&2 || true
  for ns in $(rendered_namespaces 2>/dev/null); do
    for pod in $("$KUBECTL" -n "$ns" get pods -o name 2>/dev/null); do
      echo "==== logs: $ns/$pod ====" >&2
      "$KUBECTL" -n "$ns" logs "$pod" --all-containers --prefix --tail=300 >&2 || true
      # the previous container's logs too, where one restarted (a kill -9, a crash)
      if "$KUBECTL" -n "$ns" get "$pod" -o jsonpath='{.status.containerStatuses[*].restartCount}' 2>/dev/null | grep -q '[1-9]'; then
        echo "==== previous logs: $ns/$pod ====" >&2
        "$KUBECTL" -n "$ns" logs "$pod" --all-containers --prefix --previous --tail=100 >&2 || true
      fi
    done
  done
  echo "==== kubectl get events -A ====" >&2
  "$KUBECTL" get events -A --sort-by=.lastTimestamp >&2 || true
}

NB_PID=""
finish() {
  local rc=$?
  trap - EXIT
  stage_report_failed
  [[ -z "$NB_PID" ]] || kill -- "-$NB_PID" 2>/dev/null || true
  if [[ -n "$CURRENT_STAGE" ]]; then
    STAGES+=("$(printf '%-13s %7s  FAILED' "$CURRENT_STAGE" "$(fmt_secs $(($(date +%s) - CURRENT_T0)))")")
    CURRENT_STAGE=""
  fi
  if ((rc != 0)); then
    log "e2e-kind FAILED (exit $rc)"
    dump_diagnostics
  fi
  if ((CLUSTER_CREATED)) && [[ "${KEEP_CLUSTER:-}" != 1 ]]; then
    timed cluster-down "$HERE/cluster.sh" down || true
  elif ((CLUSTER_CREATED)); then
    log "KEEP_CLUSTER=1: cluster left up; KUBECONFIG=${KUBECONFIG:-}"
  fi
  print_timings
  ((rc == 0)) && log "e2e-kind passed"
  exit "$rc"
}
trap finish EXIT

# --- docker, images, kind, node image -----------------------------------------------------------
# The node's Go builds (CPU; ~20 min on a cold 2-core machine) run alongside Docker's installation and
# the image builds (network and disk), in their own process group so a failure can stop them.
NB_LOG="$REALM_OPERATOR_CACHE/kind-node/node-binaries.log"
mkdir -p "$(dirname "$NB_LOG")"
setsid "$HERE/node-binaries.sh" >"$NB_LOG.out" 2>"$NB_LOG" </dev/null &
NB_PID=$!
wait_node_binaries() {
  local rc=0
  wait "$NB_PID" || rc=$?
  NB_PID=""
  grep -h 'stage \|cached:' "$NB_LOG" >&2 || true
  ((rc == 0)) || { tail -n 60 "$NB_LOG" >&2; die "node-binaries.sh failed (exit $rc); log: $NB_LOG"; }
}
timed docker "$HERE/docker.sh" >&2
timed images "$HERE/images.sh" >&2
kind_bin() { "$HERE/kind-binary.sh" >/dev/null; }
timed kind kind_bin
timed node-binaries wait_node_binaries
KIND_NODE_IMAGE=""
node_image() { KIND_NODE_IMAGE="$("$HERE/node-image.sh" | tail -n1)"; }
timed node-image node_image
kubectl_bin() { KUBECTL="$("$REPO_ROOT/hack/kube-assets.sh" | tail -n1)/kubectl"; }
timed kubectl kubectl_bin
[[ -x "$KUBECTL" ]] || die "no kubectl from hack/kube-assets.sh"

# --- cluster -------------------------------------------------------------------------------------
cluster_up() {
  CLUSTER_CREATED=1
  KUBECONFIG="$(KIND_NODE_IMAGE="$KIND_NODE_IMAGE" "$HERE/cluster.sh" up | tail -n1)"
  export KUBECONFIG
}
timed cluster-up cluster_up
log "KUBECONFIG=$KUBECONFIG"

# --- load the images deploy/kind runs, deploy it and wait for it ----------------------------------
timed load "$HERE/cluster.sh" load-overlay "$OVERLAY"
timed deploy "$HERE/cluster.sh" deploy "$OVERLAY"

# --- the suite --------------------------------------------------------------------------------------
NODE_BIN="${NODE:-}"
[[ -n "$NODE_BIN" ]] || { if [[ -x node_modules/.bin/node ]]; then NODE_BIN="$REPO_ROOT/node_modules/.bin/node"; else NODE_BIN=node; fi; }
suite() {
  local cluster="${KIND_CLUSTER:-realm-operator}"
  # docker stays on PATH: the suite kills a realm-server container on the node (docker exec … crictl).
  # shellcheck disable=SC2086
  PATH="$(dirname "$KUBECTL"):$PATH" KIND_CLUSTER="$cluster" KIND_NODE="$cluster-control-plane" \
    "$NODE_BIN" --experimental-vm-modules node_modules/jest/bin/jest.js --ci --selectProjects kind --runInBand ${E2E_KIND_JEST_ARGS:-}
}
timed suite suite

# --- nothing left the machine -----------------------------------------------------------------------
egress() {
  local n
  n="$("$HERE/cluster.sh" egress-count)"
  log "host egress counter (pod/Service-range packets that tried to leave the kind network): $n"
  if [[ "$n" == unavailable && "${E2E_KIND_ALLOW_NO_EGRESS_COUNTER:-}" == 1 ]]; then
    log "WARNING: no host egress counter here (E2E_KIND_ALLOW_NO_EGRESS_COUNTER=1): egress not checked"
    return 0
  fi
  [[ "$n" != unavailable ]] || die "the host cannot see the kind bridge, so egress cannot be counted (Docker Desktop? set E2E_KIND_ALLOW_NO_EGRESS_COUNTER=1 to run without the check)"
  [[ "$n" == 0 ]] || die "$n pod/Service-range packet(s) tried to leave the machine"
}
timed egress egress
