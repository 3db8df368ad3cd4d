"""Process-backed sub-servers: M trunk replicas, one worker process each, and their proxies.

:class:`~flglm_kit.scheduling.ServerHierarchical` keeps its M trunk replicas in one process by
default. With ``processes=True`` it starts a :class:`SubServerGroup`: M worker processes
(:mod:`flglm_kit.subserver`), each holding one replica (the trunk and its own optimizer)
behind a :class:`ProcessCompute`, which the scheduler drives exactly like a
:class:`~flglm_kit.compute.TrunkCompute`. Averaging is a token-weighted ``all_reduce`` among
the workers (gloo on the CPU, NCCL with one GPU per worker: NCCL refuses two ranks on one GPU,
so several sub-servers on one GPU stay replicas in one process).

Workers start the way ``torchrun`` starts them (``subprocess.Popen`` of
``python -m flglm_kit.subserver`` with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT``), in their own session so a Ctrl-C in a
terminal does not cut a command in half. They stop when :meth:`SubServerGroup.close` (or
``server.close()``) closes their stdin, by pid with SIGTERM then SIGKILL if they do not; a
finalizer does the same when the group is garbage-collected or the interpreter exits, and a
worker whose parent dies reads EOF and exits.

Security: ``torch.distributed`` has no authentication and no encryption. Use process-backed
sub-servers only on machines you operate; the group binds to 127.0.0.1 by default.

Notebook 05 reaches this module through ``ServerHierarchical(processes=True)`` (it never calls
it directly).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_blob, save_file

from flglm_kit.compute import ComputeError, Member, OpenStep, TrunkCompute
from flglm_kit.optim import unique_parameters
from flglm_kit.split import OutputBlock, Trunk
from flglm_kit.subserver import DEFAULT_SPEC, PIPE_LIMITS, OptimizerSpec, receive_packet, send_packet, split_state
from flglm_kit.wire import Message, decode, encode

__all__ = ["SubServerGroup", "ProcessCompute", "RemoteStep", "SubServerError"]


class SubServerError(RuntimeError):
    """A sub-server process failed, died or did not answer; the text quotes its log."""


@dataclass
class RemoteStep(OpenStep):
    """An open step whose graph lives in a sub-server process (``activations``/``hidden`` are empty here)."""

    rank: int = 0
    key: int = 0


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    seq: int = 0


def _shutdown(procs: list[_Proc], setup_dir: Path) -> None:
    """End the workers by pid: EOF on their stdin, then SIGTERM, then SIGKILL; remove the setup dir."""
    for proc in procs:
        if proc.popen.stdin is not None and not proc.popen.stdin.closed:
            with contextlib.suppress(OSError):
                proc.popen.stdin.close()
    for proc in procs:
        for stop in (None, proc.popen.terminate, proc.popen.kill):
            if stop is not None and proc.popen.poll() is None:
                stop()
            try:
                proc.popen.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()
    shutil.rmtree(setup_dir, ignore_errors=True)


def _log_tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _loopback_interface() -> str | None:
    names = [name for _, name in socket.if_nameindex()] if hasattr(socket, "if_nameindex") else []
    return next((n for n in names if n in ("lo", "lo0")), None)


class SubServerGroup:
    """M sub-server processes, one trunk replica each, joined by a ``torch.distributed`` group.

    Args:
        trunk: the server's trunk (its weights go to every worker; it stays here as the first
            replica's copy in this process, refreshed from the worker, see :class:`ProcessCompute`).
        tail: the output block, only in the naive layout where the server holds it.
        replicas: M, the number of worker processes.
        optimizer_spec: the optimizer every worker builds (see :func:`~flglm_kit.subserver.resolve_optimizer_spec`).
        device: ``cpu`` (gloo) or ``cuda`` (NCCL, worker r on GPU r); default: where the trunk is.
        host: ``MASTER_ADDR``; 127.0.0.1 keeps the unauthenticated group on this machine.
        timeout_s: how long to wait for the workers to start, or for any answer.

    Raises:
        ValueError: an unsupported device, or fewer GPUs than replicas.
        SubServerError: a worker failed to start (the text quotes its log).
    """

    def __init__(self, trunk: Trunk, *, tail: OutputBlock | None = None, replicas: int = 2,
                 optimizer_spec: OptimizerSpec = DEFAULT_SPEC, device: torch.device | None = None,
                 host: str = "127.0.0.1", timeout_s: float = 300.0) -> None:
        params = unique_parameters(trunk, tail)
        kind = (device or next(iter(params), torch.empty(0)).device).type
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"process-backed sub-servers run on 'cpu' (gloo) or 'cuda' (NCCL), not {kind!r}")
        if kind == "cuda" and torch.cuda.device_count() < replicas:
            raise ValueError(f"{replicas} sub-server processes need {replicas} GPUs (NCCL refuses two ranks on one "
                             f"GPU); found {torch.cuda.device_count()}. Use processes=False to keep the replicas "
                             "in one process on one GPU")
        self.replicas, self.host, self.timeout_s = replicas, host, timeout_s
        self.dtype = next(iter(params), torch.empty(0)).dtype
        self._template = (trunk, tail)
        self.dir = Path(tempfile.mkdtemp(prefix="flglm-subservers-"))
        self._procs: list[_Proc] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self.dir)  # also at interpreter exit
        start = time.perf_counter()
        try:
            self._write_setup(trunk, tail, optimizer_spec, kind)
            self._start(kind)
            for r in range(replicas):
                self._receive(r)  # "ready"
        except BaseException:
            self.close()
            raise
        #: Seconds from spawning the workers to all of them ready (imports, process group, weights).
        self.start_seconds = time.perf_counter() - start
        self.last_sync_seconds = 0.0
        self.computes = [ProcessCompute(self, r, device=torch.device("cuda", r) if kind == "cuda" else
                                        torch.device("cpu")) for r in range(replicas)]

    def _write_setup(self, trunk: Trunk, tail: OutputBlock | None, spec: OptimizerSpec, kind: str) -> None:
        config = trunk.config
        n_layers = config.num_hidden_layers
        if tail is not None:
            tail_layers = len(tail.layer_indices)
            head_layers = n_layers - len(trunk.layer_indices) - tail_layers
        elif trunk.layer_indices:
            head_layers, tail_layers = trunk.layer_indices[0], n_layers - 1 - trunk.layer_indices[-1]
        else:
            head_layers, tail_layers = n_layers, 0
        state = {f"trunk.{k}": v for k, v in trunk.state_dict().items()}
        if tail is not None:
            state.update({f"tail.{k}": v for k, v in tail.state_dict().items()})
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(self.dir / "weights.safetensors"))
        setup = {"config_class": type(config).__name__, "config": config.to_json_string(use_diff=False),
                 "attn_implementation": getattr(config, "_attn_implementation", None) or "eager",
                 "head_layers": head_layers, "tail_layers": tail_layers, "tail_on_server": tail is not None,
                 "dtype": str(self.dtype).removeprefix("torch."), "device": kind, "optimizer": list(spec),
                 "timeout_s": self.timeout_s}
        (self.dir / "setup.json").write_text(json.dumps(setup))

    def _start(self, kind: str) -> None:
        with socket.socket() as s:  # a free port for the rendezvous store
            s.bind((self.host, 0))
            port = s.getsockname()[1]
        package_root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "MASTER_ADDR": self.host, "MASTER_PORT": str(port), "WORLD_SIZE": str(self.replicas),
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.replicas)))
        loopback = _loopback_interface()
        if self.host == "127.0.0.1" and loopback is not None:  # gloo/NCCL bind the same interface as the store
            env.setdefault("GLOO_SOCKET_IFNAME" if kind == "cpu" else "NCCL_SOCKET_IFNAME", loopback)
        for r in range(self.replicas):
            log = self.dir / f"subserver-{r}.log"
            with open(log, "wb") as err:
                popen = subprocess.Popen([sys.executable, "-m", "flglm_kit.subserver", str(self.dir)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, start_new_session=True)
            self._procs.append(_Proc(popen, log))

    @property
    def pids(self) -> list[int]:
        """The workers' process ids, in rank order."""
        return [p.popen.pid for p in self._procs]

    @property
    def alive(self) -> bool:
        """Whether every worker is still running."""
        return bool(self._procs) and all(p.popen.poll() is None for p in self._procs)

    def __repr__(self) -> str:
        state = "running" if self.alive else "closed"
        return f"SubServerGroup({self.replicas} processes, pids {self.pids}, {state})"

    def _failure(self, rank: int, what: str) -> SubServerError:
        proc = self._procs[rank]
        return SubServerError(f"sub-server {rank} (pid {proc.popen.pid}) {what}; the end of its log:\n"
                              f"{_log_tail(proc.log)}")

    def _receive(self, rank: int) -> tuple[Message, list[bytes]]:
        proc = self._procs[rank]
        assert proc.popen.stdout is not None
        fd = proc.popen.stdout.fileno()
        deadline = time.monotonic() + self.timeout_s
        while not select.select([fd], [], [], 0.5)[0]:
            for r, other in enumerate(self._procs):  # a dead peer leaves this one waiting in a collective
                if other.popen.poll() is not None:
                    raise self._failure(r, f"exited with code {other.popen.returncode}")
            if time.monotonic() > deadline:
                raise self._failure(rank, f"did not answer within {self.timeout_s:g} s")
        try:
            return receive_packet(fd)
        except EOFError:
            raise self._failure(rank, "closed its pipe (it exited)") from None

    def _post(self, rank: int, cmd: str, parts: Sequence[bytes] = (), **meta: Any) -> None:
        if not self.alive:
            raise SubServerError("the sub-server processes are closed or dead; build a new server")
        proc = self._procs[rank]
        proc.seq += 1
        assert proc.popen.stdin is not None
        try:
            send_packet(proc.popen.stdin.fileno(), Message("hello", "main", proc.seq, meta={"cmd": cmd, **meta}), parts)
        except OSError as err:
            raise self._failure(rank, f"could not be reached ({err})") from None

    def _answer(self, rank: int) -> tuple[Message, list[bytes]]:
        head, parts = self._receive(rank)
        compute = self.computes[rank]
        compute.version, compute.steps_done = int(head.meta["version"]), int(head.meta["steps_done"])
        if head.kind == "error":
            text = str(head.meta.get("error", "unknown error"))
            # A reason the compute wrote for the client goes back as such; anything else stays in the log.
            raise ComputeError(text) if head.meta.get("client_error") else SubServerError(f"sub-server {rank}: {text}")
        return head, parts

    def call(self, rank: int, cmd: str, parts: Sequence[bytes] = (), **meta: Any) -> tuple[Message, list[bytes]]:
        """Send one command to worker ``rank`` and wait for its answer (header and parts)."""
        self._post(rank, cmd, parts, **meta)
        return self._answer(rank)

    def average(self, weights: Sequence[float], *, moments: bool) -> None:
        """Every worker's parameters (and, with ``moments``, optimizer moments) := sum_r weights[r] x worker r's.

        One ``all_reduce`` per dtype over a flat buffer; the weights sum to 1 (token shares).
        """
        for r, w in enumerate(weights):
            self._post(r, "sync", weight=float(w), moments=moments)
        seconds = [float(self._answer(r)[0].meta["seconds"]) for r in range(self.replicas)]
        self.last_sync_seconds = max(seconds)

    def close(self) -> None:
        """Stop every worker by pid and remove the setup directory; idempotent.

        The first replica's weights are copied back first, so ``server.trunk`` keeps the final weights.
        """
        if self.alive and getattr(self, "computes", None):
            with contextlib.suppress(SubServerError):
                self.computes[0].pull()
        self._finalizer()


