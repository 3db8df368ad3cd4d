#!/usr/bin/env bash
# Set up .venv (first run only) and run the whole test suite: unit tests, doctests and the
# notebooks through nbval, all in quick mode. Extra arguments go to pytest.
source "$(dirname "$0")/setup_env.sh" test
export FLGLM_QUICK=1 MPLBACKEND=Agg
exec python -m pytest --nbval-lax --nbval-current-env "$@"
