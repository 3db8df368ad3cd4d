"""The environment check that notebook 00 runs: one ``[OK]`` or ``[FAIL]`` line per check.

Introduced in notebook 00.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from importlib import metadata

__all__ = ["Check", "REQUIREMENTS", "check_environment", "report"]

#: distribution name -> minimum version, as in pyproject.toml.
REQUIREMENTS: dict[str, str] = {
    "torch": "2.4",
    "transformers": "5.0",
    "peft": "0.13",
    "cryptography": "42",
    "safetensors": "0.4",
    "tokenizers": "0.20",
    "numpy": "1.24",
    "matplotlib": "3.7",
    "ipywidgets": "8.0",
    "tqdm": "4.66",
}


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


def _check_package(name: str, minimum: str) -> Check:
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return Check(name, False, f"not installed; run: pip install '{name}>={minimum}'")
    if _version_tuple(version) < _version_tuple(minimum):
        return Check(name, False, f"{version} is older than {minimum}; run: pip install -U '{name}>={minimum}'")
    return Check(name, True, version)


def check_environment(requirements: dict[str, str] | None = None) -> list[Check]:
    """Check Python, each required package, the native GLM class and the device.

    Args:
        requirements: distribution -> minimum version; default :data:`REQUIREMENTS`.

    Returns:
        One :class:`Check` per item, in a stable order.

    Example:
        >>> checks = check_environment({"torch": "2.4"})
        >>> [c.name for c in checks][:2]
        ['python', 'torch']
        >>> str(check_environment({"no-such-package-xyz": "1.0"})[1])
        "[FAIL] no-such-package-xyz: not installed; run: pip install 'no-such-package-xyz>=1.0'"
    """
    requirements = REQUIREMENTS if requirements is None else requirements
    py = sys.version_info
    checks = [Check("python", py >= (3, 10), f"{py.major}.{py.minor}.{py.micro} (need 3.10 or newer)")]
    checks += [_check_package(name, minimum) for name, minimum in requirements.items()]
    if requirements is REQUIREMENTS:
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
