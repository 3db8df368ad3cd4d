"""The sub-server worker: one trunk replica in its own process, started like a ``torchrun`` worker.

With ``ServerHierarchical(processes=True)`` each sub-server is a process made by
:class:`~flglm_kit.replicas.SubServerGroup`: ``python -m flglm_kit.subserver SETUP_DIR`` with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in the environment,
as ``torchrun`` sets them (never a function pickled from a notebook). ``SETUP_DIR`` holds
``setup.json`` (the model config as JSON, the cut, the dtype, the device, the optimizer *spec*)
and ``weights.safetensors``; the worker rebuilds the model from the config, cuts it with
:func:`~flglm_kit.split.split_model`, loads the server's weights, joins the
``torch.distributed`` group (gloo on the CPU, NCCL with one GPU per worker) and serves
commands until its stdin closes.

The protocol on the worker's stdin/stdout (pipes private to the two processes): length-prefixed
frames, each a :func:`~flglm_kit.wire.encode`-d :class:`~flglm_kit.wire.Message`. A command is a
``hello`` whose meta ``cmd`` names it (``forward_eval``, ``forward_train``, ``backward``,
``discard``, ``sync``, ``state_dict``, ``close``) and meta ``parts`` counts the frames after it
(the clients' messages, wire-encoded); the answer is a ``welcome`` or an ``error`` carrying the
worker's ``version`` and ``steps_done``, then its parts (replies, or a safetensors blob of the
weights). Nothing is pickled either way. Library output goes to stderr, which the group writes
to ``SETUP_DIR/subserver-R.log``.

Security: ``torch.distributed`` has no authentication and no encryption. Run process-backed
sub-servers only on machines you operate; the group binds to 127.0.0.1 by default.

Notebook 05 reaches this module through ``ServerHierarchical(processes=True)`` (it never calls
it directly).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import transformers
from safetensors.torch import load_file, save as save_blob

from flglm_kit.compute import OpenStep, TrunkCompute
from flglm_kit.optim import OptimizerFactory, default_optimizer
from flglm_kit.split import split_model
from flglm_kit.wire import Limits, Message, ProtocolError, decode, encode

__all__ = ["OptimizerSpec", "DEFAULT_SPEC", "resolve_optimizer_spec", "send_packet", "receive_packet",
           "PIPE_LIMITS", "main"]

#: A ``torch.optim`` class name and its keyword arguments, e.g. ``("SGD", {"lr": 0.1})``.
OptimizerSpec = tuple[str, dict[str, Any]]
#: What :func:`flglm_kit.optim.default_optimizer` makes.
DEFAULT_SPEC: OptimizerSpec = ("AdamW", {"lr": 1e-3})

#: The pipe joins two processes of one operator: these limits catch bugs, not a hostile peer.
PIPE_LIMITS = Limits(max_bytes=2**40, max_header_bytes=2**20, max_tensors=64, max_rank=8, max_elements=2**38,
                     max_meta_items=256, max_str_len=2**16)
_LEN = struct.Struct("<Q")


# -- optimizer specs -------------------------------------------------------------------------------

def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The ``torch.optim`` class called ``name``; ``ValueError`` for anything else."""
    cls = getattr(torch.optim, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"optimizer_spec names {name!r}, which is not a torch.optim optimizer (e.g. 'AdamW', 'SGD')")
    return cls


def _kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}  # JSON lists back to tuples


def resolve_optimizer_spec(factory: OptimizerFactory, spec: OptimizerSpec | None) -> OptimizerSpec:
    """The optimizer spec a worker builds its optimizer from, checked against the server's factory.

    A factory is Python code and cannot reach another process without pickle, so process-backed
    sub-servers take a spec. With the kit's default factory the spec wins (``None``: AdamW, lr
    1e-3); with a custom factory the spec must make the same optimizer (class and settings).

    Args:
        factory: the server's optimizer factory.
        spec: ``(torch.optim class name, keyword arguments)``, JSON-serialisable.

    Returns:
        The spec to send.

    Raises:
        ValueError: no spec for a custom factory, an unknown class, or a spec that disagrees with the factory.

    Example:
        >>> resolve_optimizer_spec(lambda p: torch.optim.SGD(p, lr=0.1), ("SGD", {"lr": 0.1}))
        ('SGD', {'lr': 0.1})
    """
    if spec is None:
        if factory is default_optimizer:
            return DEFAULT_SPEC
        raise ValueError("a custom optimizer factory cannot cross to a sub-server process without pickle; pass "
                         "ServerHierarchical(..., optimizer_spec=('SGD', {'lr': 0.1})): a torch.optim class name "
                         "and its keyword arguments, the same optimizer the factory makes")
    name, kwargs = spec
    cls = optimizer_class(name)
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError("optimizer_spec's keyword arguments must be JSON numbers, strings, booleans or "
                         f"lists: {err}") from None
    wanted = cls([torch.nn.Parameter(torch.zeros(1))], **_kwargs(kwargs))
    if factory is not default_optimizer:
        made = factory([torch.nn.Parameter(torch.zeros(1))])
        if type(made) is not cls or len(made.param_groups) != 1 or made.defaults != wanted.defaults:
            raise ValueError(f"optimizer_spec {spec!r} does not make the optimizer the server's factory makes "
                             f"({type(made).__name__} with {made.defaults}); pass the same class and settings")
    return name, dict(kwargs)


