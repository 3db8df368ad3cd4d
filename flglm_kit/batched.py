"""Run many simulated clients' input and output blocks as one batched call (``torch.func.vmap``).

Real clients compute in parallel on their own machines; in one process their blocks run one
after another, so a simulated round costs K client computations back to back.
:func:`run_round_batched` is :func:`~flglm_kit.rounds.run_round` with the clients' own compute
batched, and nothing else changed::

    phase 1  K input blocks       one vmap(functional_call) over the K clients' stacked weights;
                                  each client seals its own activations on its own channel
    phase 2  server trunk         K ordinary requests in the server's queue (ClientBatching runs
                                  them as one trunk pass)
    phase 3  output blocks, loss  one vmapped call over the clients whose trunk output is in, and
                                  one backward; each client seals its own output gradients
    phase 4  server backward
    phase 5  input block backward one backward through a phase-1 group's stacked input blocks once
                                  every member's activation gradients are in; each client's slice
                                  of the stacked gradient becomes its own parameters' ``.grad``
                                  and its own optimizer steps

Each client keeps its own weights, optimizer and optimizer state, and its own channel: the
stacked weights are copies made for the call (``functional_call`` runs the client's own block
code with them), and only gradients flow back.

**Grouping, no padding across clients.** vmap needs equal shapes, so clients batch together
when they have the same device and dtype, the same block structure, config and family, and the
same batch shape ``(B, T)``. Their padding may differ: each client's causal mask is built
outside the call exactly as the block builds it (the family's mask code branches on the data,
which vmap cannot follow) and handed in stacked. A batch without padding needs no mask at all
(the attention runs causal), so it is not mixed with padded ones: each client runs the
attention it runs alone. Clients that match nobody run alone, in their own modules, exactly as
:class:`~flglm_kit.client.TrainStep` runs them. Dropout, if a model has any, draws each
client's dropout masks independently (``randomness="different"``), not the unbatched path's draws.

**When it pays.** The batched call saves per-call overhead (Python, kernel launches), not
arithmetic: each client still multiplies by its own weights. On a GPU, where small calls are
launch-bound, that is most of a tiny block's cost; on a CPU, where they are compute-bound, it
saves little or nothing (and PyTorch has no batching rule for CPU attention yet, so it loops
over the clients there; this module silences PyTorch's warning that says so).

Introduced in notebook 05.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch.func import functional_call, vmap

from flglm_kit.client import ServerError, SplitClient
from flglm_kit.losses import IGNORE_INDEX, supervised_tokens
from flglm_kit.rounds import Batch, PostingTransport, RoundResult, _transport_of, _wait_for_server
from flglm_kit.split import OutputBlock, Spans, _causal_masks, _Part
from flglm_kit.wire import Message

__all__ = ["BatchedRoundResult", "run_round_batched"]

T = TypeVar("T")


@dataclass
class BatchedRoundResult(RoundResult):
    """A :class:`~flglm_kit.rounds.RoundResult` plus how the clients' compute was batched.

    ``groups``: the client ids whose input blocks ran as one call (phase 1), one tuple per call.
    ``client_seconds``: wall time of the clients' compute per phase (``"input_blocks"``,
    ``"output_blocks"``, ``"input_backward"``), summed over the round's calls.
    """

    groups: list[tuple[str, ...]] = field(default_factory=list)
    client_seconds: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        sizes = sorted((len(g) for g in self.groups), reverse=True)
        return f"{super().__repr__()[:-1]}, client calls of {sizes})"


# -- stacking K clients' copies of a block ----------------------------------------------------

@dataclass(frozen=True)
class _PreparedSpans(Spans):
    """Spans whose attention mask is the 4D causal mask built beforehand.

    Inside vmap the family's mask functions cannot branch on a client's padding, so each
    client's mask is built outside, exactly as ``run_layers`` builds it, and handed in here:
    transformers' mask functions return an already prepared 4D mask as it is.
    """

    mask: torch.Tensor  # (B, 1, T, T)

    def attention_mask(self) -> torch.Tensor:
        return self.mask


def _block_key(block: _Part, configs: dict[int, str]) -> tuple[Any, ...]:
    """What must match for two clients' blocks to run as one vmapped call."""
    if id(block.config) not in configs:
        configs[id(block.config)] = block.config.to_json_string(use_diff=False)
    params = tuple((n, tuple(p.shape), p.dtype, p.device, p.requires_grad) for n, p in block.named_parameters())
    buffers = tuple((n, tuple(b.shape), b.dtype) for n, b in block.named_buffers())
    return type(block), repr(getattr(block, "family", None)), configs[id(block.config)], params, buffers


