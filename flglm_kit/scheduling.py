"""Schedulers: when the server's trunk runs, on whose requests, and when the weights move.

The server's front desk (:class:`~flglm_kit.server.SplitServer`) opens and checks each frame
and queues the request; a scheduler takes requests from that queue and runs them on one or
more :class:`~flglm_kit.compute.TrunkCompute` (the trunk, its optimizer, a version):

================================  ===============================================================
:class:`Sequential`               one client's step at a time, in arrival order; others wait
:class:`ClientBatching`           K clients' activations in one trunk forward, one backward,
                                  one optimizer step (token-weighted: one big batch of the union)
:class:`ServerHierarchical`       M trunk replicas (sub-servers), each serving its group of
                                  clients, averaged every ``sync_every`` optimizer steps
================================  ===============================================================

Evaluation requests never wait: they do not move the weights. A client that opens a training
step and never sends its output gradients is a straggler: after ``deadline_s`` seconds its
share is dropped, it gets an error saying so, and the others go on.

To write your own scheduler, subclass :class:`Scheduler` and implement :meth:`Scheduler.run`
with the desk's few verbs (``take``, ``reply``, ``refuse``) and a compute's
``forward_eval`` / ``forward_train`` / ``backward`` (notebook 05 has an exercise).

Introduced in notebook 05.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

from flglm_kit.compute import OpenStep, TrunkCompute
from flglm_kit.losses import supervised_tokens
from flglm_kit.optim import OptimizerFactory
from flglm_kit.split import OutputBlock, Trunk
from flglm_kit.replicas import SubServerGroup
from flglm_kit.subserver import OptimizerSpec, resolve_optimizer_spec
from flglm_kit.wire import Message

if TYPE_CHECKING:  # the server imports this module, not the other way round
    from flglm_kit.server import SplitServer

__all__ = ["Scheduler", "Sequential", "ClientBatching", "ServerHierarchical", "is_train_forward", "is_eval_forward"]

Clock = Callable[[], float]


def is_train_forward(msg: Message) -> bool:
    """A training ``activations`` request (it opens a step)."""
    return msg.kind == "activations" and msg.meta.get("mode", "train") == "train"


def is_eval_forward(msg: Message) -> bool:
    """An evaluation ``activations`` request (no gradient, no weight change)."""
    return msg.kind == "activations" and msg.meta.get("mode", "train") != "train"


def _grads_of(client_id: str, step: int) -> Callable[[Message], bool]:
    return lambda m: m.kind == "output_grads" and m.client_id == client_id and m.step == step


def _train_forward_of(client_id: str) -> Callable[[Message], bool]:
    return lambda m: is_train_forward(m) and m.client_id == client_id


class Scheduler:
    """Base class: bound to one server, it runs queued requests on the server's computes.

    Args:
        deadline_s: how long a started step waits for a client's output gradients (and how long a
            batch waits for more clients) before going on without them.
        clock: a monotonic clock in seconds (tests pass a fake one).
    """

    name = "scheduler"
    replicas = 1

    def __init__(self, *, deadline_s: float = 60.0, clock: Clock = time.monotonic) -> None:
        if not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 seconds, not {deadline_s!r}")
        self.deadline_s, self.clock = deadline_s, clock
        self.server: SplitServer | None = None
        self.computes: list[TrunkCompute] = []
        self.dropped: list[tuple[str, int, str]] = []  # (client id, step, why), newest last
        self.runners: list[_StepRunner] = []  # one per trunk replica, made in bind()

    def make_computes(self, trunk: Trunk, *, tail: OutputBlock | None, optimizer: OptimizerFactory,
                      device: torch.device | None) -> list[TrunkCompute]:
        """The trunk replicas this scheduler runs on: the trunk itself, then copies with their own optimizers."""
        replicas = [(trunk, tail)] + [copy.deepcopy((trunk, tail)) for _ in range(self.replicas - 1)]
        return [TrunkCompute(t, tail=o, optimizer=optimizer, device=device) for t, o in replicas]

    def bind(self, server: SplitServer, computes: list[TrunkCompute]) -> None:
        """Attach to a server and its computes (the server calls this once)."""
        if len(computes) != self.replicas:
            raise ValueError(f"{self.name} needs {self.replicas} trunk replica(s), got {len(computes)}")
        self.server, self.computes = server, computes

    @property
    def desk(self) -> SplitServer:
        if self.server is None:
            raise RuntimeError("this scheduler is not bound to a server; pass it as SplitServer(scheduler=...)")
        return self.server

    def run(self) -> int:
        """Run whatever can run now; return how many requests were answered."""
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        """When (on :attr:`clock`) something waiting will be forced to go on; ``None`` if nothing waits."""
        return None

    def close(self) -> None:
        """Release what this scheduler holds (nothing, unless it runs worker processes)."""

    # -- shared moves ------------------------------------------------------------------------
    def _run_evals(self, compute: TrunkCompute, accept: Callable[[Message], bool] = lambda m: True) -> int:
        msgs = self.desk.take(lambda m: is_eval_forward(m) and accept(m))
        if msgs:
            self._guarded(msgs, lambda: self._reply_all(compute.forward_eval(msgs)))
        return len(msgs)

    def _reply_all(self, replies: list[Message]) -> None:
        for reply in replies:
            self.desk.reply(reply)

    def _guarded(self, msgs: list[Message], work: Callable[[], object]) -> bool:
        """Run ``work``; if it raises, every client in ``msgs`` gets an error and the server goes on."""
        try:
            work()
            return True
        except Exception as err:  # noqa: BLE001 - one bad request must not stop the server
            for msg in msgs:
                self.desk.fail(msg, err)
            return False

    def _start(self, compute: TrunkCompute, msgs: list[Message]) -> tuple[OpenStep | None, bool]:
        """A training forward over ``msgs``; replies sent. Returns the open step (if the layout needs a
        backward) and whether the forward succeeded."""
        opened: list[OpenStep | None] = [None]

        def work() -> None:
            step, replies = compute.forward_train(msgs)
            for reply in replies:
                self.desk.reply(reply, awaits_grads=step is not None)
            opened[0] = step

        ok = self._guarded(msgs, work)
        return opened[0], ok

    def _finish(self, compute: TrunkCompute, step: OpenStep, grads: dict[str, Message]) -> bool:
        """Backward with the output gradients that came, one optimizer step; replies sent. False if it failed."""
        if not grads:
            compute.discard(step)
            return False
        given = {cid: (m.tensors["output_grads"], int(m.meta["tokens"])) for cid, m in grads.items()}
        return self._guarded(list(grads.values()), lambda: self._reply_all(compute.backward(step, given)))

    def _drop(self, client_id: str, step: int, why: str, *, notify: bool = True) -> None:
        self.dropped.append((client_id, step, why))
        if notify:
            self.desk.refuse(client_id, step, why)

    def forget(self, client_id: str, why: str) -> None:
        """Drop ``client_id`` from any open step without notice (it reconnected: its old step is gone)."""
        for runner in self.runners:
            if runner.open is not None and client_id in runner.open.members:
                runner.drop(client_id, why, notify=False)

    def _collect(self, step: OpenStep, grads: dict[str, Message]) -> list[str]:
        """Move members' queued output gradients into ``grads``; return members that abandoned the step."""
        abandoned = []
        for cid, member in step.members.items():
            if cid in grads:
                continue
            got = self.desk.take(_grads_of(cid, member.step), limit=1)
            if got:
                grads[cid] = got[0]
            elif self.desk.has(_train_forward_of(cid)):
                abandoned.append(cid)  # it started a newer step: this one will never be finished
        return abandoned


