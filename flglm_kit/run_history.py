"""What a dashboard run recorded, step by step, and the static picture of its final curves.

:func:`flglm_kit.dashboard_run.run` (headless) and :class:`flglm_kit.widgets.Dashboard` (live)
fill one :class:`History`: a :class:`StepRecord` per training step (each client's loss, the
centralized baseline's loss on the same samples, bytes on the wire, time per phase, server
memory), a :class:`Checkpoint` of the validation metric now and then, and a
:class:`PrivacyReading` per round (the learned inverter's token recovery on what the server
received, next to the prior-only baseline). :meth:`History.plot` draws the six panels; the
dashboard draws the same panels live, on a figure of its own (:func:`draw_panels`, no pyplot,
so it is safe from a background thread).

Not called directly in a notebook yet: notebook 06 gets a history from ``run(...)`` and plots it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from flglm_kit.figures import PHASE_COLORS as _PHASES

__all__ = ["StepRecord", "Checkpoint", "PrivacyReading", "History", "draw_panels"]

#: the phases of :mod:`flglm_kit.profiling`, and the colour each is drawn in
PHASE_COLORS = {**_PHASES, "other": "#999999"}


@dataclass(frozen=True)
class StepRecord:
    """One training step of every client (one local step each).

    ``wire_bytes`` counts the step's training frames (activations, gradients, both directions,
    every client), measured between steps; ``update_bytes`` is this step's share of its round's
    FedAvg frames, and ``phase_seconds`` its share of the round's time per phase (a round of L
    steps is timed as a whole). ``server_bytes``: the trunk replicas' weights, gradients and
    optimizer states after the round; ``device_bytes``: the accelerator's allocated memory
    (``None`` on a CPU).
    """

    step: int
    round: int
    losses: dict[str, float]
    baseline_loss: float | None
    wire_bytes: int
    update_bytes: float
    phase_seconds: dict[str, float]
    server_bytes: int
    device_bytes: int | None = None

    @property
    def mean_loss(self) -> float:
        """The clients' mean loss at this step."""
        return sum(self.losses.values()) / len(self.losses) if self.losses else math.nan


@dataclass(frozen=True)
class Checkpoint:
    """The validation metric after ``step`` steps: the federated model (client 0's blocks around the
    server's trunk) and the centralized baseline, on the same held-out examples."""

    step: int
    federated: float
    baseline: float | None


@dataclass(frozen=True)
class PrivacyReading:
    """The learned inverter's token recovery on the activations the server received at ``step``,
    and the prior-only baseline's on the same tokens (both in [0, 1]); ``tokens`` scored."""

    step: int
    recovered: float
    prior: float
    tokens: int


@dataclass
class History:
    """Everything a run recorded; :meth:`plot` draws it. See the module docstring.

    Attributes:
        settings: the run's settings as a plain dict.
        metric: the validation metric's name (``"accuracy"``, higher is better, or
            ``"validation loss"``, lower is better).
        steps: one :class:`StepRecord` per training step, in order.
        validation: the validation metric now and then (at step 0 too).
        privacy: one :class:`PrivacyReading` per round.
        stopped: the run was stopped before its last step.
        checkpoint: where the stopped or finished run's state was saved (``None``: not saved).
        message: what the run says about itself (why it stopped, why it was not saved).
        seconds: wall time of the training loop (setup, such as training the inverter, excluded).
        setup_seconds: wall time of the setup (data, parties, inverter).
    """

    settings: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    steps: list[StepRecord] = field(default_factory=list)
    validation: list[Checkpoint] = field(default_factory=list)
    privacy: list[PrivacyReading] = field(default_factory=list)
    stopped: bool = False
    checkpoint: str | None = None
    message: str = ""
    seconds: float = 0.0
    setup_seconds: float = 0.0

    def __repr__(self) -> str:
        last = f", mean loss {self.final_loss:.3f}" if self.steps else ""
        val = f", {self.metric} {self.validation[-1].federated:.3f}" if self.validation else ""
        state = "stopped" if self.stopped else "done"
        return f"History({len(self.steps)}/{self.settings.get('steps', '?')} steps{last}{val}, {state})"

    @property
    def clients(self) -> list[str]:
        """The client ids, in the order of the first step."""
        return list(self.steps[0].losses) if self.steps else []

    @property
    def final_loss(self) -> float:
        """The clients' mean loss at the last step (``nan`` before any step)."""
        return self.steps[-1].mean_loss if self.steps else math.nan

    def client_losses(self, client_id: str) -> list[float]:
        """One client's loss at each step (``nan`` where it did not train)."""
        return [r.losses.get(client_id, math.nan) for r in self.steps]

    def baseline_losses(self) -> list[float]:
        """The centralized baseline's loss at each step (``nan`` without a baseline)."""
        return [math.nan if r.baseline_loss is None else r.baseline_loss for r in self.steps]

    # -- saving -------------------------------------------------------------------------------
    def to_json(self) -> str:
        """The history as JSON (what :meth:`from_json` reads back)."""
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> History:
        """A history from :meth:`to_json`'s text."""
        raw = json.loads(text)
        raw["steps"] = [StepRecord(**r) for r in raw.get("steps", [])]
        raw["validation"] = [Checkpoint(**r) for r in raw.get("validation", [])]
        raw["privacy"] = [PrivacyReading(**r) for r in raw.get("privacy", [])]
        return cls(**raw)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path``; returns it."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    # -- the picture --------------------------------------------------------------------------
    def plot(self, *, title: str | None = None) -> Figure:
        """The final curves as one static matplotlib figure (six panels), shown by the notebook.

        Returns the figure (made with pyplot, so a notebook shows it at the end of the cell:
        write ``history.plot(); plt.show()``).
        """
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(13, 6.2))
        draw_panels(self, fig, title=title)
        return fig


