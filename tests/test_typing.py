"""The library is typed (STYLE.md): mypy must pass on flglm_kit."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_passes_on_the_library():
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy", "flglm_kit"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
