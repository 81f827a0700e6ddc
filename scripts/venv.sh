#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install what the calling script needs
# from the project's own files. Sourced by scripts/demo.sh (the runtime only) and scripts/test.sh (the
# runtime plus the test extra).
#
# Settings (environment variables):
#   SEGMENTAI_VENV     where the environment lives (default: .venv in the repository)
#   SEGMENTAI_EXTRAS   extras of the segmentai package to add, comma-separated (test.sh: "test")
#   SEGMENTAI_TORCH    which PyTorch build to install when none is there:
#                        auto (default): the CUDA build where an NVIDIA GPU answers (nvidia-smi), else the CPU build
#                        cpu:  the CPU build (about 200 MB) from PyTorch's CPU wheel index ($SEGMENTAI_TORCH_CPU_INDEX,
#                              default https://download.pytorch.org/whl/cpu); where that index cannot be reached,
#                              the configured package index's torch (on an ordinary Linux machine that is the CUDA
#                              build, about 2.6 GiB of wheels: the script says so before)
#                        cuda: the CUDA build from the configured index (Linux: about 2.6 GiB of wheels)
#                      An installed torch >= 2.2 is always kept.
#   SEGMENTAI_DRY_RUN=1  print the plan and stop without installing anything
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEGMENTAI_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
extras="${SEGMENTAI_EXTRAS:-}"
torch_choice="${SEGMENTAI_TORCH:-auto}"
cpu_index="${SEGMENTAI_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
torch_version="2.13.0"

# --- the plan -----------------------------------------------------------------------------------
# Re-install only when the project's dependency files changed since the last install, or when an
# extra is asked for that the last install did not include.
stamp="$venv/.segmentai-installed"
digest="$(cat "$root/pyproject.toml" "$root/training/pyproject.toml" "$root/scripts/venv.sh" 2>/dev/null | sha256sum | cut -c1-16)"
installed_digest="" installed_extras=""
if [ -f "$stamp" ]; then
    read -r installed_digest installed_extras < "$stamp" || true
fi
needs_install=0
[ "$installed_digest" = "$digest" ] || needs_install=1
for extra in ${extras//,/ }; do
    case ",$installed_extras," in *",$extra,"*) ;; *) needs_install=1 ;; esac
done
# Keep every extra installed before: the demo after the tests must not remove the test extra.
all_extras="$(printf '%s\n' ${installed_extras//,/ } ${extras//,/ } | sort -u | paste -sd, -)"

torch_step="keep"
if [ "$needs_install" -eq 1 ] && ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch" 2>/dev/null; }; then
    case "$torch_choice" in
        auto)
            if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
                torch_step="cuda"
            else
                torch_step="cpu"
            fi ;;
        cpu|cuda) torch_step="$torch_choice" ;;
        *) echo "SEGMENTAI_TORCH must be auto, cpu or cuda, not '$torch_choice'" >&2; exit 2 ;;
    esac
fi

describe_plan() {
    echo "Set-up plan for $venv:"
    case "$torch_step" in
        keep) echo "  torch: keep the installed one" ;;
        cuda) echo "  torch: torch==$torch_version, CUDA build (an NVIDIA GPU answered or SEGMENTAI_TORCH=cuda):" \
                   "about 2.6 GiB of wheels on Linux" ;;
        cpu)  echo "  torch: torch==$torch_version, CPU build from $cpu_index (about 200 MB);" \
                   "if that index cannot be reached, torch==$torch_version from the configured index" \
                   "(on an ordinary Linux machine the CUDA build, about 2.6 GiB; SEGMENTAI_TORCH=cuda says so outright)" ;;
    esac
    if [ "$needs_install" -eq 1 ]; then
        echo "  packages: segmentai${all_extras:+[$all_extras]} (editable) and segmentai-train," \
             "torch pinned to the one installed"
        case ",$all_extras," in
            *",test,"*) echo "  test extra: pytest, slicer-core + vtk, nnunetv2, trame-slicer, playwright, ruff ..." ;;
            *) echo "  runtime only (scripts/test.sh adds the test extra)" ;;
        esac
    else
        echo "  packages: up to date (segmentai${installed_extras:+[$installed_extras]})"
    fi
}

if [ "${SEGMENTAI_DRY_RUN:-0}" = "1" ]; then
    describe_plan
    echo "SEGMENTAI_DRY_RUN=1: nothing installed."
    exit 0
fi

# --- the installation ---------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating virtual environment in $venv"
    "$python" -m venv "$venv"
fi
if [ "$needs_install" -eq 1 ]; then
    describe_plan
    echo "Installing into $venv (pip's output: $venv/install.log); this takes a minute or more"
    # pip's chatter goes to the log; each step is announced; on failure the log's tail is shown.
    exec 3>&1 4>&2 >"$venv/install.log" 2>&1
    say() { echo "$@" >&3; }
    trap 'exec 1>&3 2>&4; echo "installation failed; last lines of $venv/install.log:" >&2; tail -20 "$venv/install.log" >&2' ERR
    say "  [1/4] pip"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    case "$torch_step" in
        cpu)
            say "  [2/4] torch $torch_version (CPU build)"
            if ! "$venv/bin/python" -m pip install --quiet --timeout 10 --retries 0 --index-url "$cpu_index" \
                    "torch==$torch_version"; then
                say "        $cpu_index cannot be reached: torch==$torch_version from the configured index"
                "$venv/bin/python" -m pip install --quiet "torch==$torch_version" || \
                    "$venv/bin/python" -m pip install --quiet "torch>=2.2"
            fi ;;
        cuda)
            say "  [2/4] torch $torch_version (CUDA build, about 2.6 GiB)"
            "$venv/bin/python" -m pip install --quiet "torch==$torch_version" || \
                "$venv/bin/python" -m pip install --quiet "torch>=2.2" ;;
        keep) say "  [2/4] torch: keeping $("$venv/bin/python" -c 'import torch; print(torch.__version__)')" ;;
    esac
    # Keep the installed torch: the test extra pulls nnunetv2 → timm → torchvision, whose newest
    # release would otherwise upgrade torch (and bring CUDA wheels).
    constraints="$venv/torch-constraints.txt"
    "$venv/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
    say "  [3/4] segmentai${all_extras:+[$all_extras]}"
    "$venv/bin/python" -m pip install --quiet -e "$root${all_extras:+[$all_extras]}" -c "$constraints"
    say "  [4/4] segmentai-train"
    if [ -f "$root/training/pyproject.toml" ]; then
        "$venv/bin/python" -m pip install --quiet -e "$root/training" -c "$constraints"
    fi
    echo "$digest $all_extras" > "$stamp"
    trap - ERR
    exec 1>&3 2>&4 3>&- 4>&-
fi
export PATH="$venv/bin:$PATH"
