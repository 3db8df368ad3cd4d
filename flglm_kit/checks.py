"""The environment check that notebook 00 runs: one ``[OK]`` or ``[FAIL]`` line per check.

Introduced in notebook 00.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

__all__ = ["Check", "DISTRIBUTION", "check_environment", "kit_requirements", "report"]

#: the kit's own distribution, whose installed metadata lists what it needs
DISTRIBUTION = "flglm-kit"

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^;()]*)\)?\s*(?:;(.*))?$")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_CLAUSE = re.compile(r"^(===|==|!=|~=|<=|>=|<|>)?\s*([0-9][^\s]*)$")


def _parse_requirement(line: str) -> tuple[str, str, str | None]:
    """``'transformers<6,>=5.0; extra == "x"'`` -> ``("transformers", ">=5.0,<6", "x")``.

    Only the ``extra`` marker is read; the kit's requirements use no other.
    """
    match = _REQUIREMENT.match(line)
    if match is None:
        raise ValueError(f"cannot read the requirement {line!r}")
    name, spec, marker = match.groups()
    clauses = sorted((c.strip() for c in spec.split(",") if c.strip()), key=lambda c: not c.startswith(">"))
    extra = _EXTRA_MARKER.search(marker or "")
    return name, ",".join(clauses), extra.group(1) if extra else None


def kit_requirements(extras: Sequence[str] = (), *, distribution: str = DISTRIBUTION) -> dict[str, str]:
    """What the installed kit requires: distribution -> version specifier, from its own metadata.

    The list is read from the installed package (``importlib.metadata.requires``), so it is the
    one in ``pyproject.toml`` at install time, never a copy that drifts from it.

    Args:
        extras: optional-dependency groups to add to the core requirements, e.g. ``("lab",)``.
        distribution: whose requirements to read (default: this kit's).

    Returns:
        ``{"torch": ">=2.4", "transformers": ">=5.0,<6", ...}`` in the metadata's order; a
        package named by several groups appears once.

    Raises:
        importlib.metadata.PackageNotFoundError: ``distribution`` is not installed.

    Example:
        >>> core = kit_requirements()
        >>> core["torch"].startswith(">=") and "pytest" not in core
        True
        >>> "pytest" in kit_requirements(["test"])
        True
    """
    out: dict[str, str] = {}
    for line in metadata.requires(distribution) or []:
        name, spec, extra = _parse_requirement(line)
        if extra is None or extra in extras:
            out.setdefault(name, spec)
    return out


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'OK' if self.ok else 'FAIL'}] {self.name}: {self.detail}"


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = len(piece) - len(piece.lstrip("0123456789"))
        if digits == 0:
            break
        parts.append(int(piece[:digits]))
        if digits < len(piece):  # "0rc1": a pre-release ends the comparable part
            break
    return tuple(parts)


def _clauses(spec: str) -> list[tuple[str, str]]:
    """``">=5.0,<6"`` -> ``[(">=", "5.0"), ("<", "6")]``; a bare version is a minimum."""
    out = []
    for clause in (c.strip() for c in spec.split(",") if c.strip()):
        match = _CLAUSE.match(clause)
        if match is None:
            raise ValueError(f"cannot read the version specifier {clause!r}")
        out.append((match.group(1) or ">=", match.group(2)))
    return out


def _satisfies(version: str, op: str, bound: str) -> bool:
    have, want = _version_tuple(version), _version_tuple(bound.rstrip(".*"))
    if op in ("==", "===") and bound.endswith(".*"):
        return have[: len(want)] == want
    if op == "~=":  # ~=2.4 means >=2.4 and ==2.*
        return have >= want and have[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)]
    width = max(len(have), len(want))  # 2.4 == 2.4.0
    have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
    return {">=": have >= want, ">": have > want, "<=": have <= want, "<": have < want,
            "==": have == want, "===": have == want, "!=": have != want}[op]


def _check_package(name: str, spec: str) -> Check:
    clauses = _clauses(spec)
    wanted = ",".join(op + bound for op, bound in clauses)
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return Check(name, False, f"not installed; run: pip install '{name}{wanted}'")
    for op, bound in clauses:
        if not _satisfies(version, op, bound):
            why = f"older than {bound}" if op in (">=", ">", "~=") else f"not {op}{bound}"
            return Check(name, False, f"{version} is {why}; run: pip install -U '{name}{wanted}'")
    return Check(name, True, version)


def check_environment(requirements: dict[str, str] | None = None, *, extras: Sequence[str] = ()) -> list[Check]:
    """Check Python, each required package, the native GLM class and the device.

    Args:
        requirements: distribution -> version specifier (``">=2.4"``, ``">=5.0,<6"``, or a bare
            minimum ``"2.4"``); default: the installed kit's own requirements
            (:func:`kit_requirements`), so the list is the one ``pyproject.toml`` declares.
        extras: with the default requirements, also check these optional groups (``"lab"``,
            ``"test"``).

    Returns:
        One :class:`Check` per item, in a stable order.

    Introduced in notebook 00.

    Example:
        >>> checks = check_environment({"torch": "2.4"})
        >>> [c.name for c in checks][:2]
        ['python', 'torch']
        >>> str(check_environment({"no-such-package-xyz": "1.0"})[1])
        "[FAIL] no-such-package-xyz: not installed; run: pip install 'no-such-package-xyz>=1.0'"
    """
    py = sys.version_info
    checks = [Check("python", py >= (3, 10), f"{py.major}.{py.minor}.{py.micro} (need 3.10 or newer)")]
    if requirements is not None:
        return checks + [_check_package(name, spec) for name, spec in requirements.items()]
    try:
        wanted = kit_requirements(extras)
    except metadata.PackageNotFoundError:
        checks.append(Check(DISTRIBUTION, False, "not installed, so its requirements are unknown; "
                            "run: pip install -e '.[lab]' in the repository (or bash scripts/lab.sh)"))
        return checks
    checks += [_check_package(name, spec) for name, spec in wanted.items()]
    try:
        importlib.import_module("transformers").GlmForCausalLM  # noqa: B018
        checks.append(Check("GlmForCausalLM", True, "transformers has the native GLM"))
    except (ImportError, AttributeError) as err:
        checks.append(Check("GlmForCausalLM", False, f"missing ({err}); upgrade transformers"))
    from flglm_kit.device import get_device

    checks.append(Check("device", True, f"{get_device()} (a GPU only makes things faster)"))
    return checks


def report(checks: list[Check]) -> str:
    """The checks as text, one line each, and a last line saying whether all passed."""
    lines = [str(c) for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append("All checks passed." if failed == 0 else f"{failed} check(s) failed: fix them before going on.")
    return "\n".join(lines)
