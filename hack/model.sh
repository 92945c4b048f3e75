#!/usr/bin/env bash
# hack/model.sh — check the acknowledged-invalidation protocol's model (model/realm-invalidation.pml)
# with Spin, then check that every mutant of it fails. docs/protocol-model.md explains the model.
#
# Usage: hack/model.sh             the bounded configurations (CI: `make test`, `make model`)
#        MODEL=full hack/model.sh  fuller bounds, every fault at once (longer; see the docs for numbers)
#        hack/model.sh --install   only install Spin (and check gcc), print spin's path
#        MODEL_KEEP=1 hack/model.sh keep the verifiers' directories, to replay a mutant's trail
#
# Spin comes from Debian's `spin` package, fetched with `apt-get download` (no root needed) and
# unpacked ONCE into ${REALM_OPERATOR_CACHE:-~/.cache/realm-operator}/spin-<version>/; a `spin`
# already on PATH is used only when that fails. gcc compiles the verifiers (apt-get installs it
# when missing and we are root). Exit status: 0 when the model holds and every mutant fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL_FILE="${MODEL_FILE:-$ROOT/model/realm-invalidation.pml}"  # another file: to check that a broken model fails
CACHE="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}"
MODE="${MODEL:-bounded}"
log() { printf '%s\n' "$*" >&2; }

ensure_gcc() {
  command -v gcc >/dev/null && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "model: installing gcc with apt-get"
    apt-get -o DPkg::Lock::Timeout=600 install -y -q gcc >&2
  fi
  command -v gcc >/dev/null || { log "model: gcc is needed to compile Spin's verifiers: install it (apt-get install gcc)"; exit 1; }
}

# Prints the path of a working spin binary.
ensure_spin() {
  local cached
  cached="$(ls -d "$CACHE"/spin-*/usr/bin/spin 2>/dev/null | sort | tail -n1 || true)"
  if [[ -n $cached && -x $cached ]]; then printf '%s\n' "$cached"; return 0; fi
  if command -v apt-get >/dev/null; then
    local tmp version
    tmp="$(mktemp -d)"; chmod 755 "$tmp"  # apt-get download drops privileges to _apt
    if (cd "$tmp" && apt-get download spin >&2) || { [[ $(id -u) == 0 ]] && apt-get update -q >&2 && (cd "$tmp" && apt-get download spin >&2); }; then
      version="$(dpkg-deb -f "$tmp"/spin_*.deb Version)"
      mkdir -p "$CACHE/spin-$version.partial"
      dpkg-deb -x "$tmp"/spin_*.deb "$CACHE/spin-$version.partial"
      rm -rf "$CACHE/spin-$version" && mv "$CACHE/spin-$version.partial" "$CACHE/spin-$version"
      rm -rf "$tmp"
      log "model: Spin $version unpacked into $CACHE/spin-$version"
      printf '%s\n' "$CACHE/spin-$version/usr/bin/spin"
      return 0
    fi
    rm -rf "$tmp"
  fi
  if command -v spin >/dev/null; then command -v spin; return 0; fi
  log "model: could not get Spin: no Debian package reachable (apt-get download spin) and no spin on PATH"
  exit 1
}

ensure_gcc
SPIN="$(ensure_spin)"
if [[ ${1:-} == --install ]]; then
  "$SPIN" -V >&2
  printf '%s\n' "$SPIN"
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/realm-model.XXXXXX")"
KEEP="${MODEL_KEEP:-0}"  # MODEL_KEEP=1 keeps every verifier directory (trails to replay)
trap '[[ $KEEP == 1 ]] || rm -rf "$WORK"' EXIT

# Bounds: -D flags for the model (see its header). Bounded mode splits the faults into slices
# that each finish in seconds; full mode runs every fault at once.
case "$MODE" in
  bounded)
    SLICES=(
      "clocks:-DTIMED=1 -DSTART_READY -DMAXGEN=2 -DSKEW=1 -DLAG=1 -DLOSSES=0 -DSTOPS=1 -DCRASHES=0 -DREFUSALS=0 -DHANDOVERS=0"
      "crashes:-DSTART_READY -DNOTIME -DMAXGEN=2 -DCRASHES=2 -DREFUSALS=1 -DLOSSES=0 -DSTOPS=0 -DHANDOVERS=0"
      "leaders:-DSTART_READY -DNOTIME -DMAXGEN=3 -DHANDOVERS=1 -DCRASHES=0 -DREFUSALS=0 -DLOSSES=0 -DSTOPS=0"
    )
    ;;
  full)
    SLICES=("all:-DMAXGEN=3 -DCRASHES=2 -DREFUSALS=1 -DHANDOVERS=1 -DSKEW=1 -DLAG=1 -DLOSSES=1 -DSTOPS=1")
    ;;
  *) log "model: MODEL must be bounded or full, not '$MODE'"; exit 1 ;;
esac
slice_flags() { local s; for s in "${SLICES[@]}"; do [[ ${s%%:*} == "$1" ]] && { printf '%s\n' "${s#*:}"; return; }; done; printf '%s\n' "${SLICES[0]#*:}"; }

