# shellcheck shell=bash disable=SC2034 # variables here are for the scripts that source this file
# hack/kind/lib.sh — helpers shared by the hack/kind scripts. Source it; besides variables and
# functions it sets `set -euo pipefail`, exports DOCKER_BUILDKIT=0 (see below) and installs an
# EXIT trap that names a stage that failed (see stage).
#
#   REALM_OPERATOR_CACHE   cache root (default ~/.cache/realm-operator); kind artifacts live below it
#   KIND_CACHE             $REALM_OPERATOR_CACHE (alias kept for the kind scripts)
#   IMAGES_CACHE           $REALM_OPERATOR_CACHE/images: image tarballs, keyed by version/input hash
#   log MSG / die MSG      progress and errors on stderr, prefixed with the script's name
#   stage NAME CMD...      run CMD, then print "stage NAME: 1m02s" (the timings the issue asks for)
#   as_root CMD...         run CMD as root (directly when root, else through sudo)
#   spawn_detached LOG CMD...  start a daemon that keeps none of our file descriptors
#   apt_install PKG...     apt-get update (once per script run) + install, only the missing packages
#   have CMD               is CMD on PATH
#   fmt_secs N             N seconds as 1m02s
#   hash_paths PATH...     one sha256 over the named files/directories (names and contents)
#   cap_bounding_has N     is capability bit N in this process's bounding set
#   docker_image_present IMG
#   docker_save_cached IMG TAR  /  docker_load_cached TAR
set -euo pipefail

REALM_OPERATOR_CACHE="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}"
KIND_CACHE="$REALM_OPERATOR_CACHE"
IMAGES_CACHE="$REALM_OPERATOR_CACHE/images"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Debian's Docker Engine 20.10 has no working BuildKit here: every build uses the legacy builder,
# so Dockerfiles must avoid BuildKit-only syntax (COPY --chmod, RUN --mount, heredocs).
export DOCKER_BUILDKIT=0

_LIB_SCRIPT="$(basename "${0:-hack}" .sh)"

log() { printf '[%s %s] %s\n' "$_LIB_SCRIPT" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[%s] ERROR: %s\n' "$_LIB_SCRIPT" "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# The command runs in this shell (so it may set variables) and under `set -e` as usual. Don't
# call stage in a condition (`stage ... || ...`, `if stage ...`): bash then ignores `set -e`
# inside the command's functions, and a failing step would not stop it. A stage that fails under
# `set -e` ends the script; the EXIT trap below names it (a script that sets its own EXIT trap
# can call stage_report_failed from it).
_STAGE_OPEN=()
stage() {
  local name="$1" start rc=0
  shift
  start=$(date +%s)
  log "stage $name: start"
  _STAGE_OPEN+=("$start $name")
  # Not `"$@" || rc=$?`: that would switch `set -e` off inside "$@". Under `set -e` a failure
  # exits here (the EXIT trap reports it); in a caller's condition it returns to the next line.
  "$@"
  rc=$?
  unset '_STAGE_OPEN[-1]'
  if [ "$rc" -ne 0 ]; then
    log "stage $name: FAILED after $(fmt_secs $(($(date +%s) - start)))"
    return "$rc"
  fi
  log "stage $name: $(fmt_secs $(($(date +%s) - start)))"
}

stage_report_failed() {
  local entry
  for entry in "${_STAGE_OPEN[@]}"; do
    log "stage ${entry#* }: FAILED after $(fmt_secs $(($(date +%s) - ${entry%% *})))"
  done
  _STAGE_OPEN=()
}
trap 'stage_report_failed' EXIT

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif have sudo; then
    sudo "$@"
  else
    die "needs root for: $* (run as root or install sudo)"
  fi
}

# spawn_detached LOG CMD...: start CMD in its own session in the background, stdin /dev/null and
# output appended to LOG, holding none of this script's other file descriptors — so a caller
# capturing our output (`$(...)`, `| tee`, CI) is not kept waiting by a daemon that outlives us.
# (`cmd >log &` is not enough: for a function, bash keeps a saved copy of the old stdout open.)
spawn_detached() {
  local logfile="$1" fd
  shift
  (
    exec </dev/null >>"$logfile" 2>&1
    for fd in /proc/$BASHPID/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid "$@"
  ) &
}

_APT_UPDATED=""
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  have apt-get || die "missing packages ${missing[*]} and no apt-get: install them by hand"
  if [ -z "$_APT_UPDATED" ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    _APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

hash_paths() {
  # Names and contents, sorted, so a rename or a new file changes the hash too.
  (
    cd "$REPO_ROOT"
    find "$@" -type f -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 -r sha256sum
  ) | sha256sum | cut -c1-16
}

cap_bounding_has() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  [ $(((16#$bnd >> $1) & 1)) -eq 1 ]
}

docker_image_present() { docker image inspect "$1" >/dev/null 2>&1; }

docker_save_cached() {
  local image="$1" tar="$2"
  mkdir -p "$(dirname "$tar")"
  docker save "$image" -o "$tar.tmp"
  mv -f "$tar.tmp" "$tar"
}

docker_load_cached() {
  docker load -i "$1" >&2
}
