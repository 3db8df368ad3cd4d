"""The code is linted (pyproject.toml [tool.ruff]): ruff must pass on the repository, notebooks included."""

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_on_the_repository():
    assert importlib.util.find_spec("ruff") is not None, "ruff is in the test extra: pip install -e '.[test]'"
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_lint_rules_are_the_agreed_ones():
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff["line-length"] == 120 and ruff["target-version"] == "py310"
    assert {"E", "F", "W", "B", "UP"} <= set(ruff["lint"]["select"])