# -- framing: length-prefixed frames over a pipe ---------------------------------------------------

def _write(fd: int, data: bytes) -> None:
    for chunk in (_LEN.pack(len(data)), data):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]


def _read(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        got = os.read(fd, min(n - len(buf), 1 << 20))
        if not got:
            raise EOFError("the pipe closed")
        buf += got
    return bytes(buf)


def send_packet(fd: int, head: Message, parts: Sequence[bytes] = ()) -> None:
    """Write a command or answer and its parts to ``fd``; ``head.meta["parts"]`` counts them."""
    head.meta["parts"] = len(parts)
    _write(fd, encode(head, limits=PIPE_LIMITS))
    for part in parts:
        _write(fd, part)


def receive_packet(fd: int) -> tuple[Message, list[bytes]]:
    """Read one command or answer and its parts from ``fd``; ``EOFError`` if the pipe closed."""
    head = decode(_read(fd, _LEN.unpack(_read(fd, _LEN.size))[0]), limits=PIPE_LIMITS)
    count = head.meta.get("parts", 0)
    assert isinstance(count, int)
    return head, [_read(fd, _LEN.unpack(_read(fd, _LEN.size))[0]) for _ in range(count)]


def split_state(state: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``part.`` (``"trunk"`` or ``"tail"``), without the prefix."""
    return {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}


@torch.no_grad()
def _all_reduce_mean(tensors: list[torch.Tensor], weight: float, device: torch.device) -> None:
    """Set each tensor to the weighted sum over the ranks of ``weight * tensor``, in one reduce per dtype."""
    for dtype in sorted({t.dtype for t in tensors}, key=str):
        group = [t for t in tensors if t.dtype == dtype]
        flat = torch.cat([t.detach().reshape(-1).to(device) for t in group]) * weight  # (N,)
        dist.all_reduce(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


# -- the worker ------------------------------------------------------------------------------------

class _Worker:
    """One sub-server: a TrunkCompute serving commands from the main process."""

    def __init__(self, compute: TrunkCompute, rank: int) -> None:
        self.compute, self.rank = compute, rank
        self.open: dict[int, OpenStep] = {}
        self.next_key = 0

    def handle(self, cmd: Any, head: Message, parts: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        compute = self.compute
        msgs = [decode(p, limits=PIPE_LIMITS) for p in parts]
        if cmd == "forward_eval":
            return {}, [encode(r, limits=PIPE_LIMITS) for r in compute.forward_eval(msgs)]
        if cmd == "forward_train":
            step, replies = compute.forward_train(msgs)
            key = -1
            if step is not None:
                key, self.next_key = self.next_key, self.next_key + 1
                self.open[key] = step
            return {"open": key}, [encode(r, limits=PIPE_LIMITS) for r in replies]
        if cmd == "backward":
            opened = self.open.pop(int(head.meta["key"]))
            grads = {m.client_id: (m.tensors["output_grads"], int(m.meta["tokens"])) for m in msgs}
            return {}, [encode(r, limits=PIPE_LIMITS) for r in compute.backward(opened, grads)]
        if cmd == "discard":
            gone = self.open.pop(int(head.meta["key"]), None)
            if gone is not None:
                compute.discard(gone)
            return {}, []
        if cmd == "sync":
            return {"seconds": self.sync(float(head.meta["weight"]), bool(head.meta["moments"]))}, []
        if cmd == "state_dict":
            state = {f"trunk.{k}": v for k, v in compute.trunk.state_dict().items()}
            if compute.tail is not None:
                state.update({f"tail.{k}": v for k, v in compute.tail.state_dict().items()})
            return {}, [save_blob({k: v.detach().cpu().contiguous() for k, v in state.items()})]
        raise ValueError(f"unknown sub-server command {cmd!r}")

    def sync(self, weight: float, moments: bool) -> float:
        """Token-weighted all-reduce of the parameters (and of the optimizer's moments); the weights moved."""
        start = time.perf_counter()
        compute, device = self.compute, self.compute.device
        _all_reduce_mean(list(compute.params), weight, device)
        if moments and compute.optimizer is not None:
            state = compute.optimizer.state
            # Average a parameter's moments only where every replica has them, as the in-process path does.
            present = torch.tensor([1 if state.get(p) else 0 for p in compute.params], device=device)
            dist.all_reduce(present, op=dist.ReduceOp.MIN)
            tensors = [state[p][key] for p, keep in zip(compute.params, present.tolist()) if keep
                       for key in sorted(state[p])
                       if torch.is_tensor(state[p][key]) and state[p][key].is_floating_point()]
            _all_reduce_mean(tensors, weight, device)
        compute.version += 1
        return time.perf_counter() - start

    def serve(self, fd_in: int, fd_out: int) -> None:
        """Answer commands until ``close`` or the main process goes away (its end of the pipe closes)."""
        name = f"subserver-{self.rank}"
        while True:
            try:
                head, parts = receive_packet(fd_in)
            except EOFError:
                return
            cmd = head.meta.get("cmd")
            try:
                meta, out = self.handle(cmd, head, parts)
                reply = Message("welcome", name, head.step, meta=meta)
            except Exception as err:  # noqa: BLE001 - one failed request must not end the sub-server
                traceback.print_exc()
                meta, out = {"error": f"{type(err).__name__}: {err}"[:4000],
                             "client_error": isinstance(err, ProtocolError)}, []
                reply = Message("error", name, head.step, meta=meta)
            reply.meta.update(version=self.compute.version, steps_done=self.compute.steps_done)
            send_packet(fd_out, reply, out)
            if cmd == "close":
                return


def _build(setup_dir: Path, setup: dict[str, Any], device: torch.device) -> TrunkCompute:
    """Rebuild the model from its config, cut it as the main process did, load the server's weights."""
    config_cls = getattr(transformers, setup["config_class"])
    if not (isinstance(config_cls, type) and issubclass(config_cls, transformers.PretrainedConfig)):
        raise ValueError(f"{setup['config_class']!r} is not a transformers config class")
    config = config_cls.from_dict(json.loads(setup["config"]))
    config._attn_implementation = setup["attn_implementation"]
    model = transformers.AutoModelForCausalLM.from_config(config).to(getattr(torch, setup["dtype"]))
    split = split_model(model, head_layers=setup["head_layers"], tail_layers=setup["tail_layers"],
                        tail_on_server=setup["tail_on_server"], copy_weights=False)
    state = load_file(str(setup_dir / "weights.safetensors"))
    split.trunk.load_state_dict(split_state(state, "trunk"))
    tail = split.tail if setup["tail_on_server"] else None
    if tail is not None:
        tail.load_state_dict(split_state(state, "tail"))
    name, kwargs = setup["optimizer"]
    cls = optimizer_class(name)
    return TrunkCompute(split.trunk, tail=tail, optimizer=lambda p: cls(p, **_kwargs(kwargs)), device=device)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one sub-server: ``python -m flglm_kit.subserver SETUP_DIR`` (torchrun's env vars set).

    Reads commands on stdin and answers on stdout; whatever a library prints goes to stderr.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: RANK=r WORLD_SIZE=m MASTER_ADDR=... MASTER_PORT=... python -m flglm_kit.subserver "
              "SETUP_DIR  (started by flglm_kit.subserver.SubServerGroup)", file=sys.stderr)
        return 2
    fd_out = os.dup(1)
    os.dup2(2, 1)  # a stray print must not corrupt the command pipe
    setup_dir = Path(args[0])
    setup = json.loads((setup_dir / "setup.json").read_text())
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    device = torch.device("cuda", local_rank) if setup["device"] == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=setup["timeout_s"]))
    try:
        worker = _Worker(_build(setup_dir, setup, device), rank)
        send_packet(fd_out, Message("welcome", f"subserver-{rank}", 0, meta={"version": 0, "steps_done": 0}))
        worker.serve(0, fd_out)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter's teardown of torch (seconds on a busy CPU): nothing is left to save
