"""Pictures of the ideas, drawn with matplotlib: the U-shaped split, one step's messages, who sees what.

Each function returns a :class:`matplotlib.figure.Figure` (shown by a notebook cell, saved
with ``fig.savefig``), drawn from code rather than shipped as an image, so a figure changes
with the code that it describes and its words can be searched and tested
(``tests/test_diagrams.py`` reads them back):

* :func:`split_diagram`: FL-GLM's U-shaped split, the four tensors that cross per step, and
  each client's own key (notebook 01);
* :func:`step_swimlane`: one training step as a swimlane: the five compute phases and the
  four messages, in order (notebook 01);
* :func:`threat_map`: the server, a peer client and an eavesdropper, and what each can read
  (notebook 04);
* :func:`recovery_heatmap`: an attack × layout table of recovery rates as a heatmap, with
  "not measured" cells left blank (notebook 03).

Introduced in notebook 01.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["split_diagram", "step_swimlane", "threat_map", "recovery_heatmap", "MESSAGES"]

#: the four tensors that cross the cut in one training step, in order: (wire kind, symbol, direction)
MESSAGES = (
    ("activations", "h_A", "client → server"),
    ("trunk_output", "h_B", "server → client"),
    ("output_grads", "dL/dh_B", "client → server"),
    ("activation_grads", "dL/dh_A", "server → client"),
)

_CLIENT, _SERVER, _WIRE, _DANGER = "#d8ecd4", "#d6e2f3", "#f4f4f4", "#c0392b"


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, color: str, *,
         fontsize: float = 9, weight: str = "normal") -> None:
    """A rounded box with centred text (axes coordinates in data units)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="#444444", lw=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, weight=weight)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str = "", *,
           color: str = "#222222", rad: float = 0.0, offset: tuple[float, float] = (0.0, 0.0),
           fontsize: float = 9, style: str = "-|>") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=color, lw=1.6,
                                 connectionstyle=f"arc3,rad={rad}"))
    if label:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, label, ha="center", va="center", fontsize=fontsize, color=color,
                bbox=dict(fc="white", ec="none", pad=1.0))


def _canvas(width: float, height: float, xlim: tuple[float, float], ylim: tuple[float, float]
            ) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    return fig, ax


def split_diagram(*, clients: Sequence[str] = ("hospital-a", "hospital-b", "hospital-c")) -> Figure:
    """FL-GLM's U-shaped split: the client holds both ends, the server the middle.

    The client's **input block** (embedding + first block) sends ``h_A`` to the server's
    **trunk**, which returns ``h_B`` to the client's **output block** (last block, norm, LM
    head, loss: the labels stay home); the backward pass sends ``dL/dh_B`` up and brings
    ``dL/dh_A`` back. Every arrow is sealed under that client's own key; other clients (drawn
    behind) have keys of their own.

    Args:
        clients: client names; the first is drawn in front, the others as the stack behind it.

    Returns:
        The figure.

    Example:
        >>> fig = split_diagram()
        >>> sorted({t.get_text() for t in fig.axes[0].texts} & {"h_A", "h_B", "dL/dh_B", "dL/dh_A"})
        ['dL/dh_A', 'dL/dh_B', 'h_A', 'h_B']
    """
    if not clients:
        raise ValueError("split_diagram needs at least one client name")
    fig, ax = _canvas(9.5, 4.6, (0, 10), (0, 6))
    for i, _ in enumerate(clients[1:][::-1]):  # the other clients, a stack behind the first
        d = 0.18 * (len(clients) - 1 - i)
        for x in (0.3, 6.9):
            ax.add_patch(FancyBboxPatch((x + d, 0.35 + d), 2.8, 1.9, boxstyle="round,pad=0.02,rounding_size=0.08",
                                        fc="#eef6ec", ec="#999999", lw=0.8))
    front = clients[0]
    _box(ax, 0.3, 0.35, 2.8, 1.9, f"{front}\ninput block\nembedding + block 0", _CLIENT, weight="bold")
    _box(ax, 6.9, 0.35, 2.8, 1.9, f"{front}\noutput block\nlast block + norm\n+ LM head + loss", _CLIENT,
         weight="bold")
    _box(ax, 3.3, 3.7, 3.4, 1.6, "server\ntrunk: the middle blocks\n(+ its optimizer)", _SERVER, weight="bold")
    ax.text(1.7, 0.08, "token ids stay here", ha="center", fontsize=8, style="italic")
    ax.text(8.3, 0.08, "labels stay here", ha="center", fontsize=8, style="italic")
    _arrow(ax, (2.2, 2.35), (3.6, 3.65), "h_A", offset=(-0.35, 0.1))
    _arrow(ax, (6.4, 3.65), (7.8, 2.35), "h_B", offset=(0.35, 0.1))
    _arrow(ax, (8.4, 2.35), (6.7, 4.1), "dL/dh_B", rad=0.25, offset=(0.75, 0.35), color="#7a3b9a")
    _arrow(ax, (3.3, 4.1), (1.6, 2.35), "dL/dh_A", rad=0.25, offset=(-0.75, 0.35), color="#7a3b9a")
    ax.text(5.0, 2.7, "forward: h_A, h_B\nbackward: dL/dh_B, dL/dh_A", ha="center", fontsize=8.5)
    keys = ", ".join(f"K_{c}" for c in clients[:2]) + (", ..." if len(clients) > 2 else "")
    ax.text(5.0, 1.25, f"every arrow is sealed under\nthat client's own key\n({keys};\nAES-256-GCM)",
            ha="center", va="center", fontsize=8, bbox=dict(fc="#fff7d6", ec="#b59a2a", pad=4))
    ax.text(5.0, 5.75, "FL-GLM's U-shaped split (head_layers = tail_layers = 1)", ha="center", fontsize=11,
            weight="bold")
    return fig


