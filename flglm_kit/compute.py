"""The server's compute side: the trunk, its optimizer and a parameter version.

A :class:`TrunkCompute` runs the trunk on one *or several* clients' requests at once (their
activations concatenated along the batch, each right-padded to the longest), keeps the graph
of a training forward open until the clients' output gradients arrive, then runs one backward
and one optimizer step. It decides nothing: a scheduler (:mod:`flglm_kit.scheduling`) decides
which requests go together and when the weights move.

The objective of a multi-client step is **token-weighted**: client ``k`` with ``n_k``
supervised tokens out of ``N`` weighs ``n_k / N``, so the trunk's gradient is that of one
big batch of the union (clients report ``n_k`` with their output gradients; it is one integer
per step). Each client still gets back the gradient of *its own* mean loss with respect to its
activations, exactly what it would get training alone.

Generation (notebook 06): a ``"generate"`` request runs the trunk on a client's new positions
only, against the key/value cache of the trunk's blocks that the compute keeps for that client's
*session* (:class:`GenerationSessions`, bounded by :class:`SessionLimits`). Generation requests
are answered one session at a time, like evaluations: they never move a weight and never join a
training step.

Introduced in notebook 05.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from flglm_kit.losses import supervised_tokens
from flglm_kit.optim import (OptimizerFactory, default_optimizer, set_training, trainable_parameters,
                             unique_parameters)
from flglm_kit.split import OutputBlock, PartCache, Spans, Trunk
from flglm_kit.wire import Message, ProtocolError

__all__ = ["TrunkCompute", "OpenStep", "Member", "ComputeError", "SessionLimits", "GenerationSession",
           "GenerationSessions"]

log = logging.getLogger("flglm_kit.server")  # the server's log: a failed request's id points here


class ComputeError(ProtocolError):
    """A request the trunk could not run as asked (stale step, overflowing gradients); the text says why."""


@dataclass
class Member:
    """One client's share of a trunk pass: which rows of the concatenated batch are its."""

    client_id: str
    step: int
    rows: slice
    seq_len: int


@dataclass
class OpenStep:
    """A training forward whose graph waits for its members' output gradients."""

    members: dict[str, Member]
    activations: torch.Tensor  # (B_total, T_max, H) leaf that collects dL/d activations
    hidden: torch.Tensor  # (B_total, T_max, H) trunk output, graph kept
    version: int  # the compute's version when the forward ran
    started: float = field(default_factory=time.monotonic)

    @property
    def client_ids(self) -> list[str]:
        return list(self.members)


