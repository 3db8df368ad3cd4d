"""The environment check of notebook 00: its requirement list is the installed package's own.

Prepare / Execute / Assert.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from flglm_kit import checks as checks_module
from flglm_kit.checks import (DISTRIBUTION, Check, _parse_requirement, _version_tuple, check_environment,
                              kit_requirements, report)

ROOT = Path(__file__).resolve().parents[1]


def _declared(group: str | None = None) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [_parse_requirement(line)[0] for line in lines]


def test_installed_environment_passes():
    checks = check_environment()
    assert all(c.ok for c in checks), report(checks)
    assert report(checks).endswith("All checks passed.")


STALE = "the installed metadata is older than pyproject.toml: run pip install -e '.[test]'"


def test_the_requirements_are_the_installed_metadata_not_a_copy():
    core = kit_requirements()
    # Every core dependency pyproject.toml declares is checked (rouge-score was missing from the old copy).
    assert list(core) == _declared(), STALE
    assert core["transformers"] == ">=5.0,<6" and core["torch"].startswith(">=")
    names = [c.name for c in check_environment()]
    assert names[0] == "python" and names[1:1 + len(core)] == list(core)
    assert names[-2:] == ["GlmForCausalLM", "device"]


def test_extras_are_added_only_when_asked():
    core, lab, both = kit_requirements(), kit_requirements(["lab"]), kit_requirements(["lab", "test"])
    assert list(lab) == list(core) + _declared("lab"), STALE
    assert set(both) == set(core) | set(_declared("lab")) | set(_declared("test")), STALE
    assert "pytest" not in lab and "jupyterlab" not in core
    names = [c.name for c in check_environment(extras=["lab", "test"])]
    assert names.count("ipykernel") == 1 and names.count("pytest") == 1  # ipykernel is in both groups


def test_requirements_follow_the_metadata(monkeypatch):
    # Prepare: a kit whose metadata asks for a package that is not there, behind an extra, and a too-new torch.
    fake = ['torch<1', 'surely-not-installed-pkg (>=1.0)', 'nbval>=0.11; extra == "test"',
            'extra-only-pkg[fast]>=2; python_version >= "3.10" and extra == "gpu"']
    monkeypatch.setattr(checks_module.metadata, "requires", lambda name: fake if name == DISTRIBUTION else None)
    # Execute
    checks = {c.name: c for c in check_environment(extras=["gpu"])}
    # Assert
    assert list(checks)[:4] == ["python", "torch", "surely-not-installed-pkg", "extra-only-pkg"]
    assert "nbval" not in checks
    assert not checks["torch"].ok and "is not <1; run: pip install -U 'torch<1'" in checks["torch"].detail
    missing = checks["surely-not-installed-pkg"]
    assert missing.detail == "not installed; run: pip install 'surely-not-installed-pkg>=1.0'"


def test_an_uninstalled_kit_says_how_to_install_it(monkeypatch):
    def missing(name: str) -> list[str]:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(checks_module.metadata, "requires", missing)
    checks = check_environment()
    assert [c.name for c in checks] == ["python", DISTRIBUTION]
    assert not checks[1].ok and "pip install -e '.[lab]'" in checks[1].detail


def test_missing_and_old_packages_fail_with_a_fix():
    checks = check_environment({"torch": "999.0", "surely-not-installed-pkg": "1.0"})
    by_name = {c.name: c for c in checks}
    assert not by_name["torch"].ok and "pip install -U 'torch>=999.0'" in by_name["torch"].detail
    assert "is older than 999.0" in by_name["torch"].detail
    assert not by_name["surely-not-installed-pkg"].ok
    assert report(checks).endswith("2 check(s) failed: fix them before going on.")


@pytest.mark.parametrize("spec, ok", [(">=2.4", True), ("2.4", True), (">=2.4,<3", True), ("<2", False),
                                      (">2.13", False), ("==2.13", True), ("==2.*", True), ("!=2.13.0", False),
                                      ("~=2.10", True), ("~=2.14.0", False), ("<=2.13.0", True)])
def test_version_specifiers(monkeypatch, spec, ok):
    monkeypatch.setattr(checks_module.metadata, "version", lambda name: "2.13.0+cpu")
    assert check_environment({"torch": spec})[1].ok is ok


def test_requirement_lines_are_parsed():
    assert _parse_requirement('transformers<6,>=5.0') == ("transformers", ">=5.0,<6", None)
    assert _parse_requirement('pytest>=8.0; extra == "test"') == ("pytest", ">=8.0", "test")
    assert _parse_requirement("rouge-score") == ("rouge-score", "", None)
    with pytest.raises(ValueError, match="cannot read"):
        _parse_requirement("; nothing")


def test_version_parsing():
    assert _version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert _version_tuple("5.0.0rc1") == (5, 0, 0)
    assert _version_tuple("1.24") < _version_tuple("1.24.1")
    assert str(Check("x", True, "1.0")) == "[OK] x: 1.0"