class ProcessCompute(TrunkCompute):
    """A :class:`~flglm_kit.compute.TrunkCompute` whose trunk and optimizer live in a sub-server process.

    It offers what the schedulers use: ``forward_eval``, ``forward_train`` (an open step is a
    :class:`RemoteStep`), ``backward``, ``discard``, ``version``, ``steps_done``, ``device``,
    ``dtype``. ``trunk`` (and ``tail``) are copies in this process, refreshed from the worker
    whenever its version moved since the last copy (one transfer of the weights); ``state_dict()``
    fetches the worker's weights now. ``optimizer`` is ``None`` here: the optimizer and its
    moments live in the worker.
    """

    def __init__(self, group: SubServerGroup, rank: int, *, device: torch.device) -> None:  # noqa: D107
        # No super().__init__(): nothing of the trunk is computed in this process.
        self.group, self.rank, self.device, self.dtype = group, rank, device, group.dtype
        self.optimizer = None
        self.version = self.steps_done = 0
        self._copy: tuple[Trunk, OutputBlock | None] | None = group._template if rank == 0 else None
        self._copied_at = 0

    def __repr__(self) -> str:
        pid = self.group.pids[self.rank] if self.rank < len(self.group.pids) else "?"
        return f"ProcessCompute(rank {self.rank}, pid {pid}, version {self.version})"

    def _fresh(self) -> tuple[Trunk, OutputBlock | None]:
        if self._copy is None:
            self._copy = copy.deepcopy(self.group._template)
            self._copied_at = -1
        if self._copied_at != self.version:
            if not self.group.alive:
                raise SubServerError(f"sub-server {self.rank} is closed and this process holds no copy of its "
                                     "last weights (only the first replica's are kept at close)")
            self.pull()
        return self._copy

    @property
    def trunk(self) -> Trunk:
        """This replica's trunk, as a copy in this process (refreshed if the worker's weights moved)."""
        return self._fresh()[0]

    @trunk.setter
    def trunk(self, value: Trunk) -> None:
        raise AttributeError("a process-backed replica's trunk lives in its worker; it cannot be replaced")

    @property
    def tail(self) -> OutputBlock | None:
        """This replica's output block (naive layout only), as a copy in this process."""
        return self._fresh()[1]

    @tail.setter
    def tail(self, value: OutputBlock | None) -> None:
        raise AttributeError("a process-backed replica's output block lives in its worker")

    @property
    def params(self) -> list[torch.nn.Parameter]:
        """The parameters of this process's copy (averaging runs in the workers, not on these)."""
        return unique_parameters(*self._fresh())

    @params.setter
    def params(self, value: list[torch.nn.Parameter]) -> None:
        raise AttributeError("a process-backed replica's parameters live in its worker")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The worker's weights now: ``trunk.<name>`` (and ``tail.<name>`` in the naive layout), on the CPU."""
        _, parts = self.group.call(self.rank, "state_dict")
        return load_blob(parts[0])

    @torch.no_grad()
    def pull(self) -> None:
        """Copy the worker's current weights into this process's copy of the trunk (and tail)."""
        version = self.version
        state = self.state_dict()
        if self._copy is None:
            self._copy = copy.deepcopy(self.group._template)
        trunk, tail = self._copy
        trunk.load_state_dict(split_state(state, "trunk"))
        if tail is not None:
            tail.load_state_dict(split_state(state, "tail"))
        self._copied_at = version

    def forward_eval(self, msgs: list[Message]) -> list[Message]:
        _, parts = self.group.call(self.rank, "forward_eval", [encode(m, limits=PIPE_LIMITS) for m in msgs])
        return [decode(p, limits=PIPE_LIMITS) for p in parts]

    def forward_train(self, msgs: list[Message]) -> tuple[OpenStep | None, list[Message]]:
        head, parts = self.group.call(self.rank, "forward_train", [encode(m, limits=PIPE_LIMITS) for m in msgs])
        replies = [decode(p, limits=PIPE_LIMITS) for p in parts]
        key = int(head.meta["open"])
        if key < 0:
            return None, replies
        members, row = {}, 0
        for m in msgs:  # the same rows the worker gave each member
            b, t = m.tensors["activations"].shape[:2]
            members[m.client_id] = Member(m.client_id, m.step, slice(row, row + b), t)
            row += b
        return RemoteStep(members, torch.empty(0), torch.empty(0), self.version, rank=self.rank, key=key), replies

    def backward(self, step: OpenStep, grads: dict[str, tuple[torch.Tensor, int]]) -> list[Message]:
        if not isinstance(step, RemoteStep) or step.rank != self.rank:
            raise TypeError("this step was not opened by this sub-server")
        parts = [encode(Message("output_grads", cid, step.members[cid].step, tensors={"output_grads": grad},
                                meta={"tokens": int(tokens)}), limits=PIPE_LIMITS)
                 for cid, (grad, tokens) in grads.items()]
        _, out = self.group.call(self.rank, "backward", parts, key=step.key)
        return [decode(p, limits=PIPE_LIMITS) for p in out]

    def discard(self, step: OpenStep) -> None:
        if isinstance(step, RemoteStep) and step.rank == self.rank:
            self.group.call(self.rank, "discard", key=step.key)
