#!/usr/bin/env bash
# Creates .venv (if missing) and installs rtbench with every extra and the dev tools.
# torch is pinned to the CPU build first (2.13.0+cpu; RTBENCH_TORCH_INDEX names another
# index), so that the extras' torch requirement is already met and pip never downloads
# a multi-GB CUDA build; on a GPU machine install the torch build you want into .venv
# before running this. Nothing is installed again while pyproject.toml is unchanged
# since the last install (a stamp in .venv), so later runs start in seconds; delete
# .venv/.rtbench-setup to force it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"rtbench needs Python >= 3.10, found {sys.version.split()[0]}; set PYTHON=python3.10")
PY

STAMP=.venv/.rtbench-setup
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
    exit 0  # installed from this pyproject.toml already
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
echo "setup: upgrading pip in .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # PyPI's Linux torch is a CUDA build of several GB; the CPU build is "+cpu", from a
    # wheel pip already finds (a local mirror), else from PyTorch's CPU index.
    echo "setup: installing torch==2.13.0+cpu (the CPU build) into .venv"
    if ! .venv/bin/python -m pip install --quiet "torch==2.13.0+cpu" 2>/dev/null; then
        .venv/bin/python -m pip install --quiet "torch==2.13.0+cpu" \
            --extra-index-url "${RTBENCH_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
    fi
fi
echo "setup: installing rtbench, its extras and dev tools (.[all,dev]) into .venv"
.venv/bin/python -m pip install --quiet -e ".[all,dev]"
echo "$wanted" > "$STAMP"
