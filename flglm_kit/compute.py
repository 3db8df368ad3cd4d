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

Introduced in notebook 05.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from flglm_kit.losses import supervised_tokens
from flglm_kit.optim import OptimizerFactory, default_optimizer, unique_parameters
from flglm_kit.split import OutputBlock, Spans, Trunk
from flglm_kit.wire import Message, ProtocolError

__all__ = ["TrunkCompute", "OpenStep", "Member", "ComputeError"]


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


class TrunkCompute:
    """The trunk (and, in the naive layout, the output block), its optimizer and its version.

    Args:
        trunk: the server's :class:`~flglm_kit.split.Trunk`.
        tail: the output block, only in the naive layout where the server holds it.
        optimizer: makes the optimizer from the trunk's parameters.
        device: where the trunk runs; default: where its parameters are.

    ``version`` counts optimizer steps: a backward must meet the weights its forward used.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> compute = TrunkCompute(split_model(tiny_model()).trunk)
        >>> compute.version
        0
    """

    def __init__(self, trunk: Trunk, *, tail: OutputBlock | None = None,
                 optimizer: OptimizerFactory = default_optimizer, device: torch.device | None = None) -> None:
        self.trunk, self.tail = trunk, tail
        params = unique_parameters(trunk, tail)
        self.device = device or next(iter(params), torch.empty(0)).device
        self.trunk.to(self.device)
        if self.tail is not None:
            self.tail.to(self.device)
        self.params = params
        self.optimizer = optimizer(params) if params else None
        self.dtype = next(iter(params), torch.empty(0)).dtype
        self.version = 0
        self.steps_done = 0

    def __repr__(self) -> str:
        return f"TrunkCompute(layers {self.trunk.layer_indices}, version {self.version})"

    def _set_mode(self, training: bool) -> None:
        self.trunk.train(training)
        if self.tail is not None:
            self.tail.train(training)

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
        """One no-grad trunk pass over several requests; a ``trunk_output`` reply for each."""
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