class _StepRunner:
    """One compute's open step and its bookkeeping, shared by the schedulers below."""

    def __init__(self, owner: Scheduler, compute: TrunkCompute, *, max_clients: int | None,
                 wait_for: int, accept: Callable[[Message], bool]) -> None:
        self.owner, self.compute = owner, compute
        self.max_clients, self.wait_for, self.accept = max_clients, wait_for, accept
        self.open: OpenStep | None = None
        self.grads: dict[str, Message] = {}
        self.tokens_since_sync = 0
        self.steps_since_sync = 0

    def busy(self) -> bool:
        return self.open is not None

    def has_work(self) -> bool:
        return self.busy() or self.owner.desk.has(lambda m: is_train_forward(m) and self.accept(m))

    def waiting_since(self) -> float | None:
        if self.open is not None:
            return self.open.started
        arrived = self.owner.desk.arrival_of(lambda m: is_train_forward(m) and self.accept(m))
        return arrived

    def try_start(self) -> bool:
        desk = self.owner.desk
        firsts: dict[str, Message] = {}
        for msg in desk.peek(lambda m: is_train_forward(m) and self.accept(m)):
            firsts.setdefault(msg.client_id, msg)  # one step per client per pass: its earliest
        if not firsts:
            return False
        oldest = desk.arrival_of(lambda m: is_train_forward(m) and self.accept(m))
        overdue = oldest is not None and self.owner.clock() - oldest >= self.owner.deadline_s
        if len(firsts) < self.wait_for and not overdue:
            return False  # wait for more clients (until the deadline)
        chosen = list(firsts.values())[: self.max_clients]
        taken = set(map(id, chosen))
        desk.take(lambda m: id(m) in taken)
        self.open, ok = self.owner._start(self.compute, chosen)
        if self.open is not None:
            self.open.started = self.owner.clock()
        elif ok:  # naive layout: the step finished in the forward
            self._account(chosen)
        self.grads = {}
        return True

    def try_finish(self) -> bool:
        step = self.open
        if step is None:
            return False
        for cid in self.owner._collect(step, self.grads):  # the client knows: no notice
            self.drop(cid, "it started a newer step before sending this one's output gradients", notify=False)
        missing = [cid for cid in step.members if cid not in self.grads]
        if missing and self.owner.clock() - step.started < self.owner.deadline_s:
            return False
        for cid in missing:
            self.drop(cid, f"no output gradients within {self.owner.deadline_s:g} s; the server went on without "
                            "this client's share of the step")
        self.open = None
        if self.grads:
            if self.owner._finish(self.compute, step, self.grads):
                self._account(list(self.grads.values()))
        else:
            self.compute.discard(step)
        self.grads = {}
        return True

    def drop(self, cid: str, why: str, *, notify: bool = True) -> None:
        """Take ``cid`` out of the open step; its rows get no gradient."""
        assert self.open is not None
        member = self.open.members.pop(cid)
        self.grads.pop(cid, None)
        self.owner._drop(cid, member.step, f"step {member.step} was dropped: {why}", notify=notify)

    def _account(self, msgs: list[Message]) -> None:
        self.steps_since_sync += 1
        for m in msgs:
            tokens = m.meta.get("tokens")
            if "labels" in m.tensors:  # naive layout: the server has the labels, so it counts them
                tokens = supervised_tokens(m.tensors["labels"])
            self.tokens_since_sync += int(tokens) if isinstance(tokens, int) else 1


