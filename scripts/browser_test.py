"""The dashboard in a real browser: JupyterLab + Chromium (Playwright), as a learner would use it.

    .venv/bin/python scripts/browser_test.py                       # notebook 06, screenshots in build/browser-test/
    .venv/bin/python scripts/browser_test.py --notebook my.ipynb --out /tmp/shots

What it does, step by step (each step prints a line; any failure exits non-zero saying which):

1. installs what it needs the way a user could: Debian's ``chromium`` (``apt-get install -y
   chromium``, as root) when no Chromium is on the PATH, and Playwright for Python and JupyterLab
   into this Python environment (``pip``) when they are missing. Playwright drives the Debian
   browser through ``executable_path``: no browser is downloaded (``playwright install`` is
   never run);
2. copies the notebook's folder into a fresh one (the repository's copy is never saved over) and
   starts JupyterLab from this environment on a free localhost port, with a token, no browser,
   ``--allow-root`` when root, fresh settings that switch the news and update pop-ups off, and
   ``FLGLM_QUICK=1`` in the kernel's environment;
3. opens the notebook, runs all cells (Run menu → Run All Cells), waits until the kernel is idle
   and every code cell has run;
4. on the dashboard: sets more steps, presses Run, waits until the live panels have been redrawn
   and the progress bar has moved, presses Stop, and waits until the dashboard says it stopped
   and saved its state;
5. saves the notebook copy and checks that no cell shows an error (in the page and in the saved
   file) and that the dashboard wrote its static picture into the cell's output;
6. saves screenshots under ``--out`` and stops every process it started, by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class BrowserTestError(RuntimeError):
    """A step of the browser test failed; the message says which and why."""


def say(text: str) -> None:
    print(f"[browser-test] {text}", flush=True)


# -- 1. what it needs ----------------------------------------------------------------------------
def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str:
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0:
        raise BrowserTestError("no Chromium on the PATH; install it (Debian/Ubuntu: sudo apt-get install -y chromium) "
                               "and run this again")
    say("installing Debian's chromium with apt-get (first run only)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BrowserTestError(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    found = find_chromium()
    if not found:
        raise BrowserTestError("apt-get installed chromium, yet no chromium is on the PATH")
    return found


def ensure_python_packages() -> None:
    missing = []
    for module, requirement in (("playwright", "playwright"), ("jupyterlab", "jupyterlab>=4.0")):
        try:
            __import__(module)
        except ImportError:
            missing.append(requirement)
    if missing:
        say(f"installing {', '.join(missing)} into {sys.prefix} with pip (first run only)")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BrowserTestError(f"pip install {' '.join(missing)} failed:\n{done.stderr[-2000:]}")


# -- 2. JupyterLab ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lab_settings(folder: Path) -> None:
    """Fresh user settings: no news, no update check (the pop-ups a first start shows), and every
    cell of a notebook kept in the page. JupyterLab 4 renders long notebooks lazily ("windowing"):
    the prompts of cells out of view read as empty, so a long notebook would never look fully run."""
    plugin = folder / "@jupyterlab" / "apputils-extension"
    plugin.mkdir(parents=True, exist_ok=True)
    (plugin / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                         "checkForUpdates": False}))
    notebook = folder / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True, exist_ok=True)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))


def start_lab(root_dir: Path, port: int, token: str, work: Path, log: Path) -> subprocess.Popen[bytes]:
    lab_settings(work / "lab-settings")
    env = {**os.environ, "FLGLM_QUICK": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "JUPYTERLAB_SETTINGS_DIR": str(work / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "lab-workspaces"), "JUPYTER_RUNTIME_DIR": str(work / "runtime")}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the notebook's pictures
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--ServerApp.root_dir={root_dir}", f"--IdentityProvider.token={token}",
               "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
               "jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    say(f"starting JupyterLab on 127.0.0.1:{port} (log: {log})")
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=root_dir)


def wait_for_lab(proc: subprocess.Popen[bytes], port: int, token: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserTestError(f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise BrowserTestError(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, []))
    return out


def stop_processes(proc: subprocess.Popen[bytes]) -> None:
    """Stop JupyterLab and every process it started (kernels), by pid."""
    pids = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            say(f"stopped leftover process {pid}")
        except ProcessLookupError:
            pass


# -- 3-5. the page ---------------------------------------------------------------------------------
def shot(page: Any, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    say(f"screenshot {path}")


def wait_until(check: Any, what: str, timeout: float, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise BrowserTestError(f"timed out after {timeout:.0f} s waiting for {what}")


def cells_state(page: Any) -> dict[str, int]:
    """Code cells: how many, how many still queued or running ([*]), how many never ran ([ ])."""
    # textContent, not innerText: innerText is empty for an element the browser has not laid out
    prompts: list[str] = page.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()
    prompts = [p.strip() for p in prompts]
    return {"cells": len(prompts), "busy": sum("*" in p for p in prompts),
            "not run": sum(p in ("", "[ ]:") for p in prompts)}


class Lab:
    """The server's REST API, for what the page does not show reliably: the kernel's state."""

    def __init__(self, port: int, token: str) -> None:
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def kernel_states(self) -> list[str]:
        with urllib.request.urlopen(f"{self.base}/api/kernels?token={self.token}", timeout=5) as r:
            return [k.get("execution_state", "?") for k in json.loads(r.read())]

    def idle(self) -> bool:
        states = self.kernel_states()
        return bool(states) and all(s == "idle" for s in states)


def accept_kernel_dialog(page: Any) -> None:
    """JupyterLab may ask which kernel to start: answer with its default (what a learner clicks)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and "Kernel" in dialog.first.inner_text():
        dialog.first.locator(".jp-mod-accept").click()
        say("accepted the kernel JupyterLab proposed")


