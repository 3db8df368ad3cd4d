"""The prior-only baseline: guess the most frequent token at each position, seeing nothing.

THREAT MODEL: none; this is the yardstick. An "attacker" who observes no message at all but
has auxiliary text of the same kind (public documents, the task's template) guesses, for every
position of every sample, the token most often seen at that position (counted from the start of
each sample's real tokens). On templated text this already gets the template tokens right and
almost no private token, so every attack result is reported next to it.

Introduced in notebook 02.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from flglm_kit.attacks._common import TokenBatch, as_id_batches
from flglm_kit.split import Spans

__all__ = ["PriorBaseline", "prior_baseline"]


class PriorBaseline:
    """Per-position majority token of auxiliary data; made by :func:`prior_baseline`.

    ``majority[i]`` is the most frequent token at the ``i``-th real position of a sample;
    positions past the longest auxiliary sample get the overall most frequent token.
    """

    def __init__(self, majority: torch.Tensor, fallback: int) -> None:
        self.majority = majority  # (T_max,) long
        self.fallback = fallback

    def __repr__(self) -> str:
        return f"PriorBaseline(positions={len(self.majority)}, fallback token {self.fallback})"

    def predict(self, shape_or_spans: tuple[int, int] | Spans | torch.Tensor, *, pad_id: int = 0) -> torch.Tensor:
        """The guess for a batch: (B, T) ids; ``pad_id`` outside the real spans.

        Args:
            shape_or_spans: ``(batch_size, seq_len)`` (all positions real), :class:`Spans`, or a
                (B, T) attention mask.
            pad_id: the id put at padding positions.
        """
        if isinstance(shape_or_spans, tuple):
            spans = Spans.full(*shape_or_spans)
        elif isinstance(shape_or_spans, Spans):
            spans = shape_or_spans
        else:
            spans = Spans.from_attention_mask(torch.as_tensor(shape_or_spans))
        rel = torch.arange(spans.seq_len)[None, :] - spans.starts[:, None].cpu()  # (B, T) index into the sample
        table = torch.cat([self.majority, torch.tensor([self.fallback])])
        guess = table[rel.clamp(0, len(self.majority))]  # (B, T)
        return guess.masked_fill(spans.attention_mask().cpu() == 0, pad_id)

    __call__ = predict


def prior_baseline(train_token_batches: Iterable[TokenBatch]) -> PriorBaseline:
    """Count, per position, the most frequent token of auxiliary (public) data.

    Args:
        train_token_batches: (B, T) id tensors, ``(ids, attention_mask)`` pairs, or dicts with
            ``input_ids`` and ``attention_mask`` (what :func:`flglm_kit.data.make_loader` yields).

    Returns:
        A :class:`PriorBaseline`; call it with a shape, spans or mask to get its guess.

    Introduced in notebook 02.

    Example:
        >>> prior = prior_baseline([torch.tensor([[1, 7, 5], [1, 8, 5], [1, 7, 6]])])
        >>> prior.predict((1, 4)).tolist()  # 1, 7 (2 of 3), 5, then the overall most frequent
        [[1, 7, 5, 1]]
    """
    batches = as_id_batches(train_token_batches)
    max_len = max(ids.shape[1] for ids, _ in batches)
    vocab = 1 + max(int(ids.max()) for ids, _ in batches)
    counts = torch.zeros(max_len, vocab, dtype=torch.long)  # (T_max, V)
    for ids, mask in batches:
        spans = Spans.from_attention_mask(mask)
        rel = torch.arange(ids.shape[1])[None, :] - spans.starts[:, None]  # (B, T)
        real = mask.bool()
        flat = rel[real] * vocab + ids[real]
        counts += torch.bincount(flat, minlength=max_len * vocab).view(max_len, vocab)
    seen = counts.sum(dim=1) > 0  # (T_max,)
    last = int(seen.nonzero().max()) + 1
    fallback = int(counts.sum(dim=0).argmax())
    majority = counts[:last].argmax(dim=1)  # ties: smallest id
    majority[~seen[:last]] = fallback
    return PriorBaseline(majority, fallback)
