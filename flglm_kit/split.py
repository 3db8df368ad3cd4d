"""Split a Hugging Face decoder three ways: input block, trunk, output block (ARCHITECTURE.md §1).

::

    client: input block  = embedding + first ``head_layers`` decoder blocks
    server: trunk        = the middle blocks
    client: output block = last ``tail_layers`` blocks + final norm + LM head + loss

FL-GLM uses ``head_layers = tail_layers = 1``. Two naive layouts are built too, so that the
kit can show their leaks: ``head_layers=0`` (the server receives raw embeddings) and
``tail_on_server=True`` (final norm and LM head on the server, so labels reach it).

What crosses the cut is the activations plus one :class:`Spans` per batch (where each sample's
real tokens start and how many there are). Each part rebuilds rotary embeddings and the causal
mask itself with the model family's own functions, so no attention mask crosses the wire and
the split computes exactly what the whole model computes.

Each part can also keep a key/value cache of *its own* blocks (:class:`PartCache`, notebook
06): then a part runs only the new positions, as the whole model does in ``generate``. A part
may carry a trainable deep prefix (``part.prefix``, see :mod:`flglm_kit.prefix`): prefix keys and
values for its own blocks, which every real token attends to, as peft's prefix tuning does.

Introduced in notebook 01.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import masking_utils
from transformers.cache_utils import DynamicCache

from flglm_kit.families import Family, check_config, family_of
from flglm_kit.losses import next_token_loss

__all__ = ["Spans", "InputBlock", "Trunk", "OutputBlock", "SplitModel", "SplitOutput", "split_model",
           "split_fingerprint", "PartCache"]

_REQUIRED = ("model.embed_tokens", "model.layers", "model.norm", "model.rotary_emb", "lm_head")


@dataclass(frozen=True)
class Spans:
    """Where each sample's real tokens sit in a padded batch: ``[start, start + length)``.

    Two ``(B,)`` integer tensors replace the ``(B, T)`` attention mask on the wire (FedSEA-LLaMA
    calls this attention-mask compression). Right and left padding are both one span per row.

    Example:
        >>> mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
        >>> s = Spans.from_attention_mask(mask)
        >>> s.starts.tolist(), s.lengths.tolist(), bool((s.attention_mask() == mask).all())
        ([0, 1], [3, 3], True)
    """

    starts: torch.Tensor  # (B,) int64
    lengths: torch.Tensor  # (B,) int64
    seq_len: int

    @classmethod
    def full(cls, batch_size: int, seq_len: int, device: torch.device | None = None) -> Spans:
        """Every position of every row is a real token (no padding)."""
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        return cls(zeros, torch.full_like(zeros, seq_len), seq_len)

    @classmethod
    def of_batch(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Spans:
        """The spans of a ``(B, T)`` batch: every token real when ``attention_mask`` is ``None``.

        Example:
            >>> Spans.of_batch(torch.zeros(2, 5, dtype=torch.long)).lengths.tolist()
            [5, 5]
        """
        if attention_mask is None:
            batch_size, seq_len = input_ids.shape
            return cls.full(batch_size, seq_len, device=input_ids.device)
        return cls.from_attention_mask(attention_mask.to(input_ids.device))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The two tensors a message carries for these spans: ``starts`` and ``lengths``."""
        return {"starts": self.starts, "lengths": self.lengths}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], seq_len: int,
                     device: torch.device | None = None) -> Spans:
        """The spans a message carries (see :meth:`to_tensors`), as int64 tensors on ``device``.

        Example:
            >>> s = Spans.full(2, 4)
            >>> Spans.from_tensors(s.to_tensors(), 4).lengths.tolist()
            [4, 4]
        """
        return cls(tensors["starts"].long().to(device), tensors["lengths"].long().to(device), seq_len)

    @classmethod
    def from_attention_mask(cls, attention_mask: torch.Tensor) -> Spans:
        """Compress a ``(B, T)`` 0/1 mask; raises ``ValueError`` if a row has interior gaps."""
        if attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be (batch, seq_len); got shape {tuple(attention_mask.shape)}")
        mask = attention_mask.to(torch.long)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("attention_mask must hold only 0 and 1")
        batch_size, seq_len = mask.shape
        lengths = mask.sum(dim=1)  # (B,)
        starts = torch.where(lengths > 0, mask.argmax(dim=1), torch.zeros_like(lengths))  # (B,)
        spans = cls(starts, lengths, seq_len)
        gaps = (spans.attention_mask() != mask).any(dim=1)  # (B,)
        if bool(gaps.any()):
            row = int(gaps.nonzero()[0])
            raise ValueError(
                f"attention_mask row {row} has padding between real tokens; the split sends one "
                "span (start, length) per sample, so pad only on the left or on the right"
            )
        return spans

    def attention_mask(self) -> torch.Tensor:
        """The ``(B, T)`` 0/1 long mask these spans stand for."""
        positions = torch.arange(self.seq_len, device=self.starts.device)  # (T,)
        starts, ends = self.starts[:, None], (self.starts + self.lengths)[:, None]  # (B, 1)
        return ((positions >= starts) & (positions < ends)).long()  # (B, T)

    def validate(self, batch_size: int) -> None:
        """Raise ``ValueError`` unless these spans fit a ``(batch_size, seq_len)`` batch."""
        for name, t in (("starts", self.starts), ("lengths", self.lengths)):
            if t.shape != (batch_size,) or t.dtype not in (torch.int64, torch.int32):
                raise ValueError(
                    f"{name} must be an integer tensor of shape ({batch_size},); "
                    f"got {t.dtype} {tuple(t.shape)}"
                )
        if bool((self.starts < 0).any() | (self.lengths < 0).any()):
            raise ValueError("starts and lengths must be non-negative")
        # Compare without adding: starts + lengths can wrap around int64.
        if bool((self.starts > self.seq_len).any() | (self.lengths > self.seq_len - self.starts).any()):
            raise ValueError(f"a span runs past the sequence length {self.seq_len}")


