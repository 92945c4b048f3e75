# shellcheck shell=bash
# hack/lib/cached-build.sh — sourced by the hack/*.sh scripts that provide a tool built or
# installed once and reused (synapse.sh, promtool.sh, prometheus-operator-crds.sh).
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"
#   cached_build <name> <target-dir> <build-function> [<file the target must hold>]
#
# If <target-dir>/.complete exists (and the named file, when given), prints <target-dir> and
# returns. Otherwise takes the lock $CACHE/<name>.lock (flock: concurrent callers wait for one
# build, then reuse it), calls <build-function> <scratch-dir> with the lock's descriptor closed (so a
# compiler left running by an interrupted build cannot hold the lock), and only if it succeeds marks the
# scratch directory complete and renames it to <target-dir>: an interrupted build is never trusted.
# Prints <target-dir> as the last line of stdout; progress goes to stderr.
#
# CACHE: ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}.

CACHE="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}"

cached_log() { printf '[%s %s] %s\n' "$CACHED_BUILD_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
cached_die() {
  printf '[%s] ERROR: %s\n' "$CACHED_BUILD_NAME" "$*" >&2
  exit 1
}

cached_build() {
  local name="$1" target="$2" build="$3" must_hold="${4:-}"
  CACHED_BUILD_NAME="$name"
  _cached_ready() { [[ -f "$target/.complete" && ( -z "$must_hold" || -e "$target/$must_hold" ) ]]; }
  if _cached_ready; then
    printf '%s\n' "$target"
    return 0
  fi
  mkdir -p "$CACHE"
  exec 9>"$CACHE/$name.lock"
  if ! flock -n 9; then
    cached_log "another build holds $CACHE/$name.lock; waiting for it"
    flock 9
  fi
  if _cached_ready; then # built by the run we waited for
    exec 9>&-
    printf '%s\n' "$target"
    return 0
  fi
  local started scratch
  started=$(date +%s)
  scratch="$(mktemp -d "$target.tmp.XXXXXX")"
  # shellcheck disable=SC2064 # the scratch path is fixed now
  trap "rm -rf '$scratch'" EXIT
  "$build" "$scratch" 9>&- || cached_die "the build failed (see above)"
  touch "$scratch/.complete"
  rm -rf "$target"
  mv "$scratch" "$target"
  trap - EXIT
  exec 9>&-
  cached_log "ready in $(($(date +%s) - started)) s: $target"
  printf '%s\n' "$target"
}
