"""P-tuning v2 (deep prefix tuning), the FL-GLM paper's recipe, split three ways.

Every decoder block gets ``P`` trainable prefix keys and values, which every real token attends
to (they are never padded and never causally masked); the backbone is frozen. In the split,
each part holds the prefix of *its own* blocks only (``part.prefix``, shape
``(layers_in_part, 2, num_kv_heads, P, head_dim)``), so the client trains the prefixes of its
input and output blocks and the server trains the trunk's: nothing prefix-related crosses the
wire except its length ``P`` (the client sends ``prefix_len`` with its activations; the server
refuses a mismatch).

Positions follow peft's ``PrefixTuning`` on a Hugging Face model: the prefix is a cache of
length ``P``, so real tokens sit at positions ``P, P + 1, ...``. The split then equals
``peft.get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=P))`` with the same prefix
values (logits, loss and prefix gradients; ``tests/test_prefix.py``); :func:`to_peft_prefix`
gives peft's embedding weight for a split's prefixes.

Introduced in notebook 06.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from flglm_kit.peft_common import module_names, whole_module_parameters
from flglm_kit.split import SplitModel, _Part

__all__ = ["PrefixSpec", "prefix_parameters", "to_peft_prefix"]

_PARTS = ("head", "trunk", "tail")


def _kv_shape(part: _Part) -> tuple[int, int]:
    """(num_kv_heads, head_dim) of ``part``'s blocks."""
    cfg = part.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return int(heads), int(head_dim)


@dataclass(frozen=True)
class PrefixSpec:
    """Deep prefix tuning (P-tuning v2): ``length`` prefix keys and values per block, backbone frozen.

    Args:
        length: P, the prefix length (virtual tokens), >= 1.
        init_std: the prefix starts as Gaussian noise of this standard deviation (> 0).
        seed: seed of that noise (the spec owns its generator; global RNGs are untouched).
        freeze_backbone: set ``requires_grad=False`` on every parameter but the prefixes.
        modules_to_save: modules that train *whole* beside the prefixes, as
            :attr:`flglm_kit.lora.LoraSpec.modules_to_save` (e.g. ``("embed_tokens",)``, the input
            block's token embeddings: they stay on the client, and a federation averages them with
            the prefixes). On the shipped tiny GLM, clinic triage needs them as LoRA does:
            centralized, 200 steps of 16 at lr 1e-2, seed 0, n = 500 test notes, prefixes of
            length 8 alone score 45.6 % [41.3, 50.0] (Wilson; always "routine": 48.8 %), with
            ``("embed_tokens",)`` 84.4 % [81.0, 87.3].

    Raises:
        ValueError: a length below 1, a non-positive or non-finite ``init_std``, or
            ``modules_to_save`` that is not a tuple of names.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> from flglm_kit.split import split_model
        >>> split = PrefixSpec(length=4).apply(split_model(tiny_model("glm")))
        >>> tuple(split.trunk.prefix.shape), prefix_parameters(split)
        ((2, 2, 2, 4, 16), {'head': 256, 'trunk': 512, 'tail': 256})

    Introduced in notebook 06.
    """

    length: int
    init_std: float = 0.02
    seed: int = 0
    freeze_backbone: bool = True
    modules_to_save: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.length) is not int or self.length < 1:
            raise ValueError(f"length must be an integer >= 1 (prefix positions per block), not {self.length!r}")
        if not isinstance(self.init_std, (int, float)) or not math.isfinite(self.init_std) or self.init_std <= 0:
            raise ValueError(f"init_std must be a finite number > 0, not {self.init_std!r}")
        object.__setattr__(self, "modules_to_save", module_names(self.modules_to_save))

    def apply_part(self, part: _Part, *, generator: torch.Generator | None = None) -> _Part:
        """Give one part a fresh prefix for its own blocks (and freeze the rest of it); returns the part.

        Args:
            part: an input block, trunk or output block.
            generator: where the initial noise comes from; default: a generator seeded with ``seed``.

        Returns:
            ``part``, changed in place: ``part.prefix`` is a (L, 2, kv_heads, P, head_dim) parameter.
        """
        generator = generator or torch.Generator().manual_seed(self.seed)
        heads, head_dim = _kv_shape(part)
        ref = next(part.parameters())
        shape = (len(part.layers), 2, heads, self.length, head_dim)  # (L, 2, kv_heads, P, head_dim)
        values = torch.randn(shape, generator=generator) * self.init_std
        if self.freeze_backbone:
            for p in part.parameters():
                p.requires_grad_(False)
        part.prefix = nn.Parameter(values.to(device=ref.device, dtype=ref.dtype))
        return part

    def apply(self, split: SplitModel) -> SplitModel:
        """Give every part of ``split`` a prefix for its own blocks and freeze the backbone; returns ``split``.

        Apply it before building the parties (their optimizers take the parameters that train).

        Args:
            split: from :func:`~flglm_kit.split.split_model`.

        Returns:
            ``split``, changed in place. Head, trunk and tail prefixes are drawn in block order
            from one generator, so a split and the whole model get the same values for a seed.
            The parameters of :attr:`modules_to_save` train too.

        Raises:
            ValueError: a name in :attr:`modules_to_save` matches no module (checked before
                anything changes).
        """
        saved = whole_module_parameters(split, self.modules_to_save)
        generator = torch.Generator().manual_seed(self.seed)
        for name in _PARTS:
            self.apply_part(getattr(split, name), generator=generator)
        for p in saved:
            p.requires_grad_(True)
        return split


def prefix_parameters(split: SplitModel) -> dict[str, int]:
    """Trainable prefix parameters per part: ``{"head": n, "trunk": n, "tail": n}`` (0 without a prefix).

    Args:
        split: a split, with or without :meth:`PrefixSpec.apply`.

    Returns:
        Counts of prefix entries that require gradients, per part.

    Not called directly in a notebook yet.
    """
    counts = {}
    for name in _PARTS:
        prefix = getattr(split, name).prefix
        counts[name] = 0 if prefix is None or not prefix.requires_grad else prefix.numel()
    return counts


def to_peft_prefix(split: SplitModel) -> torch.Tensor:
    """peft's ``PrefixTuning`` embedding weight (P, layers * 2 * kv_heads * head_dim) for ``split``'s prefixes.

    peft views its weight as (P, layers, 2, kv_heads, head_dim); the split keeps each part's
    share as (layers_in_part, 2, kv_heads, P, head_dim).

    Raises:
        ValueError: a part has no prefix, or the parts' lengths differ.
    """
    parts = [getattr(split, name) for name in _PARTS]
    if any(p.prefix is None for p in parts) or len({p.prefix_len for p in parts}) != 1:
        raise ValueError("every part needs a prefix of the same length; use PrefixSpec(...).apply(split)")
    whole = torch.cat([p.prefix.detach() for p in parts if p.prefix is not None])  # (layers, 2, kv, P, hd)
    return whole.permute(3, 0, 1, 2, 4).reshape(whole.shape[3], -1)  # (P, layers * 2 * kv * hd)
