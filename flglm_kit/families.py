"""Which model families :func:`flglm_kit.split_model` reproduces exactly, and why the rest are refused.

A family is supported only when ``tests/test_families.py`` shows that its split equals the whole
model (logits, loss and every gradient, with left and right padding, windows shorter than the
sequence); every other ``*ForCausalLM`` is refused at split time, with the feature the split does
not reproduce. Most families need nothing beyond the Llama recipe (embedding, blocks with the
family's own masks and rotary embedding, final norm, LM head); the few extras are one line each:

==========================  ==================================================================
extra                       what the whole model does that the split repeats
==========================  ==================================================================
``embed_scale``             ``hidden * s`` after the embedding (Granite's embedding_multiplier)
``logits``                  a map on the logits (Cohere's logit_scale, Gemma-2's soft-capping)
``window_all_layers``       every block slides when ``config.sliding_window`` is set (Mistral)
``rotary_per_layer_type``   one rotary embedding per layer type (Gemma-3, OLMo-3)
==========================  ==================================================================

``scripts/supported_families.py`` writes the README's list from the same test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Family", "SUPPORTED", "REFUSED", "family_of", "check_config"]

Scale = Callable[[Any], "float | None"]
LogitMap = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass(frozen=True)
class Family:
    """What the split must do for one family beyond the plain Llama recipe.

    Attributes:
        embed_scale: the factor the model multiplies the embeddings by (``None``: none).
        logits: the map the model applies to the LM head's output before the loss.
        window_all_layers: every block uses the sliding-window mask when
            ``config.sliding_window`` is set (Mistral's rule); otherwise ``config.layer_types``.
        rotary_per_layer_type: the rotary embedding takes the layer type (a theta per type).
    """

    embed_scale: Scale | None = None
    logits: LogitMap | None = None
    window_all_layers: bool = False
    rotary_per_layer_type: bool = False

    @property
    def extras(self) -> list[str]:
        """The names of the extras this family needs (empty for plain Llama)."""
        flags = {"embed_scale": self.embed_scale is not None, "logits": self.logits is not None,
                 "window_all_layers": self.window_all_layers,
                 "rotary_per_layer_type": self.rotary_per_layer_type}
        return [name for name, on in flags.items() if on]


def _embedding_multiplier(config: Any) -> float | None:
    return float(config.embedding_multiplier)


def _mup(config: Any) -> float | None:
    return config.hidden_size**0.5 if config.mup_enabled else None


def _divide_by_logits_scaling(logits: torch.Tensor, config: Any) -> torch.Tensor:
    return logits / config.logits_scaling  # (B, T, V)


def _times_logits_scaling(logits: torch.Tensor, config: Any) -> torch.Tensor:
    return logits * config.logits_scaling  # (B, T, V)


def _times_logit_scale(logits: torch.Tensor, config: Any) -> torch.Tensor:
    return logits * config.logit_scale  # (B, T, V)


def _softcap(logits: torch.Tensor, config: Any) -> torch.Tensor:
    cap = config.final_logit_softcapping
    if cap is None:
        return logits
    return torch.tanh(logits / cap) * cap  # (B, T, V), the same three steps as Gemma-2's forward


_PLAIN = Family()
_WINDOW = Family(window_all_layers=True)
_GRANITE = Family(embed_scale=_embedding_multiplier, logits=_divide_by_logits_scaling)
_SOFTCAP = Family(logits=_softcap)

#: class name -> what the split does for it. Only names that tests/test_families.py proves exact.
SUPPORTED: dict[str, Family] = {
    **{name: _PLAIN for name in (
        "ApertusForCausalLM", "Apertus1p5TextForCausalLM", "ArceeForCausalLM", "AriaTextForCausalLM",
        "BitNetForCausalLM", "CwmForCausalLM", "DiffLlamaForCausalLM", "Dots1ForCausalLM", "Emu3ForCausalLM",
        "Ernie4_5ForCausalLM", "Ernie4_5_MoeForCausalLM", "Exaone4ForCausalLM", "ExaoneMoeForCausalLM",
        "FlexOlmoForCausalLM", "FlintForCausalLM", "GemmaForCausalLM", "GlmForCausalLM", "Glm4ForCausalLM",
        "Glm4MoeForCausalLM", "GptOssForCausalLM", "HYV3ForCausalLM", "HeliumForCausalLM",
        "HunYuanDenseV1ForCausalLM", "HunYuanMoEV1ForCausalLM", "Jais2ForCausalLM", "JetMoeForCausalLM",
        "Kolibri1ForCausalLM", "LlamaForCausalLM", "MiniMaxM2ForCausalLM", "MiniMaxM3VLForCausalLM",
        "MinistralForCausalLM", "NemotronForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM",
        "OlmoeForCausalLM", "Qwen2ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3ForCausalLM",
        "SeedOssForCausalLM", "SmolLM3ForCausalLM", "SolarOpenForCausalLM", "StableLmForCausalLM",
    )},
    **{name: _WINDOW for name in (
        "MistralForCausalLM", "Ministral3ForCausalLM", "MixtralForCausalLM", "Phi3ForCausalLM",
        "PhimoeForCausalLM", "Qwen3MoeForCausalLM", "Starcoder2ForCausalLM", "DogeForCausalLM",
    )},
    **{name: _GRANITE for name in ("GraniteForCausalLM", "GraniteMoeForCausalLM", "GraniteMoeSharedForCausalLM")},
    **{name: _SOFTCAP for name in ("Gemma2ForCausalLM", "VaultGemmaForCausalLM")},
    "AfmoeForCausalLM": Family(embed_scale=_mup),
    "CohereForCausalLM": Family(logits=_times_logit_scale),
    "Cohere2ForCausalLM": Family(logits=_times_logit_scale),
    "Cohere2MoeForCausalLM": Family(logits=_times_logit_scale),
    "HyperCLOVAXForCausalLM": Family(embed_scale=_embedding_multiplier, logits=_times_logits_scaling),
    "Gemma3ForCausalLM": Family(logits=_softcap, rotary_per_layer_type=True),
    **{name: Family(rotary_per_layer_type=True) for name in (
        "Olmo3ForCausalLM", "LagunaForCausalLM", "MellumForCausalLM", "MiMoV2FlashForCausalLM",
    )},
}

#: class name -> the feature of its forward that the split does not reproduce.
REFUSED: dict[str, str] = {
    "NanoChatForCausalLM": "the final norm also runs right after the embedding (one norm shared by both ends)",
    "GraniteSWAForCausalLM": "a rotary embedding per rope theta",
    "GraniteMoeSWAForCausalLM": "a rotary embedding per rope theta",
    "Llama4ForCausalLM": "chunked attention layers",
    "Gemma4ForCausalLM": "per-layer input embeddings",
    "DeepseekV4ForCausalLM": "compressed sparse attention layers",
    "DeepseekV32ForCausalLM": "sparse indexed attention layers",
    "GlmMoeDsaForCausalLM": "sparse indexed attention layers",
    "AXK2ForCausalLM": "sparse indexed attention layers",
    "HYV4ForCausalLM": "sparse indexed attention layers",
    "BailingHybridForCausalLM": "hybrid linear-attention layers",
    "MllamaForCausalLM": "cross-attention layers",
    "Qwen3NextForCausalLM": "hybrid linear-attention layers",
    "Qwen3_5ForCausalLM": "hybrid linear-attention layers",
    "Qwen3_5MoeForCausalLM": "hybrid linear-attention layers",
    "MiniMaxForCausalLM": "hybrid linear-attention layers",
    "LaraMiniForCausalLM": "hybrid linear-attention layers",
    "OlmoHybridForCausalLM": "hybrid linear-attention layers",
}

_NOT_VERIFIED = "it is not verified by the kit's test (tests/test_families.py)"


def _is_transformers_class(model: Any) -> bool:
    return type(model).__module__.startswith("transformers.")


def family_of(model: Any) -> Family:
    """What the split must do for ``model``'s family (see :data:`SUPPORTED`).

    Args:
        model: a ``transformers`` causal LM with the Llama layout.

    Returns:
        The model's :class:`Family`.

    Raises:
        TypeError: the family is refused (the message names it and the feature the split does
            not reproduce), or it is not one of the families the kit's test proves exact.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> family_of(tiny_model("llama")).extras
        []
    """
    name = type(model).__name__
    if name in SUPPORTED and _is_transformers_class(model):
        return SUPPORTED[name]
    if name in REFUSED:
        reason = REFUSED[name]
    elif name in SUPPORTED:
        reason = f"it is a class from {type(model).__module__}, not transformers' own {name}, so {_NOT_VERIFIED}"
    else:
        reason = _NOT_VERIFIED
    raise TypeError(
        f"split_model does not support {name}: {reason}, so the split would not compute what the "
        f"whole model computes. Use one of the {len(SUPPORTED)} supported families (README, "
        "'Supported model families'), or add this one to flglm_kit.families.SUPPORTED with the "
        "extra it needs and prove it in tests/test_families.py"
    )


def check_config(model: Any) -> None:
    """Raise ``ValueError`` if ``model``'s config turns on something the split does not reproduce.

    Args:
        model: a model of a supported family.

    Raises:
        ValueError: the option, the value and how to turn it off.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> check_config(tiny_model("mistral", sliding_window=4))  # reproduced: no error
    """
    config = model.config
    name = type(model).__name__
    problems = []
    if getattr(config, "output_router_logits", False):
        problems.append("output_router_logits=True (the MoE router's auxiliary loss is added to the "
                        "loss; set it to False)")
    if getattr(config, "use_bidirectional_attention", False):
        problems.append("use_bidirectional_attention=True (bidirectional attention; set it to False)")
    types = set(getattr(config, "layer_types", None) or ())
    if types - {"full_attention", "sliding_attention"}:
        problems.append(f"layer_types {sorted(types)} (only full and sliding attention are reproduced)")
    if problems:
        raise ValueError(f"split_model does not reproduce {name} with " + "; ".join(problems))