def _prepared_mask(block: _Part, spans: Spans, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None | str:
    """The one 4D causal mask ``block`` builds for ``spans``: ``None`` if it needs none, ``"mixed"`` if its
    layer types need different masks (such a client is not batched)."""
    types = {block._layer_type(i) for i in block.layer_indices}
    if not types:
        return None
    batch, seq_len = int(spans.starts.shape[0]), spans.seq_len
    like = torch.empty(batch, seq_len, block.config.hidden_size, dtype=dtype, device=device)  # (B, T, H): shape only
    position_ids = torch.arange(seq_len, device=device).unsqueeze(0)  # (1, T), as run_layers
    masks = list(_causal_masks(block.config, like, spans.attention_mask().to(device), position_ids, types).values())
    if all(m is None for m in masks):
        return None
    first = masks[0]
    if any(m is None for m in masks) or not all(torch.equal(m, first) for m in masks[1:]):
        return "mixed"
    return first  # (B, 1, T, T)


def _mask_key(mask: torch.Tensor | None | str, token: object) -> object:
    """Clients without a mask batch together; so do clients with one; a mixed client stays alone."""
    return id(token) if isinstance(mask, str) else mask is None


class _Stack:
    """K clients' copies of one block, stacked along a new first dimension for one vmapped call."""

    def __init__(self, blocks: Sequence[_Part]) -> None:
        self.template = blocks[0]  # its code runs, with the stacked weights swapped in
        per_block = [dict(b.named_parameters()) for b in blocks]
        self.owners = {n: [pb[n] for pb in per_block] for n in per_block[0]}  # name -> each client's parameter
        self.params = {n: torch.stack([p.detach() for p in ps]).requires_grad_(ps[0].requires_grad)
                       for n, ps in self.owners.items()}  # (K, *shape) leaves
        per_buffer = [dict(b.named_buffers()) for b in blocks]
        self.buffers = {n: torch.stack([pb[n] for pb in per_buffer]) for n in per_buffer[0]}

    def __call__(self, batched: tuple[Any, ...], args: Callable[..., tuple[Any, ...]],
                 out: Callable[[Any], torch.Tensor] = lambda y: y) -> torch.Tensor:
        """``out(block(*args(*inputs)))`` for every client at once: ``batched`` inputs have the clients on dim 0."""
        def one(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], *inputs: Any) -> torch.Tensor:
            return out(functional_call(self.template, (params, buffers), args(*inputs)))
        with warnings.catch_warnings():  # "no batching rule for ...flash_attention_for_cpu": see the module doc
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")
            return vmap(one, randomness="different")(self.params, self.buffers, *batched)

    def hand_back(self, k: int) -> None:
        """Add client ``k``'s slice of the stacked gradients to its own parameters' ``.grad``."""
        for name, owners in self.owners.items():
            grad = self.params[name].grad
            if grad is not None:
                p = owners[k]
                p.grad = grad[k] if p.grad is None else p.grad + grad[k]  # a tied weight collects both blocks' share


def _spans_args(spans: Sequence[Spans],
                masks: Sequence[torch.Tensor | None | str]) -> tuple[tuple[Any, ...], Callable[..., Spans]]:
    """What to vmap over for the clients' spans, and how to rebuild one client's spans inside the call."""
    if masks[0] is None:  # no padding anywhere: every client's spans are the same (B, T) full spans
        shared = spans[0]
        return (), lambda: shared
    starts = torch.stack([s.starts for s in spans])  # (K, B)
    lengths = torch.stack([s.lengths for s in spans])  # (K, B)
    stacked = torch.stack([m for m in masks if isinstance(m, torch.Tensor)])  # (K, B, 1, T, T)
    seq_len = spans[0].seq_len
    return (starts, lengths, stacked), lambda st, ln, m: _PreparedSpans(st, ln, seq_len, m)


# -- one client's step ------------------------------------------------------------------------

