#!/usr/bin/env bash
# Create or refresh .venv in the repository root.
#  - installs the pinned CPU build of torch first (an unpinned torch pulls GBs of CUDA wheels),
#  - then the project (editable) with its [dev] extras,
#  - skips all of it when .venv is healthy and pyproject.toml has not changed since the last set-up,
#  - rebuilds from scratch when .venv is broken (python missing, imports failing).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY="$VENV/bin/python"
TORCH_PIN="torch==2.13.0"
PYTHON="${PYTHON:-python3}"
stamp_value() { cat pyproject.toml .ci/venv.sh | sha256sum | cut -c1-16; }
STAMP="$VENV/.xrdsolve-setup-stamp"

healthy() {
    [ -x "$PY" ] && "$PY" -c "import torch, xrdsolve.refine, xrdsolve.conditioning, xrdsolve.cli" >/dev/null 2>&1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ] && healthy; then
    exit 0
fi
if [ -d "$VENV" ] && ! [ -x "$PY" ] || { [ -x "$PY" ] && ! "$PY" -c "import sys" >/dev/null 2>&1; }; then
    echo "venv: $VENV is broken; rebuilding it" >&2
    rm -rf "$VENV"
fi
if [ ! -d "$VENV" ]; then
    echo "venv: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
find_links=()
[ -d /opt/wheels ] && find_links=(--find-links /opt/wheels)
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" >/dev/null 2>&1; then
    echo "venv: installing $TORCH_PIN (CPU build)" >&2
    "$PY" -m pip install -q "${find_links[@]}" "$TORCH_PIN"
fi
echo "venv: installing xrdsolve and its dependencies" >&2
"$PY" -m pip install -q "${find_links[@]}" -e ".[dev,dask]"
if ! healthy; then
    echo "venv: installed, but importing xrdsolve still fails; rebuilding once from scratch" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$PY" -m pip install -q "${find_links[@]}" "$TORCH_PIN"
    "$PY" -m pip install -q "${find_links[@]}" -e ".[dev,dask]"
    healthy
fi
stamp_value > "$STAMP"
