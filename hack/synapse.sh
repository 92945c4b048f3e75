#!/usr/bin/env bash
# hack/synapse.sh — provide a real Synapse (Matrix homeserver) for the tests: a Python venv with a
# pinned `matrix-synapse` from PyPI, created ONCE under
#   ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/synapse-<version>/
# and reused afterwards. Prints that venv's directory as the LAST line of stdout (progress goes to
# stderr), so `export REALM_OPERATOR_SYNAPSE_VENV="$(hack/synapse.sh | tail -n1)"` works.
#
# Concurrent runs are serialized with flock; the venv is built in a scratch directory and renamed
# into place only when `python -m synapse.app.homeserver --help` works, so an interrupted install
# never leaves a half-made venv that a later run would trust.
#
# Needs python3 (>= 3.10, with the venv module) and access to PyPI, nothing else.
# Override the version with SYNAPSE_VERSION, the interpreter with PYTHON.
set -euo pipefail

SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
PYTHON="${PYTHON:-python3}"
CACHE="${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}"
TARGET="$CACHE/synapse-$SYNAPSE_VERSION"

log() { printf '[synapse %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[synapse] ERROR: %s\n' "$*" >&2
  exit 1
}

ready() { [[ -x "$TARGET/bin/python" && -f "$TARGET/.complete" ]]; }

if ready; then
  printf '%s\n' "$TARGET"
  exit 0
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.10 or newer (with venv), or set PYTHON"
"$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null \
  || die "$PYTHON must be Python 3.10 or newer with the venv and ensurepip modules (Debian/Ubuntu: apt-get install python3-venv)"

mkdir -p "$CACHE"
exec 9>"$CACHE/synapse.lock"
if ! flock -n 9; then
  log "another install holds $CACHE/synapse.lock; waiting for it"
  flock 9
fi

if ready; then # built by the run we waited for
  printf '%s\n' "$TARGET"
  exit 0
fi

started=$(date +%s)
SCRATCH="$(mktemp -d "$CACHE/synapse-$SYNAPSE_VERSION.tmp.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

log "creating a venv for matrix-synapse==$SYNAPSE_VERSION (once; later runs reuse $TARGET)"
"$PYTHON" -m venv "$SCRATCH"
log "installing matrix-synapse==$SYNAPSE_VERSION from PyPI"
"$SCRATCH/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
  "matrix-synapse==$SYNAPSE_VERSION" >&2 || die "pip could not install matrix-synapse==$SYNAPSE_VERSION (is PyPI reachable?)"
"$SCRATCH/bin/python" -m synapse.app.homeserver --help >/dev/null || die "the installed Synapse does not start"
touch "$SCRATCH/.complete"

# venvs record their own path in scripts; we only ever run `<venv>/bin/python -m ...`, which does
# not depend on it, so renaming the finished venv into place is safe.
rm -rf "$TARGET"
mv "$SCRATCH" "$TARGET"
trap - EXIT
log "installed in $(($(date +%s) - started)) s: $TARGET"
printf '%s\n' "$TARGET"
