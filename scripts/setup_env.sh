# Sourced by lab.sh and test.sh: make (once) and activate the project's virtual environment.
# Usage: source scripts/setup_env.sh EXTRAS   (EXTRAS: "lab" or "test")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLGLM_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
stamp="$venv/.flglm-installed-$1"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e "$root[$1]"
    touch "$stamp"
fi
cd "$root"
