#!/usr/bin/env bash
# Set up .venv (first run only) and open the notebooks in JupyterLab, starting at notebook 00.
source "$(dirname "$0")/setup_env.sh" lab
exec python -m jupyter lab notebooks/00_setup_check.ipynb "$@"