class _OneTrunk(Scheduler):
    """One trunk, one open step at a time, of up to ``max_clients`` clients: the loop Sequential and
    ClientBatching share (Sequential is client-batching with one client per trunk pass)."""

    def __init__(self, *, max_clients: int | None, wait_for: int, deadline_s: float, clock: Clock) -> None:
        super().__init__(deadline_s=deadline_s, clock=clock)
        self.max_clients, self.wait_for = max_clients, wait_for

    def bind(self, server: SplitServer, computes: list[TrunkCompute]) -> None:
        super().bind(server, computes)
        self.runner = _StepRunner(self, computes[0], max_clients=self.max_clients, wait_for=self.wait_for,
                                  accept=lambda m: True)
        self.runners = [self.runner]

    def run(self) -> int:
        answered = 0
        while True:
            answered += self._run_evals(self.computes[0])
            progressed = self.runner.try_finish() if self.runner.busy() else self.runner.try_start()
            if not progressed:
                return answered
            answered += 1

    def next_deadline(self) -> float | None:
        since = self.runner.waiting_since()
        return None if since is None else since + self.deadline_s


class Sequential(_OneTrunk):
    """One client's step at a time, in arrival order: vanilla split learning.

    A client whose training request arrives while another client's step is open waits until
    that step's backward (or its deadline); it never fails. Each client therefore gets exactly
    the losses it would get if the clients trained one after another in that order.

    Example:
        >>> Sequential(deadline_s=5).name
        'sequential'
    """

    name = "sequential"

    def __init__(self, *, deadline_s: float = 60.0, clock: Clock = time.monotonic) -> None:
        super().__init__(max_clients=1, wait_for=1, deadline_s=deadline_s, clock=clock)


class ClientBatching(_OneTrunk):
    """K clients' activations through one trunk forward and one backward, with one optimizer step.

    Args:
        clients: how many clients' steps go into one trunk pass. ``None`` batches whatever
            training requests are queued when the scheduler runs (one step per client).
        deadline_s: a batch short of ``clients`` starts anyway once its oldest request has
            waited this long; a member whose output gradients are this late is dropped.

    The objective is token-weighted over the batch, so the trunk takes the step it would take
    on one big batch of the union; each client gets back the gradient of its own mean loss.

    Example:
        >>> ClientBatching(clients=4).name
        'client-batching'
    """

    name = "client-batching"

    def __init__(self, clients: int | None = None, *, deadline_s: float = 60.0, clock: Clock = time.monotonic) -> None:
        if clients is not None and clients < 1:
            raise ValueError(f"clients must be >= 1 or None, not {clients!r}")
        super().__init__(max_clients=clients, wait_for=clients or 1, deadline_s=deadline_s, clock=clock)
        self.clients = clients