def error_outputs(page: Any) -> list[str]:
    """Texts of outputs that are errors (tracebacks), as the page shows them."""
    texts = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    return [t[:600] for t in texts if "Traceback" in t or "Error" in t.splitlines()[0:1].__str__()]


def run_all(page: Any, lab: Lab, timeout: float) -> float:
    page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
    t0 = time.monotonic()
    time.sleep(2)
    accept_kernel_dialog(page)

    said, stalled = [t0], [0]

    def finished() -> bool:
        accept_kernel_dialog(page)
        state = cells_state(page)
        kernels = lab.kernel_states()
        if time.monotonic() - said[0] > 30:  # a wait that never ends shows what it waits for
            say(f"  still running: cells {state}, kernel {kernels}")
            said[0] = time.monotonic()
        idle = bool(kernels) and all(k == "idle" for k in kernels)
        # a cell that fails cancels the rest of Run All: they stay unrun while the kernel is idle
        stalled[0] = stalled[0] + 1 if idle and state["busy"] == 0 and state["not run"] else 0
        if stalled[0] >= 5:
            errors = error_outputs(page)
            raise BrowserTestError(f"Run All stopped with {state['not run']} cell(s) not run; the page shows "
                                   + ("these errors:\n" + "\n---\n".join(errors) if errors else "no error output"))
        return state["busy"] == 0 and state["not run"] == 0 and idle

    wait_until(finished, "every cell to run and the kernel to be idle", timeout, poll=1.0)
    return time.monotonic() - t0


def image_src(page: Any) -> str:
    return page.locator(".flglm-panels").first.get_attribute("src") or ""


def progress_value(page: Any) -> float:
    bar = page.locator(".flglm-progress .progress-bar").first
    style = bar.get_attribute("style") or ""
    for part in style.split(";"):
        if part.strip().startswith("width"):
            return float(part.split(":")[1].strip().rstrip("%") or 0)
    return 0.0


def drive_dashboard(page: Any, out: Path, steps: int, timeout: float) -> str:
    run_button = page.locator(".flglm-run")
    if run_button.count() == 0:
        raise BrowserTestError("the notebook shows no dashboard (no Run button of flglm_kit.widgets.Dashboard)")
    run_button.first.scroll_into_view_if_needed()
    steps_box = page.locator(".flglm-steps input").first
    steps_box.fill(str(steps))
    steps_box.press("Enter")
    before = image_src(page)
    run_button.first.click()
    say("pressed Run")
    wait_until(lambda: image_src(page) not in ("", before), "the live panels to be redrawn", timeout)
    first = image_src(page)
    wait_until(lambda: progress_value(page) > 0, "the progress bar to move", timeout)
    wait_until(lambda: image_src(page) != first, "a second redraw (the loss curve growing)", timeout)
    say(f"panels redrawn; progress {progress_value(page):.0f} %")
    page.locator(".flglm-progress").first.scroll_into_view_if_needed()
    shot(page, out, "2-dashboard-running")
    page.locator(".flglm-stop").first.click()
    say("pressed Stop")
    status = wait_until(lambda: _stopped(page), "the dashboard to say it stopped", timeout)
    page.locator(".flglm-panels").first.scroll_into_view_if_needed()
    shot(page, out, "3-dashboard-stopped")
    page.locator(".flglm-panels").first.screenshot(path=str(out / "3-panels.png"))
    return str(status)


