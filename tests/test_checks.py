from flglm_kit.checks import Check, _version_tuple, check_environment, report


def test_installed_environment_passes():
    checks = check_environment()
    assert all(c.ok for c in checks), report(checks)
    assert report(checks).endswith("All checks passed.")


def test_missing_and_old_packages_fail_with_a_fix():
    checks = check_environment({"torch": "999.0", "surely-not-installed-pkg": "1.0"})
    by_name = {c.name: c for c in checks}
    assert not by_name["torch"].ok and "pip install -U 'torch>=999.0'" in by_name["torch"].detail
    assert not by_name["surely-not-installed-pkg"].ok
    assert report(checks).endswith("2 check(s) failed: fix them before going on.")


def test_version_parsing():
    assert _version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert _version_tuple("5.0.0rc1") == (5, 0, 0)
    assert _version_tuple("1.24") < _version_tuple("1.24.1")
    assert str(Check("x", True, "1.0")) == "[OK] x: 1.0"