class _Step:
    """One client's step in a batched round (the state :class:`~flglm_kit.client.TrainStep` keeps)."""

    def __init__(self, client: SplitClient, transport: PostingTransport, input_ids: torch.Tensor, spans: Spans,
                 labels: torch.Tensor) -> None:
        self.client, self.transport = client, transport
        self.client_id, self.input_ids, self.spans, self.labels = client.client_id, input_ids, spans, labels
        self.step = 0
        self.head_mask = _prepared_mask(client.head, spans, client.dtype, client.device)
        self.acts: torch.Tensor | None = None  # (B, T, H), graph kept (a slice of its group's output)
        self.expect = "trunk_output" if client.tail is not None else "activation_grads"
        self.outgoing: bytes | None = None
        self.act_grads: torch.Tensor | None = None  # (B, T, H), once the server sent them
        self.loss: float | None = None
        self.error: ServerError | None = None
        self.done = False

    def seal(self, msg: Message, expect: str) -> None:
        self.outgoing, self.expect = self.client._seal(msg), expect

    def open(self, reply: bytes) -> Message | None:
        """Open a reply on this client's channel; a refusal ends the step (``None``)."""
        try:
            return self.client._open_reply(reply, self.expect, self.step)
        except ServerError as err:
            self.error, self.done, self.act_grads = err, True, None
            if self.client.optimizer is not None:
                self.client.optimizer.zero_grad(set_to_none=True)
            return None

    @property
    def waiting_for_group(self) -> bool:
        return not self.done and self.act_grads is not None


def _start(client: SplitClient, batch: Batch) -> _Step:
    """Check a client and its batch before anything is sent (what ``begin_train_step`` checks)."""
    in_flight = client._in_flight
    if in_flight is not None and not in_flight.done:
        raise RuntimeError(f"{client.client_id} has step {in_flight.step} in flight; finish it first")
    if client.channel is None:
        raise RuntimeError(f"{client.client_id}: call connect() before training")
    if not 1 <= len(batch) <= 3:
        raise TypeError(f"{client.client_id}: a batch is (input_ids,), (input_ids, attention_mask) or "
                        f"(input_ids, attention_mask, labels); got {len(batch)} items")
    ids, mask, labels = (*batch, None, None)[:3]
    try:
        input_ids, spans, labels = client._check_batch(ids, mask, labels)
    except ValueError as err:
        raise ValueError(f"{client.client_id}: {err}") from None
    if labels is None:
        labels = input_ids.masked_fill(spans.attention_mask() == 0, IGNORE_INDEX)
    if supervised_tokens(labels) == 0:
        raise ValueError(f"{client.client_id}: this batch has no supervised token (every next-token label is "
                         f"{IGNORE_INDEX}), so its loss is undefined; nothing was sent and no weight moved")
    return _Step(client, _transport_of(client), input_ids, spans, labels)


# -- phase 1 and phase 5: a group of input blocks --------------------------------------------

class _Group:
    """Clients whose input blocks ran as one call; their backward (phase 5) runs as one too."""

    def __init__(self, steps: list[_Step]) -> None:
        self.steps = steps
        self.stack: _Stack | None = None
        self.acts: torch.Tensor | None = None  # (K, B, T, H) with the graph, for a stacked group

    def forward(self) -> None:
        """Phase 1: every member's input block; each member then seals its activations."""
        first = self.steps[0]
        if len(self.steps) == 1:
            first.acts = first.client.head(first.input_ids, first.spans)  # (B, T, H)
        else:
            self.stack = _Stack([s.client.head for s in self.steps])
            masks = [s.head_mask for s in self.steps]
            spans_in, spans_of = _spans_args([s.spans for s in self.steps], masks)
            ids = torch.stack([s.input_ids for s in self.steps])  # (K, B, T)
            self.acts = self.stack((ids, *spans_in), lambda x, *sp: (x, spans_of(*sp)))  # (K, B, T, H)
            for k, s in enumerate(self.steps):
                s.acts = self.acts[k]
        for s in self.steps:
            assert s.acts is not None
            naive = s.client.tail is None
            msg = s.client._activations_message(s.acts, s.spans, mode="train", labels=s.labels if naive else None)
            s.outgoing = s.client._seal(msg)

    def ready(self) -> bool:
        return all(s.done or s.act_grads is not None for s in self.steps)

    def backward(self) -> None:
        """Phase 5: one backward through the group's input blocks, then each member's own optimizer step."""
        live = [s for s in self.steps if s.waiting_for_group]
        stack = self.stack
        if live and stack is None:
            (s,) = live
            assert s.acts is not None and s.act_grads is not None
            s.acts.backward(s.act_grads)
        elif live and stack is not None:
            assert self.acts is not None
            seeds = torch.stack([s.act_grads if s in live and s.act_grads is not None
                                 else torch.zeros_like(self.acts[0]) for s in self.steps])  # (K, B, T, H)
            self.acts.backward(seeds)  # a dropped member's rows get 0 and are not handed back
            for k, s in enumerate(self.steps):
                if s in live:
                    stack.hand_back(k)
        for s in live:
            if s.client.optimizer is not None:
                s.client.optimizer.step()
                s.client.optimizer.zero_grad(set_to_none=True)
            s.done, s.act_grads, s.acts = True, None, None
        self.acts, self.stack = None, None  # free the graph and the stacked copies