@dataclass
class SplitOutput:
    """What :meth:`SplitModel.forward` returns: like a ``CausalLMOutput``."""

    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None


def _check_layout(model: nn.Module) -> None:
    missing = []
    for path in _REQUIRED:
        obj: Any = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if obj is None:
            missing.append(path)
    if missing:
        raise TypeError(
            f"{type(model).__name__} does not have the Llama-like layout split_model needs: "
            f"missing {', '.join(missing)}. Supported: the families listed in the README "
            "('Supported model families'), all with model.embed_tokens, model.layers, model.norm, "
            "model.rotary_emb and lm_head."
        )


def _mask_builder(layer_type: str) -> Any:
    if layer_type == "sliding_attention":
        return masking_utils.create_sliding_window_causal_mask
    if layer_type == "full_attention":
        return masking_utils.create_causal_mask
    raise TypeError(f"layer type {layer_type!r} is not supported by the split yet")


def _causal_masks(config: Any, hidden: torch.Tensor, mask2d: torch.Tensor, position_ids: torch.Tensor,
                  layer_types: set[str], cache: PartCache | None = None,
                  first_of_type: dict[str, int] | None = None) -> dict[str, Any]:
    """The family's own causal masks, one per layer type, exactly as its model forward builds them.

    With a ``cache``, ``mask2d`` is (B, past + T) and each mask is sized by the cache's first
    block of that type (``first_of_type``), as the whole model sizes it by its first such block.
    """
    masks = {}
    for layer_type in layer_types:
        build = _mask_builder(layer_type)
        params = _parameter_names(build)
        # transformers renamed a few arguments within 5.x; pass each under the name it has here.
        kwargs: dict[str, Any] = {"config": config, "attention_mask": mask2d, "position_ids": position_ids}
        kwargs["inputs_embeds" if "inputs_embeds" in params else "input_embeds"] = hidden
        kwargs["cache" if "cache" in params else "past_key_values"] = None if cache is None else cache.kv
        past = 0 if cache is None else cache.past_len
        if "cache_position" in params:
            kwargs["cache_position"] = torch.arange(past, past + hidden.shape[1], device=hidden.device)
        if cache is not None and first_of_type is not None and "layer_idx" in params:
            kwargs["layer_idx"] = first_of_type[layer_type]
        masks[layer_type] = build(**kwargs)
    return masks


@functools.cache
def _parameter_names(fn: Any) -> frozenset[str]:
    """``fn``'s parameter names, read once (``inspect.signature`` costs more than a decoding step's mask)."""
    return frozenset(inspect.signature(fn).parameters)


def _cache_kwarg(layer: nn.Module) -> str:
    """The name a decoder block takes its cache under (transformers renamed it within 5.x)."""
    return "cache" if "cache" in _parameter_names(type(layer).forward) else "past_key_values"


