"""Helpers shared by the attack modules: batch formats, masks, a seeded generator.

The label value that carries no loss, ``IGNORE_INDEX``, is :data:`flglm_kit.losses.IGNORE_INDEX`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from flglm_kit.split import Spans

TokenBatch = Any  # a (B, T) id tensor, an (ids, attention_mask) pair, or a dict with "input_ids"


def as_id_batches(token_batches: Iterable[TokenBatch]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalise batches to ``(input_ids, attention_mask)`` pairs of ``(B, T)`` long tensors."""
    out = []
    for batch in token_batches:
        if isinstance(batch, Mapping):
            ids, mask = batch["input_ids"], batch.get("attention_mask")
        elif isinstance(batch, (tuple, list)):
            ids, mask = batch[0], batch[1] if len(batch) > 1 else None
        else:
            ids, mask = batch, None
        ids = torch.as_tensor(ids).long()
        if ids.dim() == 1:
            ids = ids[None]
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).long().reshape(ids.shape)
        out.append((ids, mask))
    if not out:
        raise ValueError("no token batches given")
    return out


def as_spans(spans_or_mask: Spans | torch.Tensor | None, batch_size: int, seq_len: int) -> Spans:
    """Spans from Spans, a (B, T) attention mask, (B,) lengths (right padding), or None (all real)."""
    if spans_or_mask is None:
        return Spans.full(batch_size, seq_len)
    if isinstance(spans_or_mask, Spans):
        return spans_or_mask
    t = torch.as_tensor(spans_or_mask).long()
    if t.dim() == 1:
        return Spans(torch.zeros_like(t), t, seq_len)
    return Spans.from_attention_mask(t)


def generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A generator seeded with ``seed`` on ``device``; None (global RNG) if ``seed`` is None."""
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


def rms(t: torch.Tensor) -> torch.Tensor:
    """Root mean square of all entries (a 0-dim tensor)."""
    return t.detach().float().pow(2).mean().sqrt()


def weight_of(module: Any) -> torch.Tensor:
    """``module.weight`` as a tensor (an embedding table or LM head; typed for mypy)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight
