"""Docs that are true: every "Introduced in notebook NN" pointer names a notebook that exists and
uses the symbol, no docstring cites a design file the repository does not have, and the README
points contributors to ARCHITECTURE.md."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flglm_kit"
POINTER = re.compile(r"[Ii]ntroduced in notebooks? (\d\d)")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _notebook_code(number: str) -> str | None:
    found = sorted((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
    if not found:
        return None
    cells = json.loads(found[0].read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _pointers() -> list[tuple[str, str, list[str], str]]:
    """(where, notebook number, names the notebook must use (any of them), module) for every pointer."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        public = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                  and not n.name.startswith("_")]
        for number in POINTER.findall(ast.get_docstring(tree) or ""):
            out.append((module, number, [module.split(".")[-1], *public], module))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                for number in POINTER.findall(ast.get_docstring(node) or ""):
                    out.append((f"{module}.{node.name}", number, [node.name], module))
    return out


POINTERS = _pointers()


def test_there_are_pointers_to_check():
    assert len(POINTERS) > 20


@pytest.mark.parametrize("where, number, names, module", POINTERS, ids=[f"{p[0]}->{p[1]}" for p in POINTERS])
def test_introduced_in_notebook_pointers_are_true(where, number, names, module):
    code = _notebook_code(number)
    assert code is not None, f"{where} says it is introduced in notebook {number}, which does not exist"
    assert any(re.search(rf"\b{re.escape(n)}\b", code) for n in names), (
        f"{where} says it is introduced in notebook {number}, but that notebook's code never uses {names}")


def test_no_docstring_cites_a_design_file_the_repository_lacks():
    for path in PACKAGE.rglob("*.py"):
        for cited in re.findall(r"\b([A-Z]+\.md)\b", path.read_text()):
            assert (ROOT / cited).exists(), f"{path.relative_to(ROOT)} cites {cited}, which is not in the repository"


def test_the_readme_points_contributors_to_the_architecture():
    assert "ARCHITECTURE.md" in (ROOT / "README.md").read_text()
    assert (ROOT / "ARCHITECTURE.md").exists()


FROZEN_BAR = re.compile(r"\b\d{1,2}%\|")  # "  0%|          | 0/8": a bar below 100 % as text


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_no_committed_output_shows_a_progress_bar_frozen_below_100_percent(notebook):
    # A widget bar saves only the text it had when first shown; a reader on the web sees "0 %".
    # Notebooks use flglm_kit.widgets.progress (or print a closing line) instead.
    for i, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            assert not FROZEN_BAR.search(text), f"cell {i} of {notebook.name} saved a progress bar at: {text[:80]!r}"


SETUP = "# Setup: seed, device, versions, quick mode."


def test_every_notebook_has_the_same_one_setup_cell_and_sets_no_threads():
    # A learner copies the setup cell; thread settings belong to a timing (profiling.threads) or
    # to the test command, not to a whole lesson.
    setups = {}
    for notebook in NOTEBOOKS:
        code = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        found = [src for src in code if src.startswith(SETUP)]
        assert len(found) == 1, f"{notebook.name} has {len(found)} setup cells (cells starting {SETUP!r})"
        setups[notebook.name] = found[0]
        assert not any("set_num_threads" in src for src in code), f"{notebook.name} sets torch's threads"
    assert len(set(setups.values())) == 1, f"the setup cells differ: {sorted(setups)}"