def _pad_to(t: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Right-pad a (B, T, ...) tensor with zeros to (B, seq_len, ...)."""
    extra = seq_len - t.shape[1]
    if extra == 0:
        return t
    pad = [0, 0] * (t.dim() - 2) + [0, extra]
    return F.pad(t, pad)


@dataclass(frozen=True)
class SessionLimits:
    """How much generation state a compute keeps: sessions per client, sessions in all, positions per session.

    Args:
        max_sessions_per_client: a client starting one more session than this evicts its oldest.
        max_sessions: sessions of all clients together; past it a new session is refused until
            one ends.
        max_tokens: positions (prompt + generated) one session may hold; ``None``: the model's
            ``max_position_embeddings``.

    Example:
        >>> SessionLimits(max_sessions=8).max_sessions_per_client
        2

    Not called directly in a notebook (the server uses it for generation, notebook 06).
    """

    max_sessions_per_client: int = 2
    max_sessions: int = 64
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_sessions_per_client", "max_sessions"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {getattr(self, name)!r}")
        if self.max_tokens is not None and (type(self.max_tokens) is not int or self.max_tokens < 1):
            raise ValueError(f"max_tokens must be an integer >= 1 or None, not {self.max_tokens!r}")


@dataclass
class GenerationSession:
    """One client's generation in progress: the caches of the server's blocks and how far it got."""

    client_id: str
    session_id: str
    caches: dict[str, PartCache]  # "trunk" (and "tail" in the naive layout) -> that part's cache
    batch_size: int
    version: int  # the compute's version when the session began: its cache is void once weights move
    positions: int = 0  # real positions received so far (the deep prefix not counted)

    def nbytes(self) -> int:
        """Bytes of cached keys and values this session holds."""
        return sum(c.nbytes() for c in self.caches.values())


class GenerationSessions:
    """The generation sessions one compute keeps, keyed by (client id, session id), least recent first.

    Args:
        limits: the bounds (:class:`SessionLimits`).
        max_tokens: the default for ``limits.max_tokens`` (the model's position limit).

    Example:
        >>> sessions = GenerationSessions(SessionLimits(max_sessions=4), max_tokens=256)
        >>> len(sessions), sessions.max_tokens
        (0, 256)

    Not called directly in a notebook (the server uses it for generation, notebook 06).
    """

    def __init__(self, limits: SessionLimits, *, max_tokens: int) -> None:
        self.limits = limits
        self.max_tokens = limits.max_tokens or max_tokens
        self._open: OrderedDict[tuple[str, str], GenerationSession] = OrderedDict()
        self.evicted = 0  # sessions dropped because their client started a newer one

    def __len__(self) -> int:
        return len(self._open)

    def __repr__(self) -> str:
        return f"GenerationSessions({len(self)} open, {self.nbytes():,} bytes cached)"

    def of(self, client_id: str) -> list[str]:
        """The session ids ``client_id`` has open, least recently used first."""
        return [sid for cid, sid in self._open if cid == client_id]

    def nbytes(self) -> int:
        """Bytes of cached keys and values over all sessions."""
        return sum(s.nbytes() for s in self._open.values())

    def end(self, client_id: str, session_id: str) -> bool:
        """Forget a session; returns whether it was open."""
        return self._open.pop((client_id, session_id), None) is not None

    def begin(self, session: GenerationSession) -> None:
        """Open ``session`` (replacing one of the same id), evicting its client's oldest past the per-client bound.

        Raises:
            ComputeError: the compute already holds ``max_sessions`` sessions of all clients.
        """
        key = (session.client_id, session.session_id)
        self._open.pop(key, None)
        mine = self.of(session.client_id)
        while len(mine) >= self.limits.max_sessions_per_client:
            self._open.pop((session.client_id, mine.pop(0)))
            self.evicted += 1
        if len(self._open) >= self.limits.max_sessions:
            raise ComputeError(f"the server already holds max_sessions={self.limits.max_sessions} generation "
                               "sessions of all clients (its bound); end a session (meta end=True) or try again later")
        self._open[key] = session

    def get(self, client_id: str, session_id: str, position: int, new_positions: int) -> GenerationSession:
        """The open session that continues at ``position`` with ``new_positions`` more, marked most recent.

        Raises:
            ComputeError: no such session, the position is not where it stands, or it would grow
                past ``max_tokens``.
        """
        session = self._open.get((client_id, session_id))
        if session is None:
            raise ComputeError(f"no generation session {session_id!r} for {client_id!r} (it ended, was evicted "
                               "when you started a newer one, or the server restarted); start again with position=0")
        if position != session.positions:
            raise ComputeError(f"generation session {session_id!r} holds {session.positions} positions, but this "
                               f"request continues at position={position}; send positions in order")
        self.check_size(session_id, position + new_positions)
        self._open.move_to_end((client_id, session_id))
        return session

    def check_size(self, session_id: str, positions: int) -> None:
        """Raise :class:`ComputeError` if a session of ``positions`` positions breaks ``max_tokens``."""
        if positions > self.max_tokens:
            raise ComputeError(f"generation session {session_id!r} would hold {positions} positions, past this "
                               f"server's max_tokens={self.max_tokens} per session; end the session and generate "
                               "fewer tokens (or send a shorter prompt)")


class TrunkCompute:
    """The trunk (and, in the naive layout, the output block), its optimizer and its version.

    Args:
        trunk: the server's :class:`~flglm_kit.split.Trunk`.
        tail: the output block, only in the naive layout where the server holds it.
        optimizer: makes the optimizer from the trunk's parameters.
        device: where the trunk runs; default: where its parameters are.
        session_limits: bounds on the generation sessions it keeps (:class:`SessionLimits`).

    ``version`` counts optimizer steps: a backward must meet the weights its forward used.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> compute = TrunkCompute(split_model(tiny_model()).trunk)
        >>> compute.version
        0
    """

    def __init__(self, trunk: Trunk, *, tail: OutputBlock | None = None,
                 optimizer: OptimizerFactory = default_optimizer, device: torch.device | None = None,
                 session_limits: SessionLimits | None = None) -> None:
        self.trunk, self.tail = trunk, tail
        params = unique_parameters(trunk, tail)
        self.device = device or next(iter(params), torch.empty(0)).device
        self.trunk.to(self.device)
        if self.tail is not None:
            self.tail.to(self.device)
        self.params = trainable_parameters(trunk, tail)  # what the optimizer moves and replicas average
        self.optimizer = optimizer(self.params) if self.params else None
        self.dtype = next(iter(params), torch.empty(0)).dtype
        self.version = 0
        self.steps_done = 0
        self.sessions = GenerationSessions(session_limits or SessionLimits(),
                                           max_tokens=int(trunk.config.max_position_embeddings))

    def __repr__(self) -> str:
        return f"TrunkCompute(layers {self.trunk.layer_indices}, version {self.version})"

    def _set_mode(self, training: bool) -> None:
        set_training(training, self.trunk, self.tail)

    def _concat(self, msgs: list[Message]) -> tuple[torch.Tensor, Spans, list[Member]]:
        """Concatenate requests along the batch, each right-padded to the longest."""
        seq_len = max(m.tensors["activations"].shape[1] for m in msgs)
        members, acts, starts, lengths, row = [], [], [], [], 0
        for m in msgs:
            a = m.tensors["activations"].to(self.device).detach()  # a new tensor: the message stays as it arrived
            members.append(Member(m.client_id, m.step, slice(row, row + a.shape[0]), a.shape[1]))
            row += a.shape[0]
            acts.append(_pad_to(a, seq_len))  # (B_k, T_max, H)
            spans = Spans.from_tensors(m.tensors, a.shape[1], device=self.device)
            starts.append(spans.starts)
            lengths.append(spans.lengths)
        return torch.cat(acts), Spans(torch.cat(starts), torch.cat(lengths), seq_len), members

    def forward_eval(self, msgs: list[Message]) -> list[Message]:
        """One no-grad trunk pass over several requests; a ``trunk_output`` reply for each.

        Generation requests (meta ``mode="generate"``) among them run one at a time on their
        own session's cache (:meth:`forward_generate`); one that fails gets an ``error`` reply
        and leaves every other request and session as it was.
        """
        generating = [m for m in msgs if m.meta.get("mode") == "generate"]
        out = [self._generate_or_error(m) for m in generating]
        rest = [m for m in msgs if m.meta.get("mode") != "generate"]
        return out + (self._forward_eval(rest) if rest else [])

    def _generate_or_error(self, msg: Message) -> Message:
        """:meth:`forward_generate`, or an ``error`` reply for this client alone (its session is dropped)."""
        try:
            return self.forward_generate(msg)
        except Exception as err:  # noqa: BLE001 - one client's bad request must not touch the others
            self.sessions.end(msg.client_id, str(msg.meta.get("session")))
            if isinstance(err, ProtocolError):
                text = f"the server could not process step {msg.step}: {err}"
            else:  # internals stay in the server's log
                request_id = secrets.token_hex(4)
                log.error("request %s from %s (step %d) failed", request_id, msg.client_id, msg.step, exc_info=err)
                text = (f"the server could not process step {msg.step} (request {request_id}); the server's "
                        "operator finds the cause in its log under that id")
            return Message("error", msg.client_id, msg.step, meta={"error": text})

    def forward_generate(self, msg: Message) -> Message:
        """Run the trunk on one generation request's new positions against its session's cache.

        The request's meta (checked by the server's front desk): ``session`` (its id),
        ``position`` (0 starts the session; else how many positions it already sent) and,
        optionally, ``end`` (forget the session after this step).

        Args:
            msg: an ``activations`` message with meta ``mode="generate"``: (B, T, H) activations
                of the new positions and their spans (left padding only on the first request).

        Returns:
            A ``trunk_output`` reply: ``hidden`` (B, T, H), or in the naive layout ``logits``
            (B, 1, V) of the last position.

        Raises:
            ComputeError: the session is unknown, out of order, over a bound, or the weights
                moved since it began.
        """
        sid, position = str(msg.meta["session"]), int(msg.meta["position"])
        acts = msg.tensors["activations"].to(self.device)  # (B, T, H)
        batch, seq_len, _ = acts.shape
        spans = Spans.from_tensors(msg.tensors, seq_len, device=self.device)
        if position == 0:
            self.sessions.check_size(sid, seq_len)
            caches = {"trunk": self.trunk.new_cache(batch, self.device)}
            if self.tail is not None:
                caches["tail"] = self.tail.new_cache(batch, self.device)
            session = GenerationSession(msg.client_id, sid, caches, batch, self.version)
            self.sessions.begin(session)
        else:
            session = self.sessions.get(msg.client_id, sid, position, seq_len)
            if session.version != self.version:
                raise ComputeError(f"the trunk's weights moved (version {session.version} -> {self.version}) since "
                                   f"generation session {sid!r} began, so its cache is stale; start a new session")
            if batch != session.batch_size:
                raise ComputeError(f"generation session {sid!r} has {session.batch_size} rows, not {batch}")
            if bool((spans.lengths != seq_len).any()):
                raise ComputeError("only a session's first request may hold padding (left padding)")
        self._set_mode(False)
        with torch.no_grad():
            hidden = self.trunk(acts, spans, cache=session.caches["trunk"])  # (B, T, H)
            if self.tail is not None:
                logits = self.tail(hidden, spans, cache=session.caches["tail"]).logits[:, -1:]  # (B, 1, V)
        session.positions = position + seq_len
        if msg.meta.get("end", False):
            self.sessions.end(msg.client_id, sid)
        tensors = {"hidden": hidden} if self.tail is None else {"logits": logits}
        return Message("trunk_output", msg.client_id, msg.step, tensors=tensors)

    def _forward_eval(self, msgs: list[Message]) -> list[Message]:
        """The evaluation requests' one concatenated no-grad pass."""
        acts, spans, members = self._concat(msgs)
        self._set_mode(False)
        with torch.no_grad():
            hidden = self.trunk(acts, spans)  # (B_total, T_max, H)
            if self.tail is not None:
                logits = self.tail(hidden, spans).logits  # (B_total, T_max, V)
        out = []
        for m in members:
            if self.tail is not None:
                tensors = {"logits": logits[m.rows, :m.seq_len]}
            else:
                tensors = {"hidden": hidden[m.rows, :m.seq_len]}
            out.append(Message("trunk_output", m.client_id, m.step, tensors=tensors))
        return out

    def forward_train(self, msgs: list[Message]) -> tuple[OpenStep | None, list[Message]]:
        """One trunk pass with gradients over several requests.

        Returns:
            ``(open_step, replies)``. In the FL-GLM layout the replies are ``trunk_output`` and
            the open step waits for :meth:`backward`. In the naive layout (the server holds the
            output block and the labels) the step completes here: ``open_step`` is ``None`` and
            the replies are ``activation_grads`` with each client's loss.
        """
        acts, spans, members = self._concat(msgs)
        self._set_mode(True)
        acts.requires_grad_(True)
        hidden = self.trunk(acts, spans)  # (B_total, T_max, H)
        if self.tail is None:
            step = OpenStep({m.client_id: m for m in members}, acts, hidden, self.version)
            return step, [Message("trunk_output", m.client_id, m.step,
                                  tensors={"hidden": hidden[m.rows, :m.seq_len].detach()}) for m in members]
        # Naive layout: each client's own mean loss, weighted by its share of the supervised tokens.
        losses, tokens = [], []
        for m, msg in zip(members, msgs):
            sub = Spans.from_tensors(msg.tensors, m.seq_len, device=self.device)
            labels = msg.tensors["labels"].to(self.device)
            out = self.tail(hidden[m.rows, :m.seq_len], sub, labels)
            assert out.loss is not None
            losses.append(out.loss)
            tokens.append(supervised_tokens(labels))
        total = sum(tokens)
        weights = [n / total for n in tokens]
        objective = torch.stack([w * loss for w, loss in zip(weights, losses)]).sum()
        self._apply(objective, None, acts)
        replies = []
        for m, w, loss in zip(members, weights, losses):
            grad = acts.grad[m.rows, :m.seq_len] / w  # type: ignore[index]  # the gradient of its own mean loss
            replies.append(Message("activation_grads", m.client_id, m.step, tensors={"activation_grads": grad},
                                   meta={"loss": float(loss.detach())}))
        return None, replies

    def backward(self, step: OpenStep, grads: dict[str, tuple[torch.Tensor, int]]) -> list[Message]:
        """Backward over an open step with the members' output gradients, then one optimizer step.

        Args:
            step: the open step (from :meth:`forward_train`).
            grads: client id -> (output gradient (B_k, T_k, H), its supervised-token count). A
                member missing here is dropped: its rows get no gradient and no weight.

        Returns:
            An ``activation_grads`` reply for each member in ``grads``.

        Raises:
            ComputeError: the weights moved since the forward, or the gradients overflow.
        """
        if step.version != self.version:
            raise ComputeError(f"the trunk's weights moved since this step's forward (version {step.version} -> "
                               f"{self.version}); the step is void: run it again")
        total = sum(n for _, n in grads.values())
        seeds = torch.zeros_like(step.hidden)  # (B_total, T_max, H); dropped members' rows stay 0
        weights = {}
        for cid, (grad, tokens) in grads.items():
            m = step.members[cid]
            weights[cid] = tokens / total if total > 0 else 1.0 / len(grads)
            seeds[m.rows, :m.seq_len] = grad.to(self.device) * weights[cid]
        self._apply(step.hidden, seeds, step.activations)
        acts_grad = step.activations.grad
        assert acts_grad is not None
        return [Message("activation_grads", cid, step.members[cid].step,
                        tensors={"activation_grads": acts_grad[step.members[cid].rows, :step.members[cid].seq_len]
                                 / weights[cid]}) for cid in grads]

    def _apply(self, out: torch.Tensor, seed: torch.Tensor | None, acts: torch.Tensor) -> None:
        """Backward from ``out`` (seeded with ``seed``) and one optimizer step, unless gradients overflow."""
        self._set_mode(True)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        out.backward(seed)
        # Finite inputs can still overflow in backward; one such step would make the trunk NaN for everyone.
        if not all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in self.params):
            if self.optimizer is not None:
                self.optimizer.zero_grad(set_to_none=True)
            raise ComputeError("this step's gradients overflow to infinity or NaN; the server did not apply them")
        if acts.grad is None:
            acts.grad = torch.zeros_like(acts)
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        self.steps_done += 1

    def discard(self, step: OpenStep) -> None:
        """Forget an open step without touching the weights (all its members dropped out)."""
        step.hidden = step.hidden.detach()
