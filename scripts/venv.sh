#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install everything it needs
# from the project's own files. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEGMENTAI_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "Creating virtual environment in $venv"
    "$python" -m venv "$venv"
fi
# Re-install only when the project's dependency files changed since the last install.
stamp="$venv/.segmentai-installed"
digest="$(cat "$root/pyproject.toml" "$root/training/pyproject.toml" "$root/scripts/venv.sh" 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "Installing SegmentAI and its dependencies into $venv (log: $venv/install.log)"
    # pip's chatter goes to the log; on failure the log's tail is shown.
    exec 3>&1 4>&2 >"$venv/install.log" 2>&1
    trap 'exec 1>&3 2>&4; echo "installation failed; last lines of $venv/install.log:" >&2; tail -20 "$venv/install.log" >&2' ERR
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    # torch first, from the local CPU build when it is there: a loose request would pull
    # several GB of CUDA wheels. Any torch >= 2.2 already installed is kept.
    if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
        "$venv/bin/python" -m pip install --quiet "torch==2.13.0" || "$venv/bin/python" -m pip install --quiet "torch>=2.2"
    fi
    # Keep the installed torch: the test extra pulls nnunetv2 → timm → torchvision, whose newest
    # release would otherwise upgrade torch (and bring CUDA wheels).
    constraints="$venv/torch-constraints.txt"
    "$venv/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
    "$venv/bin/python" -m pip install --quiet -e "$root[test]" -c "$constraints"
    if [ -f "$root/training/pyproject.toml" ]; then
        "$venv/bin/python" -m pip install --quiet -e "$root/training"
    fi
    echo "$digest" > "$stamp"
    trap - ERR
    exec 1>&3 2>&4 3>&- 4>&-
fi
export PATH="$venv/bin:$PATH"
