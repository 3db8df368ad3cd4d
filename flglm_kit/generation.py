"""Greedy generation through a split model, with each part's key/value cache, in one process.

::

    prompt (B, T)  -> input block [cache A] -> trunk [cache B] -> output block [cache C] -> next token
    next   (B, 1)  -> input block [cache A] -> trunk [cache B] -> output block [cache C] -> next token ...

Each part keeps the cache of its own blocks only (:class:`~flglm_kit.split.PartCache`), so in the
parties' version (:meth:`flglm_kit.client.SplitClient.generate`) the client keeps A and C and the
server keeps B for the client's *session*; after the prompt one position's activations cross per
new token. :func:`greedy_generate` is that computation without the wire, for checking and
teaching: it gives token for token what the whole model's ``generate(do_sample=False)`` gives
(:func:`reference_generate`), with or without caches, with a deep prefix too.

Introduced in notebook 06.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flglm_kit.split import PartCache, Spans, SplitModel

__all__ = ["greedy_generate", "reference_generate"]


def _next_logits(split: SplitModel, ids: torch.Tensor, spans: Spans,
                 caches: tuple[PartCache, PartCache, PartCache] | None) -> torch.Tensor:
    """(B, V) logits of the last position: the new positions through the three parts."""
    head, trunk, tail = caches if caches is not None else (None, None, None)
    acts = split.head(ids, spans, cache=head)  # (B, t, H): what the client sends
    hidden = split.trunk(acts, spans, cache=trunk)  # (B, t, H): what the server returns
    return split.tail(hidden, spans, cache=tail).logits[:, -1]  # (B, V)


@torch.no_grad()
def greedy_generate(split: SplitModel, input_ids: torch.Tensor, *, max_new_tokens: int = 20,
                    attention_mask: torch.Tensor | None = None, eos_token_id: int | None = None,
                    pad_token_id: int | None = None, use_cache: bool = True) -> torch.Tensor:
    """Greedy decoding through ``split``'s three parts, each with its own key/value cache.

    Args:
        split: from :func:`~flglm_kit.split.split_model` (a deep prefix, if applied, is used).
        input_ids: (B, T) prompt token ids.
        max_new_tokens: how many tokens to add.
        attention_mask: (B, T) 0/1, padding on the left only (needs ``use_cache``).
        eos_token_id: a row that produces it is finished; decoding stops once every row is.
        pad_token_id: what a finished row gets afterwards (default ``eos_token_id``).
        use_cache: keep each part's cache and run only the new position per step; ``False``
            runs the whole sequence every step (unpadded rows only).

    Returns:
        (B, T + n) token ids, n <= ``max_new_tokens``.

    Raises:
        ValueError: right padding, or padding without ``use_cache``.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> from flglm_kit.split import split_model
        >>> model = tiny_model("glm")
        >>> ids = torch.randint(3, 512, (2, 6), generator=torch.Generator().manual_seed(0))
        >>> out = greedy_generate(split_model(model), ids, max_new_tokens=5)
        >>> torch.equal(out, reference_generate(model, ids, max_new_tokens=5))
        True
    """
    spans = Spans.of_batch(input_ids, attention_mask)
    seq_len = input_ids.shape[1]
    if bool(((spans.starts + spans.lengths != seq_len) | (spans.lengths == 0)).any()):
        raise ValueError("greedy_generate needs every row padded on the left only, with at least one token")
    if not use_cache and not bool((spans.lengths == seq_len).all()):
        raise ValueError("greedy_generate(use_cache=False) decodes unpadded rows only")
    split.eval()
    batch = input_ids.shape[0]
    caches = (split.head.new_cache(batch), split.trunk.new_cache(batch), split.tail.new_cache(batch)) \
        if use_cache else None
    fill = eos_token_id if pad_token_id is None else pad_token_id
    unfinished = torch.ones(batch, dtype=torch.bool, device=input_ids.device)  # (B,)
    out, new_ids = input_ids, input_ids
    for _ in range(max_new_tokens):
        if caches is None:
            logits = _next_logits(split, out, Spans.of_batch(out), None)  # (B, V)
        else:
            logits = _next_logits(split, new_ids, spans, caches)  # (B, V)
        next_ids = logits.argmax(dim=-1)  # (B,)
        if eos_token_id is not None:
            next_ids = torch.where(unfinished, next_ids, torch.full_like(next_ids, fill if fill is not None else 0))
            unfinished &= next_ids != eos_token_id
        out = torch.cat([out, next_ids[:, None]], dim=1)  # (B, T + i + 1)
        new_ids, spans = next_ids[:, None], Spans.full(batch, 1, device=input_ids.device)  # (B, 1)
        if not bool(unfinished.any()):
            break
    return out


@torch.no_grad()
def reference_generate(model: nn.Module, input_ids: torch.Tensor, *, max_new_tokens: int = 20,
                       attention_mask: torch.Tensor | None = None, eos_token_id: int | None = None,
                       pad_token_id: int | None = None, use_cache: bool = True) -> torch.Tensor:
    """The whole model's greedy ``generate``, with the same arguments as :func:`greedy_generate`.

    ``eos_token_id=None`` means no stop token (the model's generation config is not consulted),
    so both functions decode exactly ``max_new_tokens`` tokens.

    Args:
        model: an unsplit ``transformers`` causal LM.
        input_ids, max_new_tokens, attention_mask, eos_token_id, pad_token_id, use_cache: as
            for :func:`greedy_generate`.

    Returns:
        (B, T + n) token ids.
    """
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    generate: Any = model.generate
    pad = pad_token_id if pad_token_id is not None else (eos_token_id if eos_token_id is not None else 0)
    out: torch.Tensor = generate(input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=eos_token_id, pad_token_id=pad, use_cache=use_cache)
    return out
