"""The README's "library from a script" example runs, and the README shows the file as it is.

Prepare / Execute / Assert.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart.py"


def test_the_readme_shows_the_quickstart_file_as_it_is():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The library from a script"):]
    shown = re.search(r"```python\n(.*?)```", section, re.S)
    assert shown is not None, "the section has no python code block"
    assert shown.group(1) == EXAMPLE.read_text(), "copy examples/quickstart.py into the README's code block"


def test_the_quickstart_trains_two_clients_and_generates():
    # Execute: as a user would, in quick mode, in a fresh interpreter
    env = {**os.environ, "FLGLM_QUICK": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    # Assert: the split's table, a falling loss on each client, then a continuation of the prompt
    assert any(line.startswith("trunk") and "server" in line for line in lines)
    steps = [dict(re.findall(r"(hospital-[ab]) ([0-9.]+)", line)) for line in lines if line.startswith("step ")]
    assert len(steps) == 3
    for client_id in ("hospital-a", "hospital-b"):
        assert float(steps[-1][client_id]) < float(steps[0][client_id]) / 2, steps
    assert lines[-1].startswith("Walked the mill pond") and len(lines[-1].split()) >= 6, lines[-1]