class PartCache:
    """The key/value cache of one part's blocks only, keyed by their original block index.

    It wraps transformers' own ``DynamicCache`` (so every block updates it exactly as in the
    whole model) and remembers the (B, past) 0/1 mask of every position seen so far, the deep
    prefix included: ``past_len`` is where the next positions start. Made by
    :meth:`InputBlock.new_cache` (and the trunk's and output block's); each party keeps the
    caches of its own blocks, so nothing of a cache ever crosses the wire.

    Positions with a cache follow ``model.generate``: a real token's position is the number of
    real (or prefix) positions before it, so left padding does not shift a row's positions;
    with no padding that is ``past_len + arange(T)``.

    Args:
        config: the model's config (it sizes the cache: layer types, sliding window).
        layer_indices: the part's blocks, by original index.
        batch_size: the rows this cache serves.
        device: where its mask lives.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> split = split_model(tiny_model("glm"))
        >>> cache = split.trunk.new_cache(2)
        >>> _ = split.trunk(torch.zeros(2, 5, 64), Spans.full(2, 5), cache=cache)
        >>> cache.past_len, cache.nbytes() > 0
        (5, True)

    Not called directly in a notebook (the parties use it for generation, notebook 06).
    """

    def __init__(self, config: Any, layer_indices: list[int], batch_size: int,
                 device: torch.device | None = None) -> None:
        self.kv = DynamicCache(config=config)
        self.layer_indices = list(layer_indices)
        self.batch_size = batch_size
        self.mask = torch.zeros(batch_size, 0, dtype=torch.long, device=device)  # (B, past)

    def __repr__(self) -> str:
        return f"PartCache(layers {self.layer_indices}, batch {self.batch_size}, past {self.past_len})"

    @property
    def past_len(self) -> int:
        """Positions already in the cache (deep prefix included)."""
        return int(self.mask.shape[1])

    def nbytes(self) -> int:
        """Bytes held by this part's cached keys and values."""
        total = 0
        for i in self.layer_indices:
            layer = self.kv.layers[i]
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                total += t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0
        return total

    def next_position_ids(self, spans: Spans) -> torch.Tensor:
        """(B, T) positions of the next ``spans.seq_len`` positions, as ``model.generate`` numbers them."""
        full = torch.cat([self.mask, spans.attention_mask().to(self.mask.device)], dim=1)  # (B, past + T)
        positions = (full.cumsum(-1) - 1).masked_fill(full == 0, 0)  # (B, past + T)
        return positions[:, self.past_len:]  # (B, T)

    def extend(self, spans: Spans) -> torch.Tensor:
        """Append ``spans``' mask; return the (B, past + T) mask the new positions attend with."""
        if spans.starts.shape[0] != self.batch_size:
            raise ValueError(f"this cache serves {self.batch_size} rows, not {spans.starts.shape[0]}")
        self.mask = torch.cat([self.mask, spans.attention_mask().to(self.mask.device)], dim=1)  # (B, past + T)
        return self.mask

    def prefill(self, prefix: torch.Tensor, dtype: torch.dtype) -> None:
        """Put a deep prefix (L, 2, kv_heads, P, head_dim) in an empty cache, one slice per own block."""
        if self.past_len:
            raise ValueError("a prefix goes into an empty cache only")
        length = int(prefix.shape[3])
        for local, index in enumerate(self.layer_indices):
            keys, values = (prefix[local, j].to(dtype).unsqueeze(0).expand(self.batch_size, -1, -1, -1)
                            for j in (0, 1))  # each (B, kv_heads, P, head_dim)
            self.kv.update(keys, values, index)
        self.mask = torch.ones(self.batch_size, length, dtype=torch.long, device=self.mask.device)  # (B, P)