def _group(items: Sequence[T], key: Callable[[T], tuple[Any, ...]]) -> list[list[T]]:
    """``items`` in groups of equal ``key``, in order of first appearance."""
    groups: dict[tuple[Any, ...], list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


def _input_key(s: _Step, configs: dict[int, str]) -> tuple[Any, ...]:
    c = s.client
    return (c.device, c.dtype, tuple(s.input_ids.shape), _mask_key(s.head_mask, s),
            _block_key(c.head, configs))


# -- phase 3: output blocks ------------------------------------------------------------------

@dataclass
class _Ready:
    """A client whose trunk output is in: phase 3 can run."""

    step: _Step
    tail: OutputBlock
    hidden: torch.Tensor  # (B, T, H)
    mask: torch.Tensor | None | str

    def key(self, configs: dict[int, str]) -> tuple[Any, ...]:
        c = self.step.client
        return (c.device, c.dtype, tuple(self.hidden.shape), _mask_key(self.mask, self),
                _block_key(self.tail, configs))


def _output_blocks(ready: list[_Ready]) -> tuple[list[float], list[torch.Tensor]]:
    """Phase 3 for clients of one group: output block, loss, backward. Returns losses and output gradients."""
    if len(ready) == 1:
        (r,) = ready
        hidden = r.hidden.requires_grad_(True)  # (B, T, H)
        out = r.tail(hidden, r.step.spans, r.step.labels)
        assert out.loss is not None
        out.loss.backward()
        assert hidden.grad is not None
        return [float(out.loss.detach())], [hidden.grad]
    stack = _Stack([r.tail for r in ready])
    spans_in, spans_of = _spans_args([r.step.spans for r in ready], [r.mask for r in ready])
    hidden = torch.stack([r.hidden for r in ready]).requires_grad_(True)  # (K, B, T, H)
    labels = torch.stack([r.step.labels for r in ready])  # (K, B, T)
    loss = stack((hidden, labels, *spans_in), lambda h, y, *sp: (h, spans_of(*sp), y),
                 out=lambda o: o.loss)  # (K,): each client's own mean loss
    loss.sum().backward()  # the sum's gradient on client k's slice is that of client k's own loss
    for k in range(len(ready)):
        stack.hand_back(k)
    assert hidden.grad is not None
    return [float(x) for x in loss.detach()], list(hidden.grad)


def _phase3(ready: list[_Ready], configs: dict[int, str]) -> None:
    """Phase 3 for every client whose trunk output is in, one call per group; each seals its output grads."""
    for members in _group(ready, lambda r: r.key(configs)):
        losses, grads = _output_blocks(members)
        for r, loss, grad in zip(members, losses, grads):
            s = r.step
            s.loss = loss
            msg = Message("output_grads", s.client_id, s.step, tensors={"output_grads": grad},
                          meta={"tokens": supervised_tokens(s.labels)})
            s.seal(msg, "activation_grads")  # phase 4 on the server


# -- the round ------------------------------------------------------------------------------------

def run_round_batched(work: Sequence[tuple[SplitClient, Batch]], *, poll_s: float = 0.01) -> BatchedRoundResult:
    """:func:`~flglm_kit.rounds.run_round` with the clients' blocks batched: one call per group of clients.

    Each client trains exactly as under ``run_round`` (its own weights, optimizer state, channel
    and sealed frames); only the simulation's compute is batched, over clients whose blocks and
    batch shapes match (see the module docstring).

    Args:
        work: ``(client, batch)`` pairs, one per client; a batch is ``(input_ids,)``,
            ``(input_ids, attention_mask)`` or ``(input_ids, attention_mask, labels)``. Every
            client's transport must post and collect (e.g. ``InProcessTransport``).
        poll_s: how long to sleep while the server waits on a deadline (a straggler).

    Returns:
        A :class:`BatchedRoundResult`: each client's loss, the dropped clients and why, and the
        groups whose input blocks ran as one call.

    Raises:
        ValueError: a client appears twice, or a batch is malformed (nothing was sent).
        RuntimeError: a client has a step in flight or is not connected (nothing was sent), or
            nothing can progress and nothing will (a scheduler bug).
        TypeError: a client's transport cannot post and collect.

    Example:
        >>> import copy
        >>> from flglm_kit import split_model, tiny_model
        >>> from flglm_kit.crypto import Identity
        >>> from flglm_kit.scheduling import ClientBatching
        >>> from flglm_kit.server import SplitServer
        >>> from flglm_kit.transport import InProcessTransport
        >>> split = split_model(tiny_model())
        >>> server_id = Identity.generate()
        >>> server = SplitServer(split.trunk, identity=server_id, scheduler=ClientBatching())
        >>> transport = InProcessTransport(server)
        >>> clients = []
        >>> for name in ("a", "b", "c"):
        ...     client = SplitClient(*copy.deepcopy((split.head, split.tail)), client_id=name, transport=transport,
        ...                          server_fingerprint=server_id.fingerprint)
        ...     server.enroll(name, client.identity.public_bytes)
        ...     client.connect()
        ...     clients.append(client)
        >>> ids = torch.randint(3, 512, (3, 2, 16))
        >>> result = run_round_batched([(c, (ids[k],)) for k, c in enumerate(clients)])
        >>> result.groups, sorted(result.losses)
        ([('a', 'b', 'c')], ['a', 'b', 'c'])
    """
    names = [client.client_id for client, _ in work]
    if len(set(names)) != len(names):
        raise ValueError("each client may take one step per round; repeated: "
                         f"{sorted({i for i in names if names.count(i) > 1})}")
    start = time.perf_counter()
    result = BatchedRoundResult(client_seconds=dict.fromkeys(("input_blocks", "output_blocks", "input_backward"), 0.0))
    steps = [_start(client, batch) for client, batch in work]  # every check before anything is sent
    configs: dict[int, str] = {}
    tic = time.perf_counter()
    for s in steps:
        s.client.step += 1
        s.step = s.client.step
        s.client._set_mode(True)
        if s.client.optimizer is not None:
            s.client.optimizer.zero_grad(set_to_none=True)
    groups = [_Group(members) for members in _group(steps, lambda s: _input_key(s, configs))]
    for g in groups:
        g.forward()
        result.groups.append(tuple(s.client_id for s in g.steps))
    result.client_seconds["input_blocks"] += time.perf_counter() - tic
    _drive(steps, groups, result, configs, poll_s)
    for s in steps:
        if s.error is not None:
            result.dropped[s.client_id] = str(s.error)
        elif s.loss is not None:
            result.losses[s.client_id] = s.loss
    result.seconds = time.perf_counter() - start
    return result


def _drive(steps: list[_Step], groups: list[_Group], result: BatchedRoundResult, configs: dict[int, str],
           poll_s: float) -> None:
    """Post, let the servers run, collect and compute, until every step is done or dropped."""
    servers = {id(s.transport): s.transport for s in steps}.values()
    while any(not s.done for s in steps):
        for s in steps:  # the clients compute in parallel: their frames meet in the queue
            if s.outgoing is not None:
                s.transport.post(s.outgoing, run=False)
                s.outgoing = None
        for transport in servers:
            transport.server.run_pending()
        progressed, ready = False, []
        for s in steps:
            for reply in s.transport.collect(s.client_id):
                progressed = True
                answer = s.open(reply)
                if answer is None:
                    continue
                if answer.kind == "trunk_output":
                    tail = s.client.tail
                    assert tail is not None
                    ready.append(_Ready(s, tail, answer.tensors["hidden"].to(s.client.device),
                                        _prepared_mask(tail, s.spans, s.client.dtype, s.client.device)))
                    continue
                if s.loss is None:  # naive layout: the server computed the loss
                    s.loss = float(answer.meta["loss"])
                s.act_grads = answer.tensors["activation_grads"].to(s.client.device)  # (B, T, H)
        if ready:
            tic = time.perf_counter()
            _phase3(ready, configs)
            result.client_seconds["output_blocks"] += time.perf_counter() - tic
        tic = time.perf_counter()
        for g in groups:
            if any(s.waiting_for_group for s in g.steps) and g.ready():
                g.backward()
        result.client_seconds["input_backward"] += time.perf_counter() - tic
        if not progressed and any(not s.done for s in steps):
            _wait_for_server(servers, poll_s)
