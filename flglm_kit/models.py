"""Tiny model configs for the supported families, built offline from a config (no download).

The kit trains and tests on models small enough for a laptop CPU. Every family here has the
Llama-like layout that :func:`flglm_kit.split_model` needs (ARCHITECTURE.md §1; the families it
reproduces exactly are in :mod:`flglm_kit.families`). A researcher swaps in
a real checkpoint with ``AutoModelForCausalLM.from_pretrained(path)``; the split and the parties
do not care where the model came from.

Introduced in notebook 01.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from transformers import PreTrainedModel

__all__ = ["FAMILIES", "tiny_config", "tiny_model"]

#: family name -> (config class, causal-LM class) in ``transformers``.
FAMILIES: dict[str, tuple[str, str]] = {
    "glm": ("GlmConfig", "GlmForCausalLM"),
    "glm4": ("Glm4Config", "Glm4ForCausalLM"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
}

# Small enough for CPU tests, large enough to have real attention: grouped-query heads, a
# multi-layer trunk, and a head_dim that exercises the family's own rotary variant.
_TINY: dict[str, Any] = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)


def tiny_config(family: str = "glm", **overrides: Any) -> transformers.PretrainedConfig:
    """A tiny config of one supported family; keyword arguments override any field.

    Args:
        family: one of :data:`FAMILIES` (``"glm"`` is transformers' native ``GlmForCausalLM``).
        **overrides: config fields, for example ``num_hidden_layers=6``.

    Returns:
        A ``transformers`` config, eager attention in float32 unless overridden.

    Raises:
        ValueError: for an unknown family.

    Example:
        >>> tiny_config("llama", num_hidden_layers=6).num_hidden_layers
        6
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}")
    config_cls = getattr(transformers, FAMILIES[family][0])
    fields = {**_TINY, **overrides}
    attn = fields.pop("attn_implementation", "sdpa")
    config = config_cls(**fields)
    config._attn_implementation = attn
    return config


def tiny_model(
    family: str = "glm", *, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides: Any
) -> PreTrainedModel:
    """A freshly initialised tiny causal LM of ``family``, the same weights for the same seed.

    Example:
        >>> m = tiny_model("glm", seed=0)
        >>> type(m).__name__, sum(p.numel() for p in m.parameters()) > 0
        ('GlmForCausalLM', True)
    """
    config = tiny_config(family, **overrides)
    model_cls = getattr(transformers, FAMILIES[family][1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.to(dtype).eval()