def _summary(history: History) -> str:
    s = history.settings
    secure = "per-client keys" if s.get("secure", True) else "PLAINTEXT"
    return (f"{s.get('task')} · {s.get('num_clients')} clients ({s.get('partition')}) · {s.get('scheduler')} · "
            f"head {s.get('head_layers')} / tail {s.get('tail_layers')} · {s.get('peft')} · lr {s.get('lr')} · "
            f"avg every {s.get('average_every')} · aggregate {s.get('aggregate')} · {secure} · "
            f"σ {s.get('noise_rel')} · {s.get('device')}")


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color="grey", transform=ax.transAxes)


def draw_panels(history: History, fig: Figure, *, title: str | None = None) -> Figure:
    """Draw the six panels of ``history`` on ``fig`` (cleared first): loss, validation, bytes, time,
    memory and the privacy meter. Uses no pyplot state, so a background thread may call it."""
    fig.clear()
    axes = fig.subplots(2, 3)
    (loss_ax, val_ax, priv_ax), (bytes_ax, time_ax, mem_ax) = axes
    x = [r.step for r in history.steps]
    # loss: every client, and the centralized baseline on the same samples
    for k, cid in enumerate(history.clients):
        loss_ax.plot(x, history.client_losses(cid), lw=1, alpha=0.8, c=f"C{k % 10}", label=cid)
    if any(r.baseline_loss is not None for r in history.steps):
        loss_ax.plot(x, history.baseline_losses(), "k--", lw=2, label="centralized")
    loss_ax.set(title="training loss", xlabel="step", ylabel="loss (nats/token)")
    if history.steps:
        loss_ax.legend(fontsize=7, ncol=2)
    else:
        _no_data(loss_ax, "press Run")
    # validation metric
    vx = [c.step for c in history.validation]
    if vx:
        val_ax.plot(vx, [c.federated for c in history.validation], "o-", label="federated")
        if any(c.baseline is not None for c in history.validation):
            val_ax.plot(vx, [math.nan if c.baseline is None else c.baseline for c in history.validation],
                        "ks--", label="centralized")
        val_ax.legend(fontsize=7)
    else:
        _no_data(val_ax, "no validation yet")
    val_ax.set(title=f"validation {history.metric}" if history.metric == "accuracy" else history.metric,
               xlabel="step", ylabel=history.metric)
    # privacy meter
    px = [p.step for p in history.privacy]
    if px:
        priv_ax.plot(px, [100 * p.recovered for p in history.privacy], "o-", c="C3", label="learned inverter")
        priv_ax.plot(px, [100 * p.prior for p in history.privacy], "--", c="grey", label="prior only")
        priv_ax.set_ylim(0, 100)
        priv_ax.legend(fontsize=7)
    else:
        _no_data(priv_ax, "no reading yet")
    priv_ax.set(title="privacy meter: what the server reads back", xlabel="step", ylabel="tokens recovered (%)")
    # bytes on the wire per step
    if x:
        bytes_ax.plot(x, [r.wire_bytes / 1e6 for r in history.steps], "o-", ms=3, label="activations + gradients")
        bytes_ax.plot(x, [r.update_bytes / 1e6 for r in history.steps], "s-", ms=3, label="FedAvg updates (share)")
        bytes_ax.legend(fontsize=7)
    bytes_ax.set(title="bytes on the wire per step", xlabel="step", ylabel="MB")
    # time per step, stacked by phase
    if x:
        bottom = [0.0] * len(x)
        for phase, color in PHASE_COLORS.items():
            ms = [1000 * r.phase_seconds.get(phase, 0.0) for r in history.steps]
            time_ax.bar(x, ms, bottom=bottom, color=color, label=phase, width=0.8)
            bottom = [b + m for b, m in zip(bottom, ms)]
        time_ax.legend(fontsize=7)
    time_ax.set(title="time per step by phase", xlabel="step", ylabel="ms")
    # server memory
    if x:
        mem_ax.plot(x, [r.server_bytes / 1e6 for r in history.steps], "o-", ms=3, label="trunk + optimizer state")
        if any(r.device_bytes is not None for r in history.steps):
            mem_ax.plot(x, [math.nan if r.device_bytes is None else r.device_bytes / 1e6 for r in history.steps],
                        "^-", ms=3, label="device allocated")
        mem_ax.set_ylim(bottom=0)
        mem_ax.legend(fontsize=7)
    mem_ax.set(title="server memory", xlabel="step", ylabel="MB")
    for ax in (loss_ax, val_ax, priv_ax, bytes_ax, time_ax, mem_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    state = " (stopped)" if history.stopped else ""
    fig.suptitle((title or _summary(history)) + state, fontsize=9)
    fig.tight_layout()
    return fig