class _Part(nn.Module):
    """A run of decoder blocks with its own rotary embedding; blocks keep their original index."""

    #: the handshake's fingerprint of the model and the cut (see :func:`split_fingerprint`).
    fingerprint: str = ""

    def __init__(self, config: Any, rotary_emb: nn.Module, layers: dict[int, nn.Module],
                 family: Family | None = None) -> None:
        super().__init__()
        self.config = config
        self.family = family or Family()
        self.rotary_emb = rotary_emb
        # Keyed by the original block index, so parameter names line up with the whole model's.
        self.layers = nn.ModuleDict({str(i): layer for i, layer in layers.items()})
        #: deep prefix keys and values of this part's blocks, (L, 2, kv_heads, P, head_dim); see flglm_kit.prefix
        self.prefix: nn.Parameter | None
        self.register_parameter("prefix", None)

    @property
    def prefix_len(self) -> int:
        """P, the deep prefix's length (0 without a prefix)."""
        return 0 if self.prefix is None else int(self.prefix.shape[3])

    def new_cache(self, batch_size: int, device: torch.device | None = None) -> PartCache:
        """An empty :class:`PartCache` of this part's blocks for ``batch_size`` rows, its prefix put in.

        Args:
            batch_size: the rows the cache serves.
            device: where the cache's mask lives; default: where this part's parameters are.

        Returns:
            A cache whose ``past_len`` is this part's ``prefix_len``.
        """
        device = device or next(self.parameters(), torch.empty(0)).device
        cache = PartCache(self.config, self.layer_indices, batch_size, device)
        if self.prefix is not None:
            dtype = next((p.dtype for n, p in self.named_parameters() if n != "prefix"), self.prefix.dtype)
            cache.prefill(self.prefix, dtype)
        return cache

    @property
    def layer_indices(self) -> list[int]:
        return [int(k) for k in self.layers]

    def _layer_type(self, index: int) -> str:
        if self.family.window_all_layers:  # Mistral's rule: one window for every block, if any
            return "full_attention" if self.config.sliding_window is None else "sliding_attention"
        types = getattr(self.config, "layer_types", None)
        return types[index] if types else "full_attention"

    def _position_embeddings(self, hidden: torch.Tensor, position_ids: torch.Tensor,
                             types: set[str]) -> dict[str, Any]:
        """Rotary (cos, sin), each (1, T, d), per layer type: one theta for all, or one per type."""
        if self.family.rotary_per_layer_type:
            return {t: self.rotary_emb(hidden, position_ids, t) for t in types}
        shared = self.rotary_emb(hidden, position_ids)
        return {t: shared for t in types}

    def run_layers(self, hidden: torch.Tensor, spans: Spans, *, cache: PartCache | None = None,
                   position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Run this part's blocks on ``hidden`` (B, T, H) with the mask and rotary rebuilt from ``spans``.

        Args:
            hidden: (B, T, H) the new positions.
            spans: where each row's real tokens sit among these T positions.
            cache: this part's :class:`PartCache`; the blocks attend to its past and append the
                new keys and values. ``None``: no past, except the part's deep prefix if it has one.
            position_ids: (B or 1, T); default: ``past_len + arange(T)`` without a cache (as the
                whole model's forward), :meth:`PartCache.next_position_ids` with one (as ``generate``).

        Returns:
            (B, T, H) hidden states.
        """
        if cache is None and self.prefix is None:
            return self._run_plain(hidden, spans, position_ids)
        if cache is None:
            cache = self.new_cache(hidden.shape[0], hidden.device)  # the prefix alone is the past
            past = cache.past_len
            default_positions = torch.arange(past, past + hidden.shape[1], device=hidden.device)[None]  # (1, T)
        else:
            default_positions = cache.next_position_ids(spans).to(hidden.device)  # (B, T)
        position_ids = default_positions if position_ids is None else position_ids
        types = {self._layer_type(i) for i in self.layer_indices}
        first_of_type = {t: next(i for i in self.layer_indices if self._layer_type(i) == t) for t in types}
        # The masks read the cache's past length, so they are built before the blocks grow it.
        full_mask = torch.cat([cache.mask, spans.attention_mask().to(cache.mask.device)], dim=1)  # (B, past + T)
        masks = _causal_masks(self.config, hidden, full_mask.to(hidden.device), position_ids, types, cache,
                              first_of_type) if self.layers else {}
        cache.extend(spans)
        if len(self.layers) == 0:
            return hidden
        rotary = self._position_embeddings(hidden, position_ids, types)
        for key, layer in self.layers.items():
            layer_type = self._layer_type(int(key))
            out = layer(hidden, attention_mask=masks[layer_type], position_embeddings=rotary[layer_type],
                        position_ids=position_ids, use_cache=True, **{_cache_kwarg(layer): cache.kv})
            hidden = out[0] if isinstance(out, tuple) else out  # (B, T, H)
        return hidden

    def _run_plain(self, hidden: torch.Tensor, spans: Spans, position_ids: torch.Tensor | None) -> torch.Tensor:
        """No cache, no prefix: the blocks on T positions from 0, as the whole model's forward."""
        if len(self.layers) == 0:
            return hidden
        seq_len = hidden.shape[1]
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=hidden.device).unsqueeze(0)  # (1, T), as HF's default
        mask2d = spans.attention_mask().to(hidden.device)  # (B, T)
        types = {self._layer_type(i) for i in self.layer_indices}
        masks = _causal_masks(self.config, hidden, mask2d, position_ids, types)
        rotary = self._position_embeddings(hidden, position_ids, types)
        for key, layer in self.layers.items():
            layer_type = self._layer_type(int(key))
            out = layer(hidden, attention_mask=masks[layer_type],
                        position_embeddings=rotary[layer_type], position_ids=position_ids)
            hidden = out[0] if isinstance(out, tuple) else out  # (B, T, H)
        return hidden


class InputBlock(_Part):
    """The client's input block: embedding + the first ``head_layers`` decoder blocks."""

    def __init__(self, config: Any, rotary_emb: nn.Module, layers: dict[int, nn.Module],
                 embed_tokens: nn.Module, family: Family | None = None) -> None:
        super().__init__(config, rotary_emb, layers, family)
        self.embed_tokens = embed_tokens

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, H) embeddings, scaled as the family's model scales them."""
        hidden = self.embed_tokens(input_ids)  # (B, T, H)
        scale = self.family.embed_scale(self.config) if self.family.embed_scale else None
        return hidden if scale is None else hidden * scale

    def forward(self, input_ids: torch.Tensor, spans: Spans, *, cache: PartCache | None = None) -> torch.Tensor:
        """(B, T) token ids -> (B, T, H) activations to send to the server (see :meth:`run_layers` for ``cache``)."""
        return self.run_layers(self.embed(input_ids), spans, cache=cache)