#: one step, in order: (lane, what happens); lanes are "client" and "server"
_PHASES = (
    ("client", "input block\nforward"),
    ("server", "trunk\nforward"),
    ("client", "output block forward,\nloss, backward"),
    ("server", "trunk backward\n+ optimizer step"),
    ("client", "input block backward\n+ optimizer step"),
)


def step_swimlane() -> Figure:
    """One training step as a swimlane: five compute phases, four messages between them.

    Time runs left to right. Each message is a ``wire.Message`` of the named kind, sealed on
    the client's channel; the server's tap (``server.add_tap``) shows exactly these four.

    Returns:
        The figure.

    Example:
        >>> fig = step_swimlane()
        >>> [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("②")]
        ['② trunk_output: h_B']
    """
    fig, ax = _canvas(11, 3.4, (0, 11), (0, 4))
    lanes = {"client": 2.9, "wire": 1.9, "server": 0.9}
    for lane, y in lanes.items():
        ax.axhspan(y - 0.45, y + 0.45, color={"client": _CLIENT, "server": _SERVER, "wire": _WIRE}[lane], alpha=0.6)
        ax.text(0.1, y, lane, va="center", fontsize=10, weight="bold")
    xs = [1.2 + 1.95 * i for i in range(len(_PHASES))]
    for x, (lane, what) in zip(xs, _PHASES):
        _box(ax, x, lanes[lane] - 0.36, 1.65, 0.72, what, "white", fontsize=7.5)
    marks = "①②③④"
    for i, ((kind, symbol, _), x) in enumerate(zip(MESSAGES, xs)):
        down = _PHASES[i][0] == "client"
        y0, y1 = (lanes["client"] - 0.38, lanes["server"] + 0.38) if down else (lanes["server"] + 0.38,
                                                                                lanes["client"] - 0.38)
        _arrow(ax, (x + 1.6, y0), (x + 2.0, y1), color="#7a3b9a" if i >= 2 else "#222222")
        ax.text(x + 1.8, lanes["wire"], f"{marks[i]} {kind}: {symbol}", ha="center", va="center", fontsize=7.5,
                bbox=dict(fc="white", ec="#888888", pad=1.5))
    ax.annotate("", xy=(10.9, 0.2), xytext=(1.4, 0.2), arrowprops=dict(arrowstyle="->", color="#666666"))
    ax.text(6.1, 0.05, "time →", ha="center", va="bottom", fontsize=8, color="#666666")
    ax.text(5.5, 3.75, "one split training step: four messages, each sealed on the client's own channel",
            ha="center", fontsize=10.5, weight="bold")
    return fig