class ServerHierarchical(Scheduler):
    """M sub-servers, each a trunk replica with its own optimizer, serving its group of clients.

    Args:
        sub_servers: M, the number of trunk replicas.
        sync_every: average the replicas after each has taken this many optimizer steps. A
            replica that gets there first waits for the others, at most ``deadline_s`` (a
            replica whose clients went quiet does not hold the rest for ever); replicas that
            serve no client yet do not count.
        batch: inside each sub-server, batch its group's queued steps (:class:`ClientBatching`
            with ``clients=None``); ``False``: one step at a time (:class:`Sequential`).
        groups: client id -> sub-server index; clients not listed are assigned round-robin in
            the order they first send a training request.
        moments: ``"local"`` (each replica keeps its optimizer's moments, as torch's
            ``PeriodicModelAverager`` does) or ``"average"`` (every floating-point optimizer
            state tensor, e.g. Adam's ``exp_avg``, ``exp_avg_sq`` and step count or SGD's
            momentum buffer, gets the same token-weighted mean as the parameters).
        processes: ``False`` (default): the replicas live in this process, on one device (a
            single GPU, or the CPU). ``True``: each sub-server is its own process
            (:class:`~flglm_kit.replicas.SubServerGroup`, started like ``torchrun`` starts
            workers) and averaging is a ``torch.distributed`` all-reduce (gloo on the CPU, NCCL
            with one GPU per sub-server); the scheduler hands each worker its group's work and
            waits on all of them at once (one thread per worker), so they compute at the same
            time. ``torch.distributed`` has no authentication and no encryption: use it on your
            own machines only; it binds to ``host``.
        optimizer_spec: with ``processes=True``, the optimizer each worker builds, as a
            ``torch.optim`` class name and its keyword arguments (``("SGD", {"lr": 0.1})``); a
            custom optimizer factory cannot reach another process without pickle, so it needs
            a spec that makes the same optimizer. Default: the kit's AdamW, lr 1e-3.
        host: with ``processes=True``, the address of the workers' rendezvous (``MASTER_ADDR``).

    Averaging is weighted by the supervised tokens each replica trained on since the last
    sync, so with ``sync_every=1`` and plain SGD it equals :class:`ClientBatching` over all
    clients. With ``processes=True`` the server's ``trunk`` (and ``state_dict()``) is a copy in
    this process of the first replica, refreshed after each sync and at :meth:`close` (between
    syncs it shows the last synced weights); ``server.computes[r].state_dict()`` fetches replica
    ``r``'s weights now. Call ``server.close()`` (or :meth:`close`) to stop the workers.

    Example:
        >>> ServerHierarchical(sub_servers=2, sync_every=8).replicas
        2
    """

    name = "server-hierarchical"

    def __init__(self, sub_servers: int = 2, *, sync_every: int = 1, batch: bool = True,
                 groups: dict[str, int] | None = None, moments: str = "local", deadline_s: float = 60.0,
                 clock: Clock = time.monotonic, processes: bool = False, optimizer_spec: OptimizerSpec | None = None,
                 host: str = "127.0.0.1") -> None:
        super().__init__(deadline_s=deadline_s, clock=clock)
        if sub_servers < 1 or sync_every < 1:
            raise ValueError(f"sub_servers and sync_every must be >= 1, got {sub_servers} and {sync_every}")
        if moments not in ("local", "average"):
            raise ValueError(f"moments must be 'local' or 'average', not {moments!r}")
        self.replicas, self.sync_every, self.batch, self.moments = sub_servers, sync_every, batch, moments
        self.groups = dict(groups or {})
        self.syncs = 0
        self._barrier_since: float | None = None  # when the first replica reached sync_every
        self.processes, self.optimizer_spec, self.host = processes, optimizer_spec, host
        self.group: SubServerGroup | None = None  # the worker processes, with processes=True
        self._pool: ThreadPoolExecutor | None = None

    def make_computes(self, trunk: Trunk, *, tail: OutputBlock | None, optimizer: OptimizerFactory,
                      device: torch.device | None) -> list[TrunkCompute]:
        """The M replicas: in this process, or (``processes=True``) one worker process each.

        Raises:
            ValueError: ``processes=True`` with a custom optimizer factory and no matching ``optimizer_spec``.
            SubServerError: a worker process failed to start.
        """
        if not self.processes:
            return super().make_computes(trunk, tail=tail, optimizer=optimizer, device=device)
        spec = resolve_optimizer_spec(optimizer, self.optimizer_spec)
        self.group = SubServerGroup(trunk, tail=tail, replicas=self.replicas, optimizer_spec=spec, device=device,
                                    host=self.host)
        computes: list[TrunkCompute] = list(self.group.computes)
        return computes

    def close(self) -> None:
        """Stop the worker processes (``processes=True``; nothing to do otherwise). Idempotent."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self.group is not None:
            self.group.close()

    def _threads(self) -> ThreadPoolExecutor:
        """One thread per sub-server process, each waiting on its worker's pipe."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.replicas, thread_name_prefix="sub-server")
        return self._pool

    def group_of(self, client_id: str) -> int:
        """The sub-server that serves ``client_id`` (assigned on first sight)."""
        if client_id not in self.groups:
            self.groups[client_id] = len(self.groups) % self.replicas
        return self.groups[client_id]

    def bind(self, server: SplitServer, computes: list[TrunkCompute]) -> None:
        super().bind(server, computes)
        self.runners = [
            _StepRunner(self, compute, max_clients=None if self.batch else 1, wait_for=1, accept=self._serves(r))
            for r, compute in enumerate(computes)]

    def _serves(self, replica: int) -> Callable[[Message], bool]:
        """Whether a request is for ``replica``'s group."""
        return lambda m: self.group_of(m.client_id) == replica

    def _turn(self, runner: _StepRunner) -> tuple[int, bool]:
        """One replica's move: its evaluations, then finish its open step or start the next."""
        answered = self._run_evals(runner.compute, runner.accept)
        if runner.busy():
            return answered, runner.try_finish()
        if runner.steps_since_sync < self.sync_every:
            return answered, runner.try_start()
        return answered, False

    def run(self) -> int:
        answered = 0
        while True:
            for msg in self.desk.peek(lambda m: True):
                self.group_of(msg.client_id)  # new clients join a group in arrival order
            if self.group is None:  # replicas in this process take turns on its device
                turns = [self._turn(runner) for runner in self.runners]
            else:  # sub-server processes compute at the same time: one thread waits on each
                turns = list(self._threads().map(self._turn, self.runners))
            answered += sum(n for n, _ in turns)
            progressed = any(p for _, p in turns)
            if self._barrier_reached():
                self.average()
                progressed = True
            if not progressed:
                return answered
            answered += 1

    def _barrier_reached(self) -> bool:
        """Every serving replica took ``sync_every`` steps (or the others kept the first waiting past the deadline)."""
        if any(r.busy() for r in self.runners):
            return False
        serving = set(self.groups.values())
        ready = [i for i, r in enumerate(self.runners) if r.steps_since_sync >= self.sync_every]
        if not ready:
            self._barrier_since = None
            return False
        if self._barrier_since is None:
            self._barrier_since = self.clock()
        if serving <= set(ready):
            return True
        return self.clock() - self._barrier_since >= self.deadline_s

    @torch.no_grad()
    def average(self) -> None:
        """Set every replica to the token-weighted mean of the replicas' parameters (and moments)."""
        weights = [float(r.tokens_since_sync) for r in self.runners]
        total = sum(weights)
        weights = [w / total for w in weights] if total > 0 else [1.0 / len(weights)] * len(weights)
        if self.group is not None:  # each worker all-reduces its share; the versions come back from the workers
            self.group.average(weights, moments=self.moments == "average")
            self.group.computes[0].pull()  # the server's copy of the first replica: the averaged weights
        else:
            groups = zip(*(r.compute.params for r in self.runners))
            for params in groups:
                mean = sum(w * p for w, p in zip(weights, params))
                for p in params:
                    p.copy_(mean)
            if self.moments == "average":
                self._average_moments(weights)
            for r in self.runners:
                r.compute.version += 1  # the weights moved
        for r in self.runners:
            r.tokens_since_sync = r.steps_since_sync = 0
        self.syncs += 1
        self._barrier_since = None

    def _average_moments(self, weights: list[float]) -> None:
        states = [r.compute.optimizer.state if r.compute.optimizer else {} for r in self.runners]
        for params in zip(*(r.compute.params for r in self.runners)):
            per = [states[i].get(p, {}) for i, p in enumerate(params)]
            for key in per[0]:
                if all(key in s and torch.is_tensor(s[key]) and s[key].is_floating_point() for s in per):
                    mean = sum(w * s[key] for w, s in zip(weights, per))
                    for s in per:
                        s[key].copy_(mean)

    def next_deadline(self) -> float | None:
        times = [t for r in self.runners if (t := r.waiting_since()) is not None]
        if self._barrier_since is not None:
            times.append(self._barrier_since)
        return min(times) + self.deadline_s if times else None
