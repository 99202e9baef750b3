#!/usr/bin/env bash
# Installs what archspec needs and is missing: the package and its Python dependencies,
# PyTorch (CPU wheel, pinned), and graphviz's `dot`. Safe to run again: it skips what is there.
#   tools/setup.sh          runtime (package, torch, graphviz)
#   tools/setup.sh --test   the same plus the test dependencies
# ARCHSPEC_TORCH overrides the torch requirement (default torch==2.13.0); set it to the build for
# your platform (see pytorch.org), or to "skip" to leave torch alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

# Each step's output goes to a private temporary log, shown only when the step fails.
log=$(mktemp "${TMPDIR:-/tmp}/archspec-setup.XXXXXX")
trap 'rm -f "$log"' EXIT
quiet() { "$@" >"$log" 2>&1 || { cat "$log"; echo "setup: failed: $*" >&2; exit 1; }; }

echo "setup: installing archspec${extras} and its Python dependencies"
quiet "$PY" -m pip install --disable-pip-version-check -e ".${extras}"

# pyenv puts new console scripts on PATH only after a rehash
if command -v pyenv >/dev/null 2>&1; then pyenv rehash >/dev/null 2>&1 || true; fi

torch_req=${ARCHSPEC_TORCH:-torch==2.13.0}
if [ "$torch_req" != "skip" ] && ! "$PY" -c "import torch" 2>/dev/null; then
  # Pinned on purpose: an unpinned 'torch' pulls several GB of CUDA packages.
  echo "setup: installing $torch_req"
  quiet "$PY" -m pip install --disable-pip-version-check "$torch_req"
fi

if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing graphviz (dot)"
    quiet apt-get update
    quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y graphviz
  else
    echo "setup: graphviz's 'dot' is missing; install it (apt-get install graphviz," \
         "brew install graphviz, or https://graphviz.org/download/) for diagrams" >&2
  fi
fi
echo "setup: ready"
