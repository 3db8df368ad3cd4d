# Sourced by lab.sh and test.sh: make (once) and activate the project's virtual environment.
# Usage: source scripts/setup_env.sh EXTRAS   (EXTRAS: "lab" or "test")
#
# Environment:
#   FLGLM_VENV   where the environment lives (default: .venv in the repository)
#   FLGLM_TORCH  which torch to install when the environment has none yet:
#                cpu   the CPU build, from the PyTorch CPU index (default on Linux without a
#                      working nvidia-smi: pip's default there is the multi-GB CUDA build)
#                cuda  pip's default build (default elsewhere: on macOS and Windows it is the
#                      right one, on Linux with an NVIDIA GPU it is the CUDA build)
#                skip  install no torch first; pip then picks its default with the kit
#                A torch already in the environment is never replaced (CI installs torch==2.13.0 first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLGLM_VENV:-$root/.venv}"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"

# Which torch build this machine wants: cpu or cuda (FLGLM_TORCH overrides the detection).
flglm_torch_choice() {
    local choice="${FLGLM_TORCH:-}"
    if [ -z "$choice" ]; then
        if [ "$(uname -s)" = Linux ] && ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; }; then
            choice=cpu
        else
            choice=cuda
        fi
    fi
    case "$choice" in
        cpu | cuda | skip) echo "$choice" ;;
        *) echo "setup: FLGLM_TORCH must be cpu, cuda or skip, not '$choice'" >&2; return 1 ;;
    esac
}

# Install torch before the kit, so that pip's resolver finds it satisfied and keeps it.
flglm_install_torch() {
    if python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
        return 0  # already there: keep it, whatever build it is
    fi
    local choice
    choice="$(flglm_torch_choice)"
    case "$choice" in
        skip) return 0 ;;
        cuda) echo "setup: installing torch with pip's default build (FLGLM_TORCH=cpu for the CPU build)"
              python -m pip install --quiet torch
              return 0 ;;
    esac
    echo "setup: no NVIDIA GPU found: installing the CPU build of torch from $TORCH_CPU_INDEX" \
         "(FLGLM_TORCH=cuda to install pip's default build instead)"
    if python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/", timeout=15)' \
            "$TORCH_CPU_INDEX" 2>/dev/null \
        && python -m pip install --quiet --timeout 30 --retries 1 torch --index-url "$TORCH_CPU_INDEX"; then
        return 0
    fi
    echo "setup: the PyTorch CPU index cannot be reached (or had no torch for this Python); installing" \
         "torch from the default index instead. On Linux that may be the larger CUDA build; it runs on" \
         "a CPU all the same." >&2
    python -m pip install --quiet torch
}

stamp="$venv/.flglm-installed-$1"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    python -m pip install --quiet --upgrade pip
    flglm_install_torch
    python -m pip install --quiet -e "$root[$1]"
    touch "$stamp"
fi
cd "$root"