def threat_map() -> Figure:
    """Who can read what: the server, a peer client and an eavesdropper around one victim's traffic.

    * the **server** decrypts every frame it must compute on: the activations ``h_A`` and the
      returned gradient ``dL/dh_B`` (and, if it averages them, the client blocks);
    * a **peer client** holds only its own key: the victim's frames are ciphertext to it; it
      does hold the same averaged client blocks;
    * an **eavesdropper** on the network sees clear headers (who, kind, step, sequence
      number) and sizes.

    Returns:
        The figure.

    Example:
        >>> fig = threat_map()
        >>> any("eavesdropper" in t.get_text() for t in fig.axes[0].texts)
        True
    """
    fig, ax = _canvas(10, 4.8, (0, 10), (0, 6))
    _box(ax, 0.3, 2.4, 2.4, 1.2, "victim client\n(hospital-a)", _CLIENT, weight="bold")
    _box(ax, 7.3, 2.4, 2.4, 1.2, "server\n(honest but curious)", _SERVER, weight="bold")
    _box(ax, 3.8, 4.5, 2.4, 1.0, "peer client\n(hospital-b)", _CLIENT, weight="bold")
    _box(ax, 3.8, 0.4, 2.4, 1.0, "eavesdropper\n(on the network)", "#f3dede", weight="bold")
    _arrow(ax, (2.75, 3.15), (7.25, 3.15), "sealed frames: h_A, dL/dh_B", offset=(0, 0.25))
    _arrow(ax, (7.25, 2.8), (2.75, 2.8), "sealed frames: h_B, dL/dh_A", offset=(0, -0.25))
    _arrow(ax, (5.0, 3.3), (5.0, 4.45), color="#888888", style="->")
    _arrow(ax, (5.0, 2.65), (5.0, 1.45), color="#888888", style="->")
    ax.text(6.35, 5.0, "reads: ciphertext + clear headers\nholds: the same averaged blocks", fontsize=8,
            va="center", color="#333333")
    ax.text(3.65, 0.9, "reads: clear headers (who, kind,\nstep, seq) and every frame's size", fontsize=8,
            ha="right", va="center", color="#333333")
    ax.text(8.5, 2.25, "decrypts to compute:\nreads h_A and dL/dh_B;\nholds the client blocks\nif it averages them",
            ha="center", va="top", fontsize=8, color=_DANGER)
    ax.text(5.0, 5.85, "who can read what (per-client keys on)", ha="center", fontsize=11, weight="bold")
    ax.text(1.5, 4.9, "keys stop: peer, eavesdropper\nkeys do not stop: the server", ha="center", va="center",
            fontsize=8, bbox=dict(fc="#fff7d6", ec="#b59a2a", pad=3))
    return fig


def recovery_heatmap(values: Sequence[Sequence[float | None]], rows: Sequence[str], cols: Sequence[str], *,
                     labels: Sequence[Sequence[str]] | None = None, title: str = "",
                     colorbar_label: str = "recovered (%)") -> Figure:
    """A table of recovery rates (fractions) as a heatmap; ``None`` or NaN cells read "not measured".

    Args:
        values: one row per attack, one fraction in [0, 1] (or ``None``) per column.
        rows, cols: the attack and layout names.
        labels: text for each cell (default: the rate in %).
        title: the figure's title.
        colorbar_label: the colour bar's label.

    Returns:
        The figure.

    Raises:
        ValueError: the shape of ``values`` (or ``labels``) does not match ``rows`` × ``cols``,
            or a rate lies outside [0, 1].

    Example:
        >>> fig = recovery_heatmap([[1.0, None], [0.5, 0.1]], ["a", "b"], ["x", "y"])
        >>> sorted(t.get_text() for t in fig.axes[0].texts)
        ['10', '100', '50', 'not\\nmeasured']
    """
    if len(values) != len(rows) or any(len(r) != len(cols) for r in values):
        raise ValueError(f"values must be {len(rows)} rows of {len(cols)}; got "
                         f"{[len(r) for r in values]}")
    if labels is not None and (len(labels) != len(rows) or any(len(r) != len(cols) for r in labels)):
        raise ValueError("labels must have the shape of values")
    grid = [[math.nan if v is None else float(v) for v in row] for row in values]
    bad = [v for row in grid for v in row if not math.isnan(v) and not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"rates must be fractions in [0, 1]; got {bad[:3]}")
    fig, ax = plt.subplots(figsize=(1.25 * len(cols) + 3.2, 0.55 * len(rows) + 1.6))
    image = ax.imshow([[100 * v for v in row] for row in grid], cmap="Reds", vmin=0, vmax=100, aspect="auto")
    ax.set_facecolor("#eeeeee")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if math.isnan(v):
                text, color = "not\nmeasured", "#777777"
            else:
                text = labels[i][j] if labels is not None else f"{100 * v:.0f}"
                color = "white" if v > 0.6 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8 if math.isnan(v) else 9, color=color)
    ax.set_xticks(range(len(cols)), list(cols), rotation=25, ha="right", fontsize=8.5)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=8.5)
    fig.colorbar(image, ax=ax, label=colorbar_label, fraction=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
