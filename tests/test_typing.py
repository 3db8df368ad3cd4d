"""The library is typed (STYLE.md): mypy must pass on flglm_kit, in strict mode."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_configured_strict():
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True
    # torch, transformers and peft are called from typed code; nothing else is let off
    assert set(mypy["untyped_calls_exclude"]) == {"torch", "transformers", "peft"}


@pytest.mark.slow
def test_mypy_passes_on_the_library():
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy", "flglm_kit"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
