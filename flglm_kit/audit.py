"""Audit captured messages for private data that crosses *verbatim*.

A check of what the wire literally carries: token ids, labels, or raw embeddings of the
client's text. Passing it does **not** make a layout private: hidden states after a few
blocks and the gradients from the output block still carry the text, which notebooks 02 and 03
measure with real attacks.

Introduced in notebook 01.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from flglm_kit.wire import Message

__all__ = ["verbatim_leaks"]


def verbatim_leaks(messages: Iterable[Message], *, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                   embeddings: torch.Tensor | None = None, atol: float = 1e-5) -> list[str]:
    """Which tensors in ``messages`` are the client's token ids, labels or raw embeddings.

    Args:
        messages: what an observer captured (for example through ``SplitServer.add_tap``).
        input_ids: (B, T) the client's token ids.
        labels: (B, T) the client's labels, if any.
        embeddings: (B, T, H) the raw embeddings of ``input_ids`` *at the time they were sent*.
        atol: tolerance for matching embeddings.

    Returns:
        Sorted descriptions such as ``"labels in activations.labels"``; empty if none.

    Example:
        >>> ids = torch.tensor([[5, 6, 7]])
        >>> verbatim_leaks([Message("activations", "c", 1, tensors={"labels": ids})], input_ids=ids, labels=ids)
        ['labels in activations.labels', 'token ids in activations.labels']
    """
    found = set()
    for msg in messages:
        for name, t in msg.tensors.items():
            where = f"{msg.kind}.{name}"
            if t.shape == input_ids.shape and not t.is_floating_point():
                if torch.equal(t.long().cpu(), input_ids.long().cpu()):
                    found.add(f"token ids in {where}")
                if labels is not None and torch.equal(t.long().cpu(), labels.long().cpu()):
                    found.add(f"labels in {where}")
            if (embeddings is not None and t.shape == embeddings.shape and t.is_floating_point()
                    and torch.allclose(t.float().cpu(), embeddings.float().cpu(), atol=atol)):
                found.add(f"raw embeddings in {where}")
    return sorted(found)
