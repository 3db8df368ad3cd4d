"""Widgets: the federated-training dashboard (notebook 06) and a schedule picker (notebook 05).

::

    from flglm_kit.widgets import Dashboard
    dash = Dashboard()      # every control of flglm_kit.dashboard_settings.Settings
    dash                    # shows it; press Run

:class:`Dashboard` trains in a background thread (:func:`flglm_kit.dashboard_run.run`), so the
kernel stays free; Stop sets a flag that the run reads between steps, and the run saves a state
that Resume (or ``run(..., resume_from=...)``) continues. The panels are redrawn at most every
``redraw_s`` seconds, from that thread, as a PNG in an ``Image`` widget (matplotlib without
pyplot); a ``tqdm.notebook`` progress bar (what ``tqdm.auto`` picks in Jupyter) counts the
steps. After each run the dashboard also writes a static picture of the final curves into the
cell's output (a display that is updated in place), so that a saved notebook shows a result.

:class:`SchedulePicker` lets a learner choose a number of clients and a scheduler among rounds
that notebook 05 has already timed, and shows that choice's swimlane and throughput.

:func:`progress` is ``tqdm.auto`` for a notebook's own loops: a live bar while the loop runs,
replaced at the end by its final line of text, so that a saved notebook shows ``8/8 [00:12]``
rather than a bar frozen at 0 %.

Introduced in notebook 05 (the schedule picker); the dashboard is notebook 06's.
"""

from __future__ import annotations

import io
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from html import escape
from typing import Any

import ipywidgets as w
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flglm_kit.dashboard_run import run
from flglm_kit.dashboard_settings import (AGGREGATES, PEFT_METHODS, SCHEDULERS, TASKS, Settings, SettingsError,
                                          available_devices)
from flglm_kit.figures import draw_swimlanes
from flglm_kit.profiling import PhaseTimer, median_ci
from flglm_kit.run_history import History, draw_panels

__all__ = ["Dashboard", "SchedulePicker", "png_of", "progress"]

PLAINTEXT_WARNING = ("<b style='color:#b00'>⚠ plaintext channels</b>: anyone on the wire reads every activation "
                     "and gradient. For the leak demos only.")


