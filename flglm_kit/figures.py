"""Drawings for notebook 05: swimlanes of a round, throughput against the number of clients.

Introduced in notebook 05.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flglm_kit.profiling import PHASES, MedianCI, Timeline

__all__ = ["PHASE_COLORS", "FEDSEA_TABLE7", "draw_swimlanes", "plot_throughput"]

PHASE_COLORS = {"client compute": "#4C72B0", "wire and cipher": "#DD8452", "server compute": "#55A868"}
WAITING_COLOR = "#e6e6e6"

#: FedSEA-LLaMA, appendix Table 7: speed-up over sequential split learning (1,000 ReCoRD samples,
#: batch 1, LoRA r8, sub-servers on separate compute).
FEDSEA_TABLE7: dict[str, dict[int, float]] = {
    "sequential": {2: 1.0, 4: 1.0, 8: 1.0},
    "client-batching": {2: 1.09, 4: 1.27, 8: 1.41},
    "server-hierarchical": {2: 1.98, 4: 3.97, 8: 7.98},
}
SCHEDULE_COLORS = {"sequential": "#555555", "client-batching": "#4C72B0", "server-hierarchical": "#C44E52"}

_SHORT = {"trunk forward": "F", "trunk forward (eval)": "E", "trunk backward + step": "B", "average replicas": "avg"}


def draw_swimlanes(timeline: Timeline, *, ax: Any = None, title: str = "", legend: bool = True) -> Any:
    """One lane per party, time in milliseconds across: each piece coloured by its phase, idle time grey.

    Trunk passes are labelled ``F`` (forward), ``B`` (backward and step) and ``avg`` (averaging the
    replicas), with ``xK`` when one pass serves K clients.

    Args:
        timeline: from :meth:`flglm_kit.profiling.PhaseTimer.timeline`.
        ax: a matplotlib axes to draw on (default: a new figure).
        title: the axes' title.
        legend: draw the phases' legend (right of the axes).

    Returns:
        The axes.

    Introduced in notebook 05.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.45 * len(timeline.lanes) + 1))
    span = 1000 * timeline.makespan or 1.0
    for y, lane in enumerate(timeline.lanes):
        ends = [p.end for p in timeline.pieces if p.lane == lane]
        if ends:  # idle until its last piece: waiting for someone else
            ax.broken_barh([(0, 1000 * max(ends))], (y - 0.35, 0.7), color=WAITING_COLOR)
    for p in timeline.pieces:
        y = timeline.lanes.index(p.lane)
        ax.broken_barh([(1000 * p.start, 1000 * p.seconds)], (y - 0.35, 0.7), facecolor=PHASE_COLORS[p.phase],
                       edgecolor="white", linewidth=0.4)
        label = _SHORT.get(p.what)
        if label and 1000 * p.seconds > 0.025 * span:
            text = label + (f"×{len(p.clients)}" if len(p.clients) > 1 else "")
            ax.text(1000 * (p.start + p.seconds / 2), y, text, ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks(range(len(timeline.lanes)), timeline.lanes)
    ax.invert_yaxis()
    ax.set_xlim(0, span * 1.02)
    ax.set_xlabel("time (ms)")
    ax.set_title(title, fontsize=10)
    if legend:
        handles = [Patch(color=c, label=name) for name, c in PHASE_COLORS.items()]
        ax.legend(handles=[*handles, Patch(color=WAITING_COLOR, label="waiting")], fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))
    return ax


def _errorbar(ax: Any, xs: list[int], cis: list[MedianCI], invert: bool, **style: Any) -> None:
    if invert:  # seconds per round -> rounds per second
        mid = [1 / c.median for c in cis]
        lo, hi = [1 / c.high for c in cis], [1 / c.low for c in cis]
    else:
        mid, lo, hi = [c.median for c in cis], [c.low for c in cis], [c.high for c in cis]
    ax.errorbar(xs, mid, yerr=[[m - v for m, v in zip(mid, lo)], [v - m for m, v in zip(mid, hi)]], capsize=3, **style)


def plot_throughput(round_seconds: Mapping[str, Mapping[int, MedianCI]],
                    speedups: Mapping[str, Mapping[int, MedianCI]], *, title: str,
                    modeled: Mapping[str, Mapping[int, MedianCI]] | None = None,
                    paper: Mapping[str, Mapping[int, float]] = FEDSEA_TABLE7) -> Any:
    """Rounds per second against clients (left) and speed-up over sequential beside the paper's (right).

    Args:
        round_seconds: schedule -> clients -> median round time with its interval (seconds).
        speedups: schedule -> clients -> speed-up over sequential (paired ratios, with interval).
        title: the figure's title (name the hardware).
        modeled: the same speed-ups replayed with parallel parties (drawn dotted), if given.
        paper: the published speed-ups drawn beside (hollow markers, dashed).

    Returns:
        The matplotlib figure.

    Introduced in notebook 05.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, by_k in round_seconds.items():
        ks = sorted(by_k)
        color = SCHEDULE_COLORS.get(name)
        _errorbar(left, ks, [by_k[k] for k in ks], True, marker="o", color=color, label=name)
        _errorbar(right, ks, [speedups[name][k] for k in ks], False, marker="o", color=color)
        if modeled is not None and name in modeled:
            _errorbar(right, ks, [modeled[name][k] for k in ks], False, marker="s", ls=":", color=color)
        if name in paper:
            pk = sorted(paper[name])
            right.plot(pk, [paper[name][k] for k in pk], "D--", mfc="none", color=color, alpha=0.7)
    styles = [Line2D([], [], color="k", marker="o", label="measured, one process"),
              Line2D([], [], color="k", marker="D", ls="--", mfc="none", label="FedSEA Table 7 (LLaMA-2-7B)")]
    if modeled is not None:
        styles.insert(1, Line2D([], [], color="k", marker="s", ls=":", label="replayed, parallel parties"))
    left.set_xlabel("clients K (each takes one step per round)")
    left.set_ylabel("rounds per second (1/s)")
    left.set_xscale("log", base=2)
    left.legend(fontsize=7)
    right.set_xlabel("clients K")
    right.set_ylabel("speed-up over sequential (×)")
    right.set_xscale("log", base=2)
    right.set_yscale("log", base=2)
    right.legend(handles=styles, fontsize=7, loc="upper left")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ks = sorted({k for by_k in round_seconds.values() for k in by_k})
        ax.set_xticks(ks, [str(k) for k in ks])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def phase_colors() -> dict[str, str]:
    """The colour of each phase (:data:`flglm_kit.profiling.PHASES`), for a notebook's own bars.

    Introduced in notebook 05.
    """
    return {p: PHASE_COLORS[p] for p in PHASES}
