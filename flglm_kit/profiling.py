"""Where a round's time goes: a recorder that wraps the parties' methods, and honest timing statistics.

:class:`PhaseTimer` wraps, on the instances you give it, the methods that make up a split
training step and sorts their time into phases:

==================  ======================================================================
client compute      ``SplitClient.begin_train_step`` (input block forward) and each
                    ``TrainStep.deliver`` (output block, loss, backward; input block backward, step)
wire and cipher     the client channel's ``seal`` / ``open``; the server's ``submit`` (open,
                    decode, check) and ``reply`` (seal)
server compute      each ``TrunkCompute``'s ``forward_train`` / ``forward_eval`` / ``backward``
                    and the scheduler's ``average`` (server-hierarchical)
==================  ======================================================================

Time is *exclusive*: a call nested in another (the seal inside a ``deliver``) counts for its
own phase only, so the phases never overlap and add up to at most the wall time. What is left
(the round driver, the queue, the scheduler's decisions) is reported as ``other``.

In one process the parties take turns on the same CPU. :meth:`PhaseTimer.timeline` replays the
recorded pieces as if every client and every sub-server had a machine of its own (each piece
starts once its lane is free and its clients' previous piece is done): the swimlanes of
notebook 05, and the waiting that a real deployment would have.

Introduced in notebook 05.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["PHASES", "Piece", "Timeline", "PhaseTimer", "MedianCI", "median_ci", "hardware_name", "threads"]

#: The measured phases, in drawing order.
PHASES = ("client compute", "wire and cipher", "server compute")
OTHER = "other"


@dataclass(frozen=True)
class Piece:
    """A stretch of time spent in one phase by one party, with nothing nested inside it.

    ``lane`` is where it is drawn (a client id, ``"server"`` or ``"sub-server i"``); ``clients``
    are the clients whose steps it serves (a trunk pass over K clients names all K).

    Introduced in notebook 05.
    """

    phase: str
    lane: str
    what: str
    clients: tuple[str, ...]
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class _Frame:
    phase: str
    lane: str
    what: str
    clients: tuple[str, ...]
    since: float  # start of the frame's current uninterrupted stretch


@dataclass
class Timeline:
    """Pieces laid out in time (seconds from the start), one lane per party: what a swimlane draws.

    Introduced in notebook 05.
    """

    pieces: list[Piece]
    lanes: list[str]

    @property
    def makespan(self) -> float:
        """From the first piece's start to the last piece's end, in seconds."""
        return max((p.end for p in self.pieces), default=0.0)

    def busy(self, lane: str) -> float:
        """Seconds ``lane`` spends working (any phase)."""
        return sum(p.seconds for p in self.pieces if p.lane == lane)

    def waiting(self, lane: str) -> float:
        """Seconds ``lane`` spends idle before its last piece ends: waiting for someone else."""
        ends = [p.end for p in self.pieces if p.lane == lane]
        return (max(ends) - self.busy(lane)) if ends else 0.0

    def breakdown(self, lanes: Iterable[str] | None = None) -> dict[str, float]:
        """Mean seconds per lane in each phase, and ``waiting``, over ``lanes`` (default: every lane)."""
        chosen = list(self.lanes if lanes is None else lanes)
        out = dict.fromkeys([*PHASES, "waiting"], 0.0)
        for p in self.pieces:
            if p.lane in chosen:
                out[p.phase] += p.seconds / len(chosen)
        for lane in chosen:
            out["waiting"] += self.waiting(lane) / len(chosen)
        return out


class PhaseTimer:
    """Time the phases of split training by wrapping the parties' methods on their instances.

    Args:
        server: a :class:`~flglm_kit.server.SplitServer` (its ``submit``, ``reply``, its
            computes and its scheduler's ``average`` are wrapped), or ``None``.
        clients: :class:`~flglm_kit.client.SplitClient` objects (``begin_train_step``, the
            ``deliver`` of each step they begin, and their channel's ``seal`` / ``open``).
        clock: seconds, monotonic (default ``time.perf_counter``).

    Use it as a context manager: the wrappers exist only inside the ``with`` block, and on
    leaving it every wrapped attribute is restored (the class's method shows through again).

    Example:
        >>> from flglm_kit import tiny_model
        >>> from flglm_kit.exercises import small_federation
        >>> from flglm_kit.rounds import run_round
        >>> fed = small_federation(tiny_model(seed=0), num_clients=2)
        >>> clients = list(fed.clients.values())
        >>> with PhaseTimer(fed.server, clients) as timer:
        ...     _ = run_round([(c, (torch.randint(3, 100, (1, 8)),)) for c in clients])
        >>> all(timer.totals()[p] > 0 for p in PHASES), sum(timer.totals().values()) <= timer.wall + 1e-9
        (True, True)
        >>> "begin_train_step" in vars(clients[0])  # unwrapped on exit
        False

    Introduced in notebook 05.
    """

    def __init__(self, server: Any = None, clients: Iterable[Any] = (), *,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.server, self.clients, self.clock = server, list(clients), clock
        self.pieces: list[Piece] = []
        self.wall = 0.0
        self._t0 = 0.0
        self._stack: list[_Frame] = []
        self._wrapped: list[tuple[object, str, bool, Any]] = []  # (object, name, had its own, its own)
        self._active = False
        self.server_lanes: list[str] = []

    # -- wrapping ---------------------------------------------------------------------------
    def _wrap(self, obj: object, name: str, phase: str, lane: str | Callable[..., str], what: str,
              clients: Callable[..., tuple[str, ...]], *, after: Callable[[Any], None] | None = None) -> None:
        original = getattr(obj, name)
        own = vars(obj).get(name, _MISSING)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self._active:
                return original(*args, **kwargs)
            where = lane(*args, **kwargs) if callable(lane) else lane
            self._push(phase, where, what, clients(*args, **kwargs))
            try:
                result = original(*args, **kwargs)
            finally:
                self._pop()
            if after is not None:
                after(result)
            return result

        setattr(obj, name, timed)
        self._wrapped.append((obj, name, own is not _MISSING, own))

    def _wrap_client(self, client: Any) -> None:
        cid = str(client.client_id)
        mine: Callable[..., tuple[str, ...]] = lambda *a, **k: (cid,)  # noqa: E731
        self._wrap(client, "begin_train_step", "client compute", cid, "input block forward", mine,
                   after=lambda step: self._wrap(step, "deliver", "client compute", cid, "output / input block",
                                                 mine))
        if client.channel is not None:
            self._wrap(client.channel, "seal", "wire and cipher", cid, "client seal", mine)
            self._wrap(client.channel, "open", "wire and cipher", cid, "client open", mine)

    def _wrap_server(self, server: Any) -> None:
        from flglm_kit.crypto import peek_header  # reads the clear header only

        def sender(frame: bytes) -> tuple[str, ...]:
            try:
                return (peek_header(frame).client_id,)
            except Exception:  # noqa: BLE001 - a malformed frame is still timed
                return ()

        self._wrap(server, "submit", "wire and cipher", lambda frame: (sender(frame) or ("server",))[0],
                   "server open + check", sender)
        self._wrap(server, "reply", "wire and cipher", lambda msg, **k: str(msg.client_id), "server seal",
                   lambda msg, **k: (str(msg.client_id),))
        computes = list(server.computes)
        self.server_lanes = ["server"] if len(computes) == 1 else [f"sub-server {i}" for i in range(len(computes))]
        for compute, lane in zip(computes, self.server_lanes):
            ids = lambda msgs: tuple(str(m.client_id) for m in msgs)  # noqa: E731
            self._wrap(compute, "forward_train", "server compute", lane, "trunk forward", ids)
            self._wrap(compute, "forward_eval", "server compute", lane, "trunk forward (eval)", ids)
            self._wrap(compute, "backward", "server compute", lane, "trunk backward + step",
                       lambda step, grads: tuple(grads))
        if callable(getattr(server.scheduler, "average", None)):
            self._wrap(server.scheduler, "average", "server compute", "server", "average replicas", lambda: ())

    def __enter__(self) -> PhaseTimer:
        if self._wrapped:
            raise RuntimeError("this PhaseTimer is already in use; make a new one")
        for client in self.clients:
            self._wrap_client(client)
        if self.server is not None:
            self._wrap_server(self.server)
        self.pieces, self._stack = [], []
        self._active = True
        self._t0 = self.clock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = self.clock() - self._t0
        self._active = False
        for obj, name, had_own, own in reversed(self._wrapped):
            if had_own:
                setattr(obj, name, own)
            else:
                delattr(obj, name)
        self._wrapped.clear()

    # -- recording --------------------------------------------------------------------------
    def _emit(self, frame: _Frame, now: float) -> None:
        if now > frame.since:
            self.pieces.append(Piece(frame.phase, frame.lane, frame.what, frame.clients,
                                     frame.since - self._t0, now - self._t0))

    def _push(self, phase: str, lane: str, what: str, clients: tuple[str, ...]) -> None:
        now = self.clock()
        if self._stack:  # the caller's stretch ends here; the callee's time is not the caller's
            self._emit(self._stack[-1], now)
        self._stack.append(_Frame(phase, lane, what, clients, now))

    def _pop(self) -> None:
        now = self.clock()
        self._emit(self._stack.pop(), now)
        if self._stack:
            self._stack[-1].since = now

    # -- reading ----------------------------------------------------------------------------
    def totals(self) -> dict[str, float]:
        """Seconds per phase (:data:`PHASES`), and ``other``: the wall time nothing wrapped accounts for."""
        out = dict.fromkeys(PHASES, 0.0)
        for p in self.pieces:
            out[p.phase] = out.get(p.phase, 0.0) + p.seconds
        out[OTHER] = max(self.wall - sum(out.values()), 0.0)
        return out

    def table(self) -> str:
        """A text table: for each phase and what ran in it, the calls, total milliseconds and share of wall time."""
        rows: dict[tuple[str, str], list[float]] = {}
        for p in self.pieces:
            row = rows.setdefault((p.phase, p.what), [0.0, 0.0])
            row[0] += 1
            row[1] += p.seconds
        wall = self.wall or 1.0
        lines = [f"{'phase':16s} {'what':24s} {'pieces':>6s} {'ms':>9s} {'share':>6s}"]
        for (phase, what), (n, sec) in sorted(rows.items(), key=lambda kv: (PHASES.index(kv[0][0]), -kv[1][1])):
            lines.append(f"{phase:16s} {what:24s} {int(n):6d} {1000 * sec:9.2f} {sec / wall:6.1%}")
        other = self.totals()[OTHER]
        lines.append(f"{OTHER:16s} {'driver, queue, scheduler':24s} {'':>6s} {1000 * other:9.2f} {other / wall:6.1%}")
        lines.append(f"{'wall':16s} {'':24s} {'':>6s} {1000 * self.wall:9.2f} {1:6.1%}")
        return "\n".join(lines)

    def timeline(self, *, parallel: bool = True) -> Timeline:
        """The recorded pieces as lanes: as they ran (``parallel=False``: one CPU, in turn), or replayed
        as if each client and each sub-server had its own machine.

        The replay keeps every lane's order and every client's order of pieces, and lets a
        piece start as soon as its lane is free and the previous piece of each of its clients is
        done; averaging the replicas waits for every sub-server. Wire pieces keep their measured
        cost (in-process: no network latency is added).
        """
        client_lanes = list(dict.fromkeys([str(c.client_id) for c in self.clients]
                                          + [c for p in self.pieces for c in p.clients]))
        lanes = client_lanes + [lane for lane in dict.fromkeys(self.server_lanes + [p.lane for p in self.pieces])
                                if lane not in client_lanes]
        if not parallel:
            return Timeline(list(self.pieces), lanes)
        lane_free: dict[str, float] = {}
        ready: dict[str, float] = {}
        out = []
        for p in sorted(self.pieces, key=lambda q: q.start):
            after = [ready.get(c, 0.0) for c in p.clients]
            if p.what == "average replicas":  # a barrier: every replica must be done
                after += [lane_free.get(lane, 0.0) for lane in self.server_lanes]
            start = max([lane_free.get(p.lane, 0.0), *after])
            end = start + p.seconds
            out.append(Piece(p.phase, p.lane, p.what, p.clients, start, end))
            lane_free[p.lane] = end
            for c in p.clients:
                ready[c] = end
            if p.what == "average replicas":
                for lane in self.server_lanes:
                    lane_free[lane] = end
        return Timeline(out, lanes)


class _Missing:
    pass


_MISSING = _Missing()


@dataclass(frozen=True)
class MedianCI:
    """A median with a distribution-free confidence interval from order statistics.

    Introduced in notebook 05.
    """

    median: float
    low: float
    high: float
    n: int
    coverage: float  # the interval's exact coverage (>= the level asked for, when n allows it)
    samples: tuple[float, ...] = field(repr=False, default=())

    def __str__(self) -> str:
        return f"{self.median:.4g} [{self.low:.4g}, {self.high:.4g}] (n={self.n}, {self.coverage:.0%} CI)"


def median_ci(samples: Sequence[float], *, level: float = 0.95) -> MedianCI:
    """Median of ``samples`` and the narrowest symmetric order-statistic interval covering it with
    probability >= ``level`` (binomial, no assumption on the distribution).

    With too few samples for ``level`` (n < 6 at 95 %) the interval is [min, max] and
    ``coverage`` says what it really is.

    Example:
        >>> ci = median_ci([5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0])
        >>> ci.median, ci.low, ci.high, round(ci.coverage, 3)
        (4.0, 1.0, 7.0, 0.984)

    Introduced in notebook 05.
    """
    xs = sorted(float(x) for x in samples)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci needs at least one sample")
    median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    cdf = [sum(math.comb(n, i) for i in range(j + 1)) / 2**n for j in range(n + 1)]  # P(B <= j), B ~ Bin(n, 1/2)
    best = (0, n - 1, 1 - 2 * cdf[0] if n > 1 else 0.0)
    for j in range(n // 2):  # interval [x_(j), x_(n-1-j)] (0-based) covers with 1 - 2 P(B <= j)
        coverage = 1 - 2 * cdf[j]
        if coverage >= level:
            best = (j, n - 1 - j, coverage)
        else:
            break
    return MedianCI(median, xs[best[0]], xs[best[1]], n, best[2], tuple(xs))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads of torch, and give back the previous number after.

    Timings are taken inside it rather than by setting torch's threads for a whole session: a
    tiny model gains nothing from a second thread, and on a shared machine one thread is far
    steadier (two threads on two busy cores can run several times slower).

    Example:
        >>> before = torch.get_num_threads()
        >>> with threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True

    Introduced in notebook 05.
    """
    if n < 1:
        raise ValueError(f"threads(n) needs n >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hardware_name(device: torch.device | str | None = None) -> str:
    """A short name of the machine the timings ran on: the GPU's name, or the CPU model and its cores.

    Example:
        >>> isinstance(hardware_name("cpu"), str)
        True

    Introduced in notebook 05.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"