def png_of(fig: Figure, *, dpi: int = 72) -> bytes:
    """``fig`` as PNG bytes (Agg canvas: no pyplot, safe from a background thread)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def progress(iterable: Iterable[Any], *, desc: str, total: int | None = None) -> Iterator[Any]:
    """Iterate over ``iterable`` behind a ``tqdm.auto`` bar that leaves its final line behind.

    In Jupyter the bar is a widget, and a saved notebook keeps only the text it had when it was
    first shown ("0 %"). Here the bar is shown through an updatable display, which the end of the
    loop (or an error) replaces with the bar's last line as plain text. Elsewhere: tqdm's console bar.

    Example:
        >>> list(progress(range(3), desc="rounds"))  # the bar goes to stderr
        [0, 1, 2]
    """
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as notebook_tqdm

    if not issubclass(tqdm, notebook_tqdm):  # not in a Jupyter kernel (or no widgets): the console bar
        yield from tqdm(iterable, desc=desc, total=total)
        return
    from IPython.display import Pretty, display

    bar = notebook_tqdm(iterable, desc=desc, total=total, display=False)
    handle = display(bar.container, display_id=True)  # type: ignore[no-untyped-call]
    try:
        yield from bar
    finally:
        bar.close()
        handle.update(Pretty(str(bar)))  # type: ignore[no-untyped-call]


STYLE = {"description_width": "95px"}
LAYOUT = {"width": "250px"}


def _dropdown(options: Sequence[Any], value: Any, description: str) -> w.Dropdown:
    return w.Dropdown(options=options, value=value, description=description, style=STYLE, layout=LAYOUT)


class Dashboard:
    """Controls, Run / Stop / Resume, live panels, a progress bar and a privacy meter (see the module docstring).

    Args:
        settings: where the controls start (default: :meth:`Settings.default`, quick-mode aware).
        model, tokenizer: the pretrained model to federate (default: the shipped tiny GLM).
        redraw_s: redraw the panels at most this often (seconds).
        checkpoint_dir: where Stop saves the state (default: a new temporary folder each time).

    Attributes:
        history: the last run's :class:`~flglm_kit.run_history.History` (``None`` before a run).
        controls: setting name -> its widget; ``run_button``, ``stop_button``, ``resume_button``.
        status: an HTML line: what the dashboard says (refused settings, the plaintext warning).
        panels: the live picture (an ``Image`` widget); ``bar``: the last run's progress bar.

    Introduced in notebook 06.
    """

    def __init__(self, settings: Settings | None = None, *, model: Any = None, tokenizer: Any = None,
                 redraw_s: float = 0.3, checkpoint_dir: str | None = None) -> None:
        self.settings = settings or Settings.default()
        self.model, self.tokenizer = model, tokenizer
        self.redraw_s, self.checkpoint_dir = redraw_s, checkpoint_dir
        self.history: History | None = None
        self.error: str | None = None  # the last failure's traceback, for whoever debugs it
        self.bar: Any = None
        self.redraws = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._static: Any = None
        self._static_parent: Any = None
        self._fig = Figure(figsize=(13, 6.2))
        self.controls = self._make_controls(self.settings)
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.resume_button = w.Button(description="Resume", icon="forward", disabled=True)
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.resume_button.on_click(lambda _: self.start(resume=True))
        self.status = w.HTML()
        self.progress = w.Box()
        self.panels = w.Image(format="png")
        for name, widget in [("run", self.run_button), ("stop", self.stop_button), ("resume", self.resume_button),
                             ("status", self.status), ("progress", self.progress), ("panels", self.panels),
                             *self.controls.items()]:
            widget.add_class(f"flglm-{name.replace('_', '-')}")  # stable hooks for a browser test
        for name in ("scheduler", "partition", "secure"):
            self.controls[name].observe(lambda _: self._sync_controls(), names="value")
        self._sync_controls()
        self._draw(History(settings=self.settings.as_dict()))
        self.widget = w.VBox([self._layout(), w.HBox([self.run_button, self.stop_button, self.resume_button]),
                              self.status, self.progress, self.panels])

    # -- building -----------------------------------------------------------------------------
    def _make_controls(self, s: Settings) -> dict[str, w.Widget]:
        # plain number boxes, not bounded sliders: a bad value reaches Settings.problems, which says why
        def number(kind: type[w.Widget], value: Any, description: str) -> w.Widget:
            return kind(value=value, description=description, style=STYLE, layout=LAYOUT)

        devices = available_devices()
        return {
            "num_clients": number(w.IntText, s.num_clients, "clients"),
            "scheduler": _dropdown(SCHEDULERS, s.scheduler, "scheduler"),
            "sub_servers": number(w.IntText, s.sub_servers, "sub-servers"),
            "head_layers": number(w.IntText, s.head_layers, "head_layers"),
            "tail_layers": number(w.IntText, s.tail_layers, "tail_layers"),
            "partition": _dropdown([("IID", "iid"), ("Dirichlet α", "dirichlet"), ("by site", "site")], s.partition,
                                   "partition"),
            "alpha": number(w.FloatText, s.alpha, "α"),
            "task": _dropdown(TASKS, s.task, "task"),
            "peft": _dropdown(PEFT_METHODS, s.peft, "method"),
            "lr": number(w.FloatText, s.lr, "lr"),
            "steps": number(w.IntText, s.steps, "steps"),
            "average_every": number(w.IntText, s.average_every, "average every"),
            "aggregate": _dropdown(AGGREGATES, s.aggregate, "aggregate"),
            "secure": w.ToggleButtons(options=[("per-client keys", True), ("plaintext", False)], value=s.secure,
                                      description="channels", style={**STYLE, "button_width": "110px"}),
            "noise_rel": number(w.FloatText, s.noise_rel, "noise σ"),
            "samples": number(w.IntText, s.samples, "samples"),
            "device": _dropdown(devices if s.device in devices else [*devices, s.device], s.device, "device"),
        }

    def _layout(self) -> w.Widget:
        c = self.controls
        columns = [["num_clients", "partition", "alpha", "samples", "task"],
                   ["scheduler", "sub_servers", "head_layers", "tail_layers", "device"],
                   ["peft", "lr", "steps", "average_every", "aggregate"], ["secure", "noise_rel"]]
        return w.HBox([w.VBox([c[name] for name in col]) for col in columns])

    def _sync_controls(self) -> None:
        self._sync_controls_disabled()
        if not self.running:
            self.status.value = "" if self.controls["secure"].value else PLAINTEXT_WARNING

    def current_settings(self) -> Settings:
        """The settings the controls show now (not checked: :meth:`Settings.problems` does that)."""
        values = {name: widget.value for name, widget in self.controls.items()}
        return Settings(**{**self.settings.as_dict(), **values})

    # -- running ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """A run is in progress in the background thread."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, resume: bool = False) -> bool:
        """What Run (and Resume) do: check the settings, then train in a background thread.

        Returns ``False`` (and says why in :attr:`status`) when the settings are refused or a run
        is in progress.
        """
        if self.running:
            return False
        settings = self.current_settings()
        problems = settings.problems()
        if problems:
            self._refuse(problems)
            return False
        resume_from = self.history.checkpoint if resume and self.history is not None else None
        self.history = None
        self._stop.clear()
        self._set_buttons(running=True)
        self.status.value = ("resuming…" if resume_from else "starting: data, parties and the privacy meter…") + (
            "" if settings.secure else "<br>" + PLAINTEXT_WARNING)
        self.bar = self._new_bar(settings.steps)
        self._thread = threading.Thread(target=self._work, args=(settings, resume_from), daemon=True,
                                        name="flglm-dashboard")
        self._thread.start()
        return True

    def stop(self) -> None:
        """What Stop does: the run stops after the current step and saves its state."""
        self._stop.set()
        self.stop_button.disabled = True
        self.status.value = "stopping after this step…"

    def wait(self, timeout: float | None = None) -> History | None:
        """Block until the run in progress ends (for scripts and tests); returns the history."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.history

    def _new_bar(self, total: int) -> Any:
        # tqdm.auto picks tqdm.notebook in Jupyter; the dashboard is always in Jupyter, so it asks for it
        # directly and places the bar itself (display=False) instead of printing it where the thread runs.
        from tqdm.notebook import tqdm as notebook_tqdm
        bar = notebook_tqdm(total=total, desc="federated steps", display=False)
        self.progress.children = (bar.container,)
        return bar

    def _work(self, settings: Settings, resume_from: str | None) -> None:
        message = ""
        try:
            self.history = run(settings, stop=self._stop, on_update=self._on_update, progress=self.bar,
                               resume_from=resume_from, checkpoint_dir=self.checkpoint_dir, model=self.model,
                               tokenizer=self.tokenizer)
            message = escape(self.history.message) + ("" if settings.secure else "<br>" + PLAINTEXT_WARNING)
        except SettingsError as err:
            message = self._refusal(err.problems)
        except Exception as err:  # noqa: BLE001 - a learner sees a sentence; the traceback is kept in .error
            self.error = traceback.format_exc()
            message = (f"<b style='color:#b00'>the run failed</b>: {escape(type(err).__name__)}: "
                       f"{escape(str(err))}")
        finally:
            if self.bar is not None:
                self.bar.close()
            if self.history is not None:
                self._draw(self.history, force=True)
                self._show_static(self.history)
            self._set_buttons(running=False)
            self.status.value = message  # last: whoever waits for it finds the pictures drawn

    def _on_update(self, history: History) -> None:
        self.history = history
        self._draw(history)

    def _refuse(self, problems: Sequence[str]) -> None:
        self.status.value = self._refusal(problems)

    @staticmethod
    def _refusal(problems: Sequence[str]) -> str:
        items = "".join(f"<li>{escape(p)}</li>" for p in problems)
        return f"<b style='color:#b00'>These settings cannot run:</b><ul>{items}</ul>"

    def _set_buttons(self, *, running: bool) -> None:
        self.run_button.disabled = running
        self.stop_button.disabled = not running
        can_resume = self.history is not None and self.history.stopped and self.history.checkpoint is not None
        self.resume_button.disabled = running or not can_resume
        for widget in self.controls.values():
            widget.disabled = running
        if not running:
            self._sync_controls_disabled()

    def _sync_controls_disabled(self) -> None:
        c = self.controls
        c["sub_servers"].disabled = c["scheduler"].value != "server-hierarchical"
        c["alpha"].disabled = c["partition"].value != "dirichlet"

    # -- drawing ------------------------------------------------------------------------------
    def _draw(self, history: History, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.redraw_s:
            return
        with self._lock:
            draw_panels(history, self._fig)
            self.panels.value = png_of(self._fig)
            self._last_draw = time.monotonic()
            self.redraws += 1

    def _show_static(self, history: History) -> None:
        """Write the final curves into the cell's output (a display updated in place), for the saved notebook.

        The run ends in the background thread, whose messages would carry the parent of the button
        click (a widget message, whose output JupyterLab drops); so the update goes out as an
        ``update_display_data`` message under the parent of the cell that showed the dashboard.
        """
        if self._static is None:
            return
        from IPython import get_ipython
        from IPython.display import Image
        with self._lock:
            draw_panels(history, self._fig)
            picture = Image(png_of(self._fig, dpi=80))  # type: ignore[no-untyped-call]
        shell = get_ipython()
        kernel = getattr(shell, "kernel", None)
        if kernel is None or self._static_parent is None:
            self._static.update(picture)
            return
        data, metadata = shell.display_formatter.format(picture)
        kernel.session.send(kernel.iopub_socket, "update_display_data", parent=self._static_parent,
                            ident=b"display_data", content={"data": data, "metadata": metadata,
                                                             "transient": {"display_id": self._static.display_id}})

    def _ipython_display_(self) -> None:
        from IPython import get_ipython
        from IPython.display import Markdown, display
        bundle = self.widget._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        bundle["text/plain"] = ("Dashboard: its controls and live panels need a running kernel; "
                                "the picture below is the last run's final state.")
        display(bundle, raw=True)  # type: ignore[no-untyped-call]
        placeholder = Markdown("*(after a run, its final curves are drawn here)*")  # type: ignore[no-untyped-call]
        self._static = display(placeholder, display_id=True)  # type: ignore[no-untyped-call]
        kernel = getattr(get_ipython(), "kernel", None)
        get_parent = getattr(kernel, "get_parent", None)
        self._static_parent = get_parent("shell") if callable(get_parent) else getattr(kernel, "_parent_header", None)

    def __repr__(self) -> str:
        state = "running" if self.running else ("no run yet" if self.history is None else repr(self.history))
        return f"Dashboard({state})"


class SchedulePicker:
    """Choose a number of clients and a scheduler; see the timed rounds of that choice (notebook 05).

    Args:
        records: ``(scheduler name, clients)`` -> the :class:`~flglm_kit.profiling.PhaseTimer` of
            each timed round (notebook 05's ``records``).
        baseline: the scheduler the speed-up is paired against (same repetition).

    Attributes:
        scheduler, clients: the two controls; ``picture``: the swimlane of the choice's median
        round (replayed with parallel parties); ``numbers``: its rounds per second and speed-up.

    Introduced in notebook 05.
    """

    def __init__(self, records: Mapping[tuple[str, int], Sequence[PhaseTimer]], *,
                 baseline: str = "sequential") -> None:
        self.records, self.baseline = records, baseline
        names = list(dict.fromkeys(name for name, _ in records))
        counts = sorted({k for _, k in records})
        self.scheduler = w.ToggleButtons(options=names, value=names[0], description="scheduler")
        self.clients = w.SelectionSlider(options=counts, value=counts[0], description="clients")
        self.numbers = w.HTML()
        self.picture = w.Image(format="png")
        self.scheduler.observe(lambda _: self.render(), names="value")
        self.clients.observe(lambda _: self.render(), names="value")
        self.widget = w.VBox([w.HBox([self.scheduler, self.clients]), self.numbers, self.picture])
        self.render()

    def summary(self, name: str, clients: int) -> str:
        """The choice's rounds per second and paired speed-up over the baseline, with 95 % intervals."""
        timers = self.records[name, clients]
        rate = median_ci([1 / t.wall for t in timers])
        text = (f"{name}, {clients} clients: {rate.median:.2f} rounds/s [{rate.low:.2f}, {rate.high:.2f}] "
                f"(median, n={rate.n})")
        base = self.records.get((self.baseline, clients))
        if base is not None and name != self.baseline:
            speed = median_ci([b.wall / t.wall for b, t in zip(base, timers)])
            text += f"; {speed.median:.2f}× {self.baseline} [{speed.low:.2f}, {speed.high:.2f}] in one process"
        return text

    def render(self) -> None:
        """Redraw for the current choice."""
        name, k = self.scheduler.value, self.clients.value
        timers = sorted(self.records[name, k], key=lambda t: t.wall)
        median = timers[len(timers) // 2]
        self.numbers.value = escape(self.summary(name, k))
        fig = Figure(figsize=(10, 0.32 * (2 * k + 2) + 1.2))
        ax = fig.subplots()
        draw_swimlanes(median.timeline(), ax=ax, title=f"{name}, {k} clients: the median timed round, replayed "
                                                       "with parallel parties")
        fig.tight_layout()
        self.picture.value = png_of(fig)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        bundle["text/plain"] = "SchedulePicker: choose clients and a scheduler (the controls need a running kernel)"
        return bundle