class Trunk(_Part):
    """The server's trunk: the middle decoder blocks."""

    def forward(self, hidden: torch.Tensor, spans: Spans, *, cache: PartCache | None = None) -> torch.Tensor:
        """(B, T, H) activations -> (B, T, H) hidden states for the output block (``cache``: :meth:`run_layers`)."""
        return self.run_layers(hidden, spans, cache=cache)


class OutputBlock(_Part):
    """The output block: the last ``tail_layers`` blocks + final norm + LM head + loss."""

    def __init__(self, config: Any, rotary_emb: nn.Module, layers: dict[int, nn.Module],
                 norm: nn.Module, lm_head: nn.Module, family: Family | None = None) -> None:
        super().__init__(config, rotary_emb, layers, family)
        self.norm = norm
        self.lm_head = lm_head

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) normed hidden states -> (B, T, V) logits, mapped as the family's model maps them."""
        logits = self.lm_head(hidden)  # (B, T, V)
        return self.family.logits(logits, self.config) if self.family.logits else logits

    def forward(self, hidden: torch.Tensor, spans: Spans, labels: torch.Tensor | None = None, *,
                cache: PartCache | None = None) -> SplitOutput:
        """(B, T, H) hidden states -> logits (B, T, V) and, given labels (B, T), the loss.

        ``cache``: see :meth:`run_layers`.
        """
        logits = self.logits(self.norm(self.run_layers(hidden, spans, cache=cache)))  # (B, T, V)
        loss = None
        if labels is not None:
            loss = next_token_loss(logits, labels)
        return SplitOutput(logits=logits, loss=loss)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