def _stopped(page: Any) -> str | None:
    text = page.locator(".flglm-status").first.inner_text()
    if "failed" in text or "cannot run" in text:
        raise BrowserTestError(f"the dashboard says: {text}")
    return text if ("stopped" in text and "saved" in text) or text.startswith("done") else None


def save_notebook(page: Any, path: Path) -> None:
    before = path.stat().st_mtime_ns
    page.locator(".lm-MenuBar-itemLabel").get_by_text("File", exact=True).click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Save Notebook", exact=True).click()
    wait_until(lambda: path.stat().st_mtime_ns != before, f"JupyterLab to save {path.name}", 30)


def saved_errors(path: Path) -> tuple[list[str], bool]:
    """Error outputs in the saved notebook, and whether a dashboard cell holds a static PNG."""
    nb = json.loads(path.read_text())
    errors, static = [], False
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(f"{output.get('ename')}: {output.get('evalue')}")
            data = output.get("data", {})
            if "Dashboard" in "".join(cell.get("source", [])) and "image/png" in data:
                static = True
    return errors, static


def browse(url: str, lab: Lab, chromium: str, out: Path, notebook: Path, args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
            time.sleep(3)
            accept_kernel_dialog(page)
            wait_until(lab.idle, "the kernel to start", 120)
            say("notebook open, kernel idle; running all cells")
            seconds = run_all(page, lab, args.timeout)
            state = cells_state(page)
            say(f"all cells ran in {seconds:.0f} s: {state}")
            shot(page, out, "1-all-cells-run")
            if state["not run"]:
                raise BrowserTestError(f"{state['not run']} code cell(s) did not run (an earlier cell failed?)")
            errors = error_outputs(page)
            if errors:
                raise BrowserTestError("cells show errors:\n" + "\n---\n".join(errors))
            status = drive_dashboard(page, out, args.steps, args.timeout)
            say(f"dashboard: {status}")
            save_notebook(page, notebook)
            errors = error_outputs(page)
            saved, static = saved_errors(notebook)
            shot(page, out, "4-end")
            if errors or saved:
                raise BrowserTestError("cells show errors:\n" + "\n---\n".join(errors + saved))
            if not static:
                raise BrowserTestError("the dashboard wrote no static picture into its cell's output")
            say("no cell shows an error; the dashboard's static picture is in the saved notebook")
        except Exception:
            shot(page, out, "failure")
            raise
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notebook", default="notebooks/06_federated_training.ipynb", help="the notebook to open")
    parser.add_argument("--out", default="build/browser-test", help="folder for screenshots and logs")
    parser.add_argument("--steps", type=int, default=40, help="steps typed into the dashboard before Run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for any one stage")
    args = parser.parse_args(argv)
    source = Path(args.notebook)
    source = source if source.is_absolute() else (Path.cwd() / source)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    proc = None
    try:
        if not source.is_file():
            raise BrowserTestError(f"no notebook at {source}")
        chromium = ensure_chromium()
        ensure_python_packages()
        work = Path(tempfile.mkdtemp(prefix="flglm-browser-test-"))
        # the notebook's whole folder: it reads files beside it (notebook 06: results/*.jsonl);
        # the repository's copy is never saved over
        shutil.copytree(source.parent, work / "nb", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        notebook = work / "nb" / source.name
        port, token = free_port(), os.urandom(16).hex()
        proc = start_lab(work / "nb", port, token, work, out / "jupyterlab.log")
        wait_for_lab(proc, port, token, out / "jupyterlab.log")
        browse(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}&reset", Lab(port, token), chromium,
               out, notebook, args)
        shutil.copy(notebook, out / f"saved-{notebook.name}")
    except BrowserTestError as err:
        say(f"FAILED after {time.monotonic() - t0:.0f} s: {err}")
        return 1
    except Exception as err:  # noqa: BLE001 - Playwright's own errors (a selector timed out, ...)
        say(f"FAILED after {time.monotonic() - t0:.0f} s: {type(err).__name__}: {err}")
        return 1
    finally:
        if proc is not None:
            stop_processes(proc)
    say(f"passed in {time.monotonic() - t0:.0f} s; screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
