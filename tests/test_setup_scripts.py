"""The two commands do the right thing on a fresh machine: which torch build setup_env.sh installs,
and how lab.sh starts JupyterLab (as root, headless, at the repository root).

The scripts run for real, under bash, against a fake virtual environment whose ``python`` only
records its arguments (and answers the scripts' probes as each case says), with stand-ins for
``uname``, ``id`` and ``nvidia-smi`` on a PATH that holds nothing else. Nothing is installed.
Prepare / Execute / Assert.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"

BASH = shutil.which("bash") or "/bin/bash"
STUB_PYTHON = "#!" + BASH + r"""
printf 'python %s\n' "$*" >> "$STUB_LOG"
case "$1" in
    -) exec "$REAL_PYTHON" "$@" ;;  # lab.sh's settings writer: run it for real
    -c) case "$2" in
            *find_spec*) [ "$STUB_TORCH" = present ] ;;
            *urlopen*) [ "$STUB_CPU_INDEX" != unreachable ] ;;
            *) exit 0 ;;
        esac ;;
    -m) case " $* " in
            *" $CPU_INDEX_ARGS "*) [ "$STUB_CPU_INDEX" = ok ] ;;
            *) exit 0 ;;
        esac ;;
esac
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fake venv, a PATH of stand-ins, and a runner for `bash <script>` inside them."""
    venv, tools = tmp_path / "venv", tmp_path / "tools"
    (venv / "bin").mkdir(parents=True)
    tools.mkdir()
    _write(venv / "bin" / "python", STUB_PYTHON)
    (venv / "bin" / "activate").write_text(f'PATH="{venv / "bin"}:$PATH"\n')
    _write(tools / "uname", '#!/bin/sh\necho "$STUB_UNAME"\n')
    _write(tools / "id", '#!/bin/sh\necho "$STUB_UID"\n')
    for tool in ("dirname", "touch", "cat"):
        os.symlink(shutil.which(tool), tools / tool)  # type: ignore[arg-type]
    log = tmp_path / "log"

    def run(script: str, *args: str, gpu: str | None = None, **env: str) -> tuple[subprocess.CompletedProcess[str],
                                                                              list[str]]:
        if gpu is not None:  # an nvidia-smi that works ("ok") or fails ("broken")
            _write(tools / "nvidia-smi", f"#!/bin/sh\nexit {0 if gpu == 'ok' else 9}\n")
        full = {"PATH": str(tools), "HOME": str(tmp_path), "FLGLM_VENV": str(venv), "STUB_LOG": str(log),
                "REAL_PYTHON": sys.executable, "CPU_INDEX_ARGS": CPU_INDEX, "STUB_UNAME": "Linux",
                "STUB_UID": "1000", "STUB_TORCH": "missing", "STUB_CPU_INDEX": "ok", **env}
        log.write_text("")
        done = subprocess.run([BASH, str(ROOT / "scripts" / script), *args], env=full, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        return done, log.read_text().splitlines()

    run.venv = venv  # type: ignore[attr-defined]
    return run


def _torch_installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("python -m pip install") and " torch" in c]


@pytest.mark.parametrize("case, expected", [
    ({}, [CPU_INDEX]),  # Linux, no nvidia-smi: the CPU build
    ({"gpu": "broken"}, [CPU_INDEX]),  # nvidia-smi there but failing: no usable GPU
    ({"gpu": "ok"}, ["default"]),  # a working NVIDIA GPU: pip's default (CUDA) build
    ({"STUB_UNAME": "Darwin"}, ["default"]),  # macOS: plain pip
    ({"STUB_CPU_INDEX": "unreachable"}, ["default"]),  # the CPU index cannot be reached: fall back
    ({"STUB_CPU_INDEX": "fails"}, [CPU_INDEX, "default"]),  # reached, but pip failed there: fall back
    ({"STUB_TORCH": "present"}, []),  # torch already installed (CI): keep it
    ({"FLGLM_TORCH": "skip"}, []),
    ({"FLGLM_TORCH": "cuda"}, ["default"]),
    ({"FLGLM_TORCH": "cpu", "gpu": "ok"}, [CPU_INDEX]),
])
def test_setup_installs_the_torch_build_the_machine_wants(sandbox, case, expected):  # type: ignore[no-untyped-def]
    # Execute: test.sh sources setup_env.sh, then runs pytest (the stub records it)
    done, calls = sandbox("test.sh", "--version", **case)
    # Assert: torch first (or not at all), then the kit, then the test run
    assert done.returncode == 0, done.stderr
    torch = _torch_installs(calls)
    assert [CPU_INDEX if CPU_INDEX in c else "default" for c in torch] == expected, calls
    kit = calls.index(f"python -m pip install --quiet -e {ROOT}[test]")
    assert all(calls.index(c) < kit for c in torch)
    assert calls[-1] == "python -m pytest --nbval-lax --nbval-current-env --version"
    fell_back = case.get("STUB_CPU_INDEX") in ("unreachable", "fails") and CPU_INDEX in expected + [
        CPU_INDEX if case.get("STUB_CPU_INDEX") == "unreachable" else ""]
    assert ("cannot be reached" in done.stderr) == fell_back
    assert (sandbox.venv / ".flglm-installed-test").exists()


def test_setup_says_why_it_falls_back(sandbox):  # type: ignore[no-untyped-def]
    done, _ = sandbox("test.sh", STUB_CPU_INDEX="unreachable")
    assert "no NVIDIA GPU found: installing the CPU build" in done.stdout
    assert "PyTorch CPU index cannot be reached" in done.stderr and "default index instead" in done.stderr


def test_setup_rejects_an_unknown_torch_choice(sandbox):  # type: ignore[no-untyped-def]
    done, calls = sandbox("test.sh", FLGLM_TORCH="rocm")
    assert done.returncode != 0 and "FLGLM_TORCH must be cpu, cuda or skip, not 'rocm'" in done.stderr
    assert not _torch_installs(calls) and not any("pytest" in c for c in calls)


def test_a_fresh_stamp_installs_nothing(sandbox):  # type: ignore[no-untyped-def]
    sandbox("test.sh")
    done, calls = sandbox("test.sh")
    assert done.returncode == 0 and not any("pip" in c for c in calls), calls


def _lab_args(calls: list[str]) -> list[str]:
    (line,) = [c for c in calls if c.startswith("python -m jupyter lab")]
    return line.split()[4:]


def _headless_here(env: dict[str, str]) -> bool:
    container = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    return container or "CODESPACES" in env or not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


@pytest.mark.parametrize("env", [{}, {"STUB_UID": "0"}, {"DISPLAY": ":0"}, {"WAYLAND_DISPLAY": "wayland-0"},
                                 {"DISPLAY": ":0", "CODESPACES": "true"}])
def test_lab_opens_the_repository_root_at_notebook_00(sandbox, env):  # type: ignore[no-untyped-def]
    done, calls = sandbox("lab.sh", "--port=9999", STUB_TORCH="present", **env)
    assert done.returncode == 0, done.stderr
    args = _lab_args(calls)
    assert args[:2] == [f"--ServerApp.root_dir={ROOT}", "--LabApp.default_url=/lab/tree/notebooks/00_setup_check.ipynb"]
    assert args[-1] == "--port=9999"  # the user's arguments come last, so they win
    assert ("--allow-root" in args) == (env.get("STUB_UID") == "0")
    assert ("--no-browser" in args) == _headless_here(env)
    assert ("Jupyter prints below" in done.stdout) == _headless_here(env)


def test_lab_turns_the_news_pop_up_off_and_keeps_other_settings(sandbox):  # type: ignore[no-untyped-def]
    settings = sandbox.venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    done, _ = sandbox("lab.sh", STUB_TORCH="present")
    assert done.returncode == 0, done.stderr
    written = json.loads(settings.read_text())
    assert written["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}
    assert written["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}


def test_ci_installs_the_cpu_torch_first_and_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("pip install --quiet torch==2.13.0") < ci.index("bash scripts/test.sh")
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/lab.sh" in readme