class SplitModel(nn.Module):
    """A model split three ways; made by :func:`split_model`.

    ``head`` and ``tail`` are the client's, ``trunk`` the server's (``tail`` too when
    ``tail_on_server``). Each part owns its parameters: nothing is shared with the other party
    or with the original model. :meth:`forward` runs the three parts in one process, for
    checking and teaching; the parties (:mod:`flglm_kit.client`, :mod:`flglm_kit.server`) run
    the same parts over the wire.
    """

    def __init__(self, head: InputBlock, trunk: Trunk, tail: OutputBlock, *, tail_on_server: bool) -> None:
        super().__init__()
        self.head, self.trunk, self.tail = head, trunk, tail
        self.tail_on_server = tail_on_server
        self.config = trunk.config

    @property
    def fingerprint(self) -> str:
        """The fingerprint every part carries (see :func:`split_fingerprint`)."""
        return self.trunk.fingerprint

    @property
    def placement(self) -> dict[str, str]:
        """Which party holds each part."""
        return {"input block": "client", "trunk": "server",
                "output block": "server" if self.tail_on_server else "client"}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SplitOutput:
        """Input block -> trunk -> output block; the same logits and loss as the whole model."""
        spans = Spans.of_batch(input_ids, attention_mask)
        activations = self.head(input_ids, spans)  # (B, T, H): what the client sends
        hidden = self.trunk(activations, spans)  # (B, T, H): what the server returns
        return self.tail(hidden, spans, labels)

    def original_name(self, part: str, name: str) -> str:
        """The whole model's name for parameter ``name`` of ``part`` (``"head"``, ``"trunk"``, ``"tail"``).

        Example:
            >>> from flglm_kit.models import tiny_model
            >>> split = split_model(tiny_model("glm"))
            >>> split.original_name("tail", "layers.3.mlp.down_proj.weight")
            'model.layers.3.mlp.down_proj.weight'
        """
        if part not in ("head", "trunk", "tail"):
            raise ValueError(f"part must be 'head', 'trunk' or 'tail', not {part!r}")
        return name if name.startswith("lm_head.") else f"model.{name}"

    def flops_per_token(self, seq_len: int) -> dict[str, float]:
        """Approximate forward FLOPs per token of each part at ``seq_len`` (matmuls + attention)."""
        cfg = self.config
        attn_width = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
        out = {}
        for name, part in (("head", self.head), ("trunk", self.trunk), ("tail", self.tail)):
            matmul_params = sum(p.numel() for n, p in part.named_parameters()
                                if p.dim() == 2 and not n.startswith("embed_tokens"))
            # QK^T and AV over an average causal context of seq_len / 2 tokens, 2 FLOPs per MAC.
            attention = len(part.layers) * 2 * 2 * (seq_len / 2) * attn_width
            out[name] = 2.0 * matmul_params + attention
        return out

    def summary(self, seq_len: int = 128) -> str:
        """A table: which blocks, how many parameters and what share of compute sit on each side."""
        flops = self.flops_per_token(seq_len)
        total_params = _count(self)
        total_flops = sum(flops.values())
        rows = []
        for name, part, label in (("head", self.head, "input block"), ("trunk", self.trunk, "trunk"),
                                  ("tail", self.tail, "output block")):
            pieces = (["embed_tokens"] if name == "head" else [])
            idx = part.layer_indices
            if idx:
                pieces.append(f"layers {idx[0]}-{idx[-1]}" if len(idx) > 1 else f"layer {idx[0]}")
            if name == "tail":
                pieces += ["norm", "lm_head", "loss"]
            n = _count(part)
            rows.append((label, self.placement[label], ", ".join(pieces) or "(no blocks)",
                         f"{n:,}", f"{100 * n / total_params:.1f}%", f"{100 * flops[name] / total_flops:.1f}%"))
        header = ("part", "held by", "holds", "parameters", "params %", f"compute % (T={seq_len})")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header] + rows]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


#: config keys that say how a model was saved or run, not what it computes.
_VOLATILE = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash")


