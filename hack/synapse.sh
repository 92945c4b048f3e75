#!/usr/bin/env bash
# hack/synapse.sh — provide a real Synapse (Matrix homeserver) for the tests: a Python venv with a
# pinned `matrix-synapse` from PyPI, created ONCE under
#   ${REALM_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realm-operator}/synapse-<version>/
# and reused afterwards. Prints that venv's directory as the LAST line of stdout (progress goes to
# stderr), so `export REALM_OPERATOR_SYNAPSE_VENV="$(hack/synapse.sh | tail -n1)"` works.
#
# Concurrent runs wait for one install; the venv is made in a scratch directory and renamed into place
# only when `python -m synapse.app.homeserver --help` works (hack/lib/cached-build.sh).
#
# Needs python3 (>= 3.10, with the venv module) and access to PyPI, nothing else.
# Override the version with SYNAPSE_VERSION, the interpreter with PYTHON.
set -euo pipefail
# shellcheck source=hack/lib/cached-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"

SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
PYTHON="${PYTHON:-python3}"

install_synapse() {
  local venv="$1"
  command -v "$PYTHON" >/dev/null || cached_die "$PYTHON not found: install Python 3.10 or newer (with venv), or set PYTHON"
  "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null ||
    cached_die "$PYTHON must be Python 3.10 or newer with the venv and ensurepip modules (Debian/Ubuntu: apt-get install python3-venv)"
  cached_log "creating a venv for matrix-synapse==$SYNAPSE_VERSION (once; later runs reuse it)"
  "$PYTHON" -m venv "$venv"
  cached_log "installing matrix-synapse==$SYNAPSE_VERSION from PyPI"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
    "matrix-synapse==$SYNAPSE_VERSION" >&2 || cached_die "pip could not install matrix-synapse==$SYNAPSE_VERSION (is PyPI reachable?)"
  # venvs record their own path in scripts; we only ever run `<venv>/bin/python -m ...`, which does
  # not depend on it, so renaming the finished venv into place is safe.
  "$venv/bin/python" -m synapse.app.homeserver --help >/dev/null || cached_die "the installed Synapse does not start"
}

cached_build synapse "$CACHE/synapse-$SYNAPSE_VERSION" install_synapse bin/python
