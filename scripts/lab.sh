#!/usr/bin/env bash
# Set up .venv (first run only) and open JupyterLab on the repository (notebooks, datasheets and
# library in its file browser), starting at notebook 00. Extra arguments go to `jupyter lab`.
#
# Detected, not asked: as root (containers, Codespaces) it adds --allow-root; on a machine with no
# display (Linux without DISPLAY or WAYLAND_DISPLAY, an SSH session on macOS, a container or
# Codespaces) it adds --no-browser and points to the URL that Jupyter prints.
source "$(dirname "$0")/setup_env.sh" lab   # also: set -euo pipefail, $root, $venv, cd "$root"

flglm_headless() {
    if [ -n "${CODESPACES:-}" ] || [ -n "${REMOTE_CONTAINERS:-}" ] || [ -f /.dockerenv ] \
        || [ -f /run/.containerenv ]; then
        return 0
    fi
    case "$(uname -s)" in
        Darwin) [ -n "${SSH_CONNECTION:-}${SSH_TTY:-}" ] ;;
        Linux) [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] ;;
        *) return 1 ;;
    esac
}

# No news pop-up and no update check: the kit runs offline (a settings override in the venv).
python - "$venv/share/jupyter/lab/settings/overrides.json" <<'EOF'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
settings = json.loads(path.read_text()) if path.is_file() else {}
wanted = {"fetchNews": "false", "checkForUpdates": False}
plugin = settings.setdefault("@jupyterlab/apputils-extension:notification", {})
if any(plugin.get(key) != value for key, value in wanted.items()):
    plugin.update(wanted)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")
EOF

# The file browser at the repository root; the start page (also the URL printed) is notebook 00.
args=(--ServerApp.root_dir="$root" --LabApp.default_url=/lab/tree/notebooks/00_setup_check.ipynb)
if [ "$(id -u)" = 0 ]; then
    args+=(--allow-root)
fi
if flglm_headless; then
    args+=(--no-browser)
    echo "lab.sh: no display here, so no browser is opened: open the http://127.0.0.1:.../00_setup_check.ipynb" \
         "URL that Jupyter prints below (with its token) in your browser; from another machine, forward" \
         "the port first (ssh -L 8888:localhost:8888; Codespaces forwards it for you)."
fi
exec python -m jupyter lab "${args[@]}" "$@"