def split_fingerprint(config: Any, *, head_layers: int, tail_layers: int, tail_on_server: bool) -> str:
    """Hex SHA-256 of the model's config and the cut: equal on both sides of a handshake iff they match.

    Keys that do not change what the model computes (its path, the transformers version, the
    dtype, the attention implementation) are left out, so a float16 server and a float32 client
    of the same model agree.

    Args:
        config: the model's ``transformers`` config.
        head_layers, tail_layers, tail_on_server: the cut, as given to :func:`split_model`.

    Returns:
        64 hex characters.

    Example:
        >>> from flglm_kit.models import tiny_config
        >>> a = split_fingerprint(tiny_config("glm"), head_layers=1, tail_layers=1, tail_on_server=False)
        >>> b = split_fingerprint(tiny_config("glm"), head_layers=2, tail_layers=1, tail_on_server=False)
        >>> len(a), a == b
        (64, False)
    """
    fields = {k: v for k, v in config.to_dict().items()
              if k not in _VOLATILE and not k.startswith("_attn_implementation")}
    cut = {"head_layers": head_layers, "tail_layers": tail_layers, "tail_on_server": tail_on_server}
    text = json.dumps({"config": fields, "cut": cut}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def split_model(model: nn.Module, *, head_layers: int = 1, tail_layers: int = 1,
                tail_on_server: bool = False, copy_weights: bool = True,
                allow_empty_trunk: bool = False) -> SplitModel:
    """Split a Llama-layout causal LM into input block, trunk and output block.

    Args:
        model: a ``transformers`` causal LM with ``model.embed_tokens``, ``model.layers``,
            ``model.norm``, ``model.rotary_emb`` and ``lm_head`` (GLM, GLM-4, Llama, Qwen2, ...).
        head_layers: decoder blocks kept on the client before the trunk (0 = naive: the server
            receives raw embeddings).
        tail_layers: decoder blocks kept on the client after the trunk.
        tail_on_server: put the output block (final norm, LM head, loss) on the server: the
            naive layout in which labels reach the server.
        copy_weights: deep-copy the parts (the original model stays usable). ``False`` moves
            the original modules into the parts, saving memory for a large checkpoint; do not
            use the original model afterwards.
        allow_empty_trunk: accept ``head_layers + tail_layers`` equal to the number of blocks,
            which leaves the server no block (it only relays activations). Off by default, since
            it is almost always a wrong layer count.

    Returns:
        A :class:`SplitModel`; each part and the split carry the same ``fingerprint``
        (:func:`split_fingerprint`).

    Raises:
        TypeError: the model lacks the layout (the message names what is missing), or its family
            is not one the split reproduces exactly (the message names the feature).
        ValueError: the config turns on an option the split does not reproduce, the layer counts
            do not fit, or tied embeddings would straddle the parties.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> split = split_model(tiny_model("glm"), head_layers=1, tail_layers=1)
        >>> split.head.layer_indices, split.trunk.layer_indices, split.tail.layer_indices
        ([0], [1, 2], [3])
    """
    _check_layout(model)
    family = family_of(model)
    check_config(model)
    inner: Any = model.model
    lm_head: Any = model.lm_head
    n_layers = len(inner.layers)
    if head_layers < 0 or tail_layers < 0 or head_layers + tail_layers > n_layers:
        raise ValueError(
            f"head_layers={head_layers} and tail_layers={tail_layers} must be non-negative and "
            f"add up to at most the model's {n_layers} blocks"
        )
    if head_layers + tail_layers == n_layers and not allow_empty_trunk:
        raise ValueError(
            f"head_layers={head_layers} and tail_layers={tail_layers} leave the server none of the "
            f"model's {n_layers} blocks (an empty trunk); lower one of them, or pass "
            "allow_empty_trunk=True if the server should only relay activations"
        )
    tied = lm_head.weight is inner.embed_tokens.weight
    if tied and tail_on_server:
        raise ValueError(
            "this model ties its LM head to the embedding table, so the output block cannot move to "
            "the server without handing it the client's embeddings; untie them first "
            "(config.tie_word_embeddings=False) or keep tail_on_server=False"
        )
    layers = list(inner.layers)
    cut_a, cut_b = head_layers, n_layers - tail_layers

    def take(obj: Any, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(obj, memo) if copy_weights else obj

    # One memo per party: a client's input and output blocks may share a tied embedding
    # (both sit on the client); nothing is ever shared between client and server.
    client_memo: dict[int, Any] = {}
    server_memo: dict[int, Any] = {}
    tail_memo = server_memo if tail_on_server else client_memo
    head = InputBlock(take(model.config, client_memo), take(inner.rotary_emb, client_memo),
                      {i: take(layers[i], client_memo) for i in range(cut_a)},
                      take(inner.embed_tokens, client_memo), family)
    trunk = Trunk(take(model.config, server_memo), take(inner.rotary_emb, server_memo),
                  {i: take(layers[i], server_memo) for i in range(cut_a, cut_b)}, family)
    tail = OutputBlock(take(model.config, tail_memo), take(inner.rotary_emb, tail_memo),
                       {i: take(layers[i], tail_memo) for i in range(cut_b, n_layers)},
                       take(inner.norm, tail_memo), take(lm_head, tail_memo), family)
    fingerprint = split_fingerprint(model.config, head_layers=head_layers, tail_layers=tail_layers,
                                    tail_on_server=tail_on_server)
    for part in (head, trunk, tail):
        part.fingerprint = fingerprint
    return SplitModel(head, trunk, tail, tail_on_server=tail_on_server)