# Mutant name : the slice whose faults it needs (in full mode every mutant runs with all faults).
MUTANTS=(
  "NO_MARGIN:clocks"
  "ACK_BEFORE_DROP:clocks"
  "HINT_ACK_NO_DROP:clocks"
  "DEREG_BEFORE_UNTRUST:clocks"
  "RECOVERY_IN_TX:crashes"
  "BUMP_ONLY_ON_LINK:crashes"
  "ACK_ANY_EPOCH:leaders"
  "NO_GEN_FENCE:leaders"
  "FENCE_AT_COMMIT:leaders"
)

PAN_MEMORY_MB="${MODEL_MEMORY_MB:-$([[ $MODE == full ]] && echo 12288 || echo 4096)}"
PAN_HASH_BITS="$([[ $MODE == full ]] && echo 28 || echo 26)"

# verify NAME FLAGS... : builds and runs one depth-first verifier (it stops at the first
# violation); sets STATES, CPU (seconds of CPU time), ERRORS, DEPTH (the counterexample's length:
# depth-first, so not the shortest; breadth-first search runs out of memory on the clock slice).
verify() {
  local name="$1"; shift
  # Full mode stores a 4-word hash of each state (hash compaction): far less memory, a tiny chance
  # of missing a state; the bounded slices store every state whole (compressed).
  local dir="$WORK/$name" cflags=(-O2 -w -DSAFETY -DNOBOUNDCHECK -DMEMLIM="$PAN_MEMORY_MB")
  if [[ $MODE == full ]]; then cflags+=(-DHC4); else cflags+=(-DCOLLAPSE); fi
  mkdir -p "$dir"
  cp "$MODEL_FILE" "$dir/model.pml"
  (cd "$dir" && "$SPIN" -a "$@" model.pml >spin.out 2>&1) || { cat "$dir/spin.out" >&2; log "model: spin -a failed for $name"; exit 1; }
  (cd "$dir" && gcc "${cflags[@]}" -o pan pan.c) || { log "model: gcc failed for $name"; exit 1; }
  local TIMEFORMAT='%U %S'
  { time (cd "$dir" && ./pan -m2000000 -w"$PAN_HASH_BITS" >pan.out 2>&1 || true); } 2>"$dir/cpu"
  CPU="$(awk '{printf "%.1f", $1 + $2}' "$dir/cpu")"
  ERRORS="$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$dir/pan.out" | tail -n1)"
  STATES="$(awk '/states, stored/ {print $1; exit}' "$dir/pan.out")"
  DEPTH="$(sed -n 's/.*(at depth \([0-9][0-9]*\)).*/\1/p' "$dir/pan.out" | head -n1)"
  if [[ -z $ERRORS || -z $STATES ]]; then
    KEEP=1; cat "$dir/pan.out" >&2; log "model: no verdict from pan for $name (output kept in $dir)"; exit 1
  fi
  if grep -qE 'max search depth too small|out of memory|Search not completed' "$dir/pan.out" && [[ $ERRORS == 0 ]]; then
    KEEP=1; cat "$dir/pan.out" >&2; log "model: the search for $name did not complete (output kept in $dir)"; exit 1
  fi
}

# Which property an assertion in pan's output is (the model's P1-P4).
violated() {
  local line
  line="$(grep -m1 'assertion violated' "$1" || true)"
  case "$line" in
    *readyIdx*) echo "P1: a replica serves content older than a Ready vouched for" ;;
    *readyGen*) echo "P2: an older generation committed after a newer one's Ready" ;;
    *committedContent*) echo "P4: at rest the link is not the committed content" ;;
    *'cache['*) echo "P3: at rest a replica's cache differs from the link" ;;
    *) echo "${line:0:80}" ;;
  esac
}

started=$(date +%s)
log "model: $("$SPIN" -V), $MODE mode, $MODEL_FILE"
failed=0
for slice in "${SLICES[@]}"; do
  name="${slice%%:*}"
  read -r -a flags <<<"${slice#*:}"
  verify "model-$name" "${flags[@]}"
  if [[ $ERRORS != 0 ]]; then
    KEEP=1
    log "model: FAIL: the protocol violates a property in slice '$name' (${flags[*]}), counterexample of $DEPTH steps:"
    log "  replay: cd $WORK/model-$name && $SPIN -t -p -g model.pml"
    grep -m1 'assertion violated' "$WORK/model-$name/pan.out" >&2 || true
    failed=1
  else
    printf 'model %-8s holds: %s states, %s s CPU  (%s)\n' "$name" "$STATES" "$CPU" "${flags[*]}"
  fi
done
for mutant in "${MUTANTS[@]}"; do
  name="${mutant%%:*}"
  read -r -a flags <<<"$(slice_flags "${mutant#*:}")"
  verify "mutant-$name" "-D$name" "${flags[@]}"
  if [[ $ERRORS == 0 ]]; then
    printf 'mutant %-20s SURVIVED: %s states, %s s CPU, no counterexample (the model no longer catches it)\n' "$name" "$STATES" "$CPU"
    failed=1
  else
    printf 'mutant %-20s killed: counterexample of %s steps after %s states, %s s CPU (%s)\n' "$name" "$DEPTH" "$STATES" "$CPU" "$(violated "$WORK/mutant-$name/pan.out")"
  fi
done
log "model: done in $(( $(date +%s) - started )) s of wall time"
exit "$failed"
