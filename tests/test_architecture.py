"""The rooms of ARCHITECTURE.md §2: each module imports only the kit modules its room allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flglm_kit"

#: module (dotted, without the package) -> kit modules it may import (prefixes)
ALLOWED: dict[str, tuple[str, ...]] = {
    "wire": (),
    "losses": (),
    "device": (),
    "optim": (),
    "noise": (),
    "crypto": ("wire", "crypto"),
    "families": ("losses", "families"),
    "models": (),
    "split": ("losses", "families"),
    "client": ("wire", "crypto", "split", "losses", "noise", "optim"),
    "server": ("wire", "crypto", "split", "losses", "optim", "scheduling", "aggregation"),
    "fedavg": (),
    "aggregation": ("wire", "fedavg"),
    "fedclient": ("client", "crypto", "fedavg", "optim", "wire"),
    "checkpoint": (),
    "stats": (),
    "peft_common": ("split",),
    "lora": ("split", "peft_common"),
    "prefix": ("split", "peft_common"),
    "scheduling": ("wire", "split", "losses", "optim", "compute", "subserver", "replicas"),
    "subserver": ("wire", "split", "losses", "optim", "compute", "models", "families", "subserver"),
    "replicas": ("wire", "split", "losses", "optim", "compute", "subserver", "replicas"),
    "compute": ("wire", "split", "losses", "optim"),
    "rounds": ("client",),
    "batched": ("client", "rounds", "split", "losses", "wire"),
    "transport": ("wire", "crypto"),
}
#: the teaching rooms: profiling and figures stay out of the parties (they wrap them from outside)
ALLOWED.update({"profiling": ("crypto", "wire"), "figures": ("profiling",)})
#: rooms that may not import the parties at all
NO_PARTIES = ("data", "metrics", "pretrained", "finetune", "checks")
#: the federation layer builds the parties but never the attacks (the attacks read its recorded view)
NO_ATTACKS = ("federation", "generation", "experiments")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _runtime_nodes(tree: ast.AST):
    """Every node, except those under ``if TYPE_CHECKING:`` (annotations only: nothing is imported)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _kit_imports(path: Path) -> set[str]:
    """Kit modules imported by ``path`` at run time, without the ``flglm_kit.`` prefix."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(n.removeprefix("flglm_kit.") for n in names if n.startswith("flglm_kit.") or n == "flglm_kit")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[_module_name(p) or "flglm_kit" for p in MODULES])
def test_each_module_imports_only_what_its_room_allows(path):
    name = _module_name(path)
    room = name.split(".")[0]
    imports = _kit_imports(path)
    if room in ALLOWED:
        wrong = {i for i in imports if not any(i == a or i.startswith(a + ".") for a in ALLOWED[room])}
        assert not wrong, f"flglm_kit.{name} imports {sorted(wrong)}; its room allows {ALLOWED[room]}"
    if room in NO_PARTIES:
        wrong = {i for i in imports if i.split(".")[0] in ("client", "server", "transport", "attacks")}
        assert not wrong, f"flglm_kit.{name} imports the parties or the attacks: {sorted(wrong)}"
    if room in NO_ATTACKS:
        wrong = {i for i in imports if i.split(".")[0] == "attacks"}
        assert not wrong, f"flglm_kit.{name} imports the attacks: {sorted(wrong)}"


def test_the_table_covers_the_core_modules():
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    for core in ("wire", "losses", "crypto", "split", "client", "server", "transport", "scheduling", "compute"):
        assert core in top and core in ALLOWED
