"""Pull what an observer saw out of captured messages: the attacks' only input.

The server's view is every decrypted :class:`~flglm_kit.wire.Message` it accepts
(``server.add_tap(seen.append)``); a wire observer's view is what
:func:`flglm_kit.attacks.eavesdrop` could read. The attacks never touch a client object.

Introduced in notebook 02.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

from flglm_kit.split import Spans
from flglm_kit.wire import Message

__all__ = ["Observed", "activations_of", "output_grads_of", "shipped_labels"]


class Observed(NamedTuple):
    """One observed tensor with the spans its sender declared, and where it came from."""

    tensor: torch.Tensor  # (B, T, H)
    spans: Spans
    client_id: str
    step: int


def _spans(msg: Message) -> Spans:
    acts = msg.tensors["activations"]
    return Spans.from_tensors(msg.tensors, acts.shape[1])


def activations_of(messages: Iterable[Message], *, client_id: str | None = None) -> list[Observed]:
    """The activations (h_A) and spans of every ``activations`` message, in order (notebook 02).

    Example:
        >>> msg = Message("activations", "c0", 1, tensors={"activations": torch.zeros(1, 3, 4),
        ...     "starts": torch.tensor([0]), "lengths": torch.tensor([2])})
        >>> obs = activations_of([msg])[0]
        >>> obs.tensor.shape, obs.spans.lengths.tolist()
        (torch.Size([1, 3, 4]), [2])
    """
    return [Observed(m.tensors["activations"], _spans(m), m.client_id, m.step) for m in messages
            if m.kind == "activations" and (client_id is None or m.client_id == client_id)]


def output_grads_of(messages: Iterable[Message], *, client_id: str | None = None) -> list[Observed]:
    """The gradients dL/dh_B of every ``output_grads`` message, with the spans of its step's activations.

    The server pairs them itself: an ``output_grads`` message answers the same client's
    ``activations`` message of the same step. Introduced in notebook 03.

    Example:
        >>> spans = {"starts": torch.tensor([0]), "lengths": torch.tensor([3])}
        >>> seen = [Message("activations", "c0", 1, tensors={"activations": torch.zeros(1, 3, 4), **spans}),
        ...         Message("output_grads", "c0", 1, tensors={"output_grads": torch.ones(1, 3, 4)})]
        >>> [(o.step, o.spans.lengths.tolist()) for o in output_grads_of(seen)]
        [(1, [3])]
    """
    spans: dict[tuple[str, int], Spans] = {}
    out = []
    for m in messages:
        if client_id is not None and m.client_id != client_id:
            continue
        if m.kind == "activations":
            spans[(m.client_id, m.step)] = _spans(m)
        elif m.kind == "output_grads" and (m.client_id, m.step) in spans:
            out.append(Observed(m.tensors["output_grads"], spans[(m.client_id, m.step)], m.client_id, m.step))
    return out


def shipped_labels(messages: Iterable[Message], *, client_id: str | None = None) -> list[torch.Tensor]:
    """The labels the naive layout ships outright (output block on the server): no attack needed.

    THREAT MODEL: the server in the ``tail_on_server=True`` layout. ATTACKER'S KNOWLEDGE: none;
    the client sends its labels with every training step, because the loss is computed on the
    server. They are the client's token ids themselves (-100 at padding; Hugging Face shifts
    them by one inside the loss), so this recovers every token but nothing at padding.
    Introduced in notebook 02.

    Example:
        >>> labels = torch.tensor([[1, 5, 6, -100]])
        >>> shipped_labels([Message("activations", "c0", 1, tensors={"labels": labels})])[0].tolist()
        [[1, 5, 6, -100]]
    """
    return [m.tensors["labels"] for m in messages
            if m.kind == "activations" and "labels" in m.tensors and (client_id is None or m.client_id == client_id)]
