"""LoRA on any part of a split, through ``peft``: low-rank adapters train, every other weight is frozen.

Each chosen part (input block, trunk, output block) gets ``peft``'s own LoRA layers, injected with
:func:`peft.inject_adapter_in_model` into the decoder blocks' linear layers: a layer ``W`` then
computes ``W x + (alpha / r) * B A x``, with ``A`` (r, in) random and ``B`` (out, r) zero at the
start, so applying LoRA changes nothing until the adapters train. Every other parameter of every
part is frozen, parts without LoRA included: only the adapters train. The client's adapters
(input and output blocks) are what a federation averages; the server's are the trunk's.

peft has no default target modules for GLM, so the kit names them for each family in
:data:`LORA_TARGETS` (keyed by ``config.model_type``): the attention projections and, where
the family has them as plain linear layers, the MLP's (as QLoRA adapts every linear layer of a
block). A MoE family's routed experts are fused tensors, not linear layers, so only its attention,
shared experts and dense blocks get adapters (the kit injects into the blocks, which carry no
config, so peft does not rename these names to fused experts as it does for some MoE families'
whole models). A family without an entry is refused; pass ``targets=`` for it.

Parameter names follow peft: a wrapped layer's weight becomes ``...q_proj.base_layer.weight`` and
its adapters ``...q_proj.lora_A.default.weight`` and ``...lora_B.default.weight``, so a split of a
LoRA-injected whole model has the same names as a LoRA-applied split (``tests/test_lora.py``
proves that both compute what the whole model computes).

Introduced in notebook 06.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from flglm_kit.peft_common import module_names, name_matches, whole_module_parameters
from flglm_kit.split import SplitModel

__all__ = ["LORA_TARGETS", "LoraSpec", "ParamCount", "lora_targets", "is_adapter", "adapter_state",
           "load_adapter_state", "trainable_summary"]

_PARTS = ("head", "trunk", "tail")
#: what marks a peft LoRA tensor in a parameter name (lora_A, lora_B, lora_embedding_A, ...)
_ADAPTER_MARK = "lora_"

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_LLAMA = _ATTN + ("gate_proj", "up_proj", "down_proj")  # SwiGLU MLP; MoE: shared experts, dense blocks
_FUSED_MLP = _ATTN + ("gate_up_proj", "down_proj")  # GLM's MLP: gate and up in one linear layer
_UP_DOWN = _ATTN + ("up_proj", "down_proj")  # an MLP without a gate

#: ``config.model_type`` -> names of the linear layers LoRA adapts in that family's decoder blocks
#: (matched as peft matches ``target_modules``: the module's name or its last dotted components).
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    **{t: _LLAMA for t in (
        "afmoe", "aria_text", "bitnet", "cohere", "cohere2", "cwm", "diffllama", "dots1", "emu3_text_model",
        "ernie4_5", "ernie4_5_moe", "exaone4", "exaone_moe", "flint", "gemma", "gemma2", "gemma3_text",
        "doge", "glm4_moe", "granite", "helium", "hunyuan_v1_dense", "hunyuan_v1_moe", "hy_v3", "hyperclovax",
        "kolibri1", "laguna", "llama", "mimo_v2_flash", "ministral", "ministral3", "mistral", "olmo", "olmo2",
        "olmo3", "qwen2", "qwen2_moe", "qwen3", "seed_oss", "smollm3", "solar_open", "stablelm", "vaultgemma",
    )},
    **{t: _FUSED_MLP for t in ("glm", "glm4", "minimax_m3_vl_text")},
    **{t: _UP_DOWN for t in ("apertus", "apertus1p5_text", "arcee", "jais2", "nemotron")},
    # MoE blocks whose MLP is routed experts only (fused tensors): the attention is what LoRA adapts.
    **{t: _ATTN for t in (
        "cohere2_moe", "flex_olmo", "gpt_oss", "granitemoe", "granitemoeshared", "mellum", "minimax_m2",
        "mixtral", "olmoe", "phimoe", "qwen3_moe",
    )},
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "starcoder2": _ATTN + ("c_fc", "c_proj"),
    "jetmoe": ("kv_proj",),  # its queries, outputs and MLP are mixtures of fused experts
}


def lora_targets(model_type: str) -> tuple[str, ...]:
    """The layers LoRA adapts in a family's blocks, from :data:`LORA_TARGETS`.

    Args:
        model_type: the family's ``config.model_type``, e.g. ``"glm"``.

    Returns:
        Module names, as peft's ``target_modules``.

    Raises:
        ValueError: the family has no entry (the message names it and says to pass ``targets=``).

    Example:
        >>> lora_targets("glm")
        ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_up_proj', 'down_proj')
    """
    if model_type not in LORA_TARGETS:
        raise ValueError(
            f"the kit names no LoRA target modules for the model family {model_type!r} (config.model_type); "
            "pass them yourself, e.g. LoraSpec(targets=('q_proj', 'v_proj')), naming linear layers of its "
            "decoder blocks, or add the family to flglm_kit.lora.LORA_TARGETS")
    return LORA_TARGETS[model_type]


def is_adapter(name: str) -> bool:
    """Whether parameter ``name`` is a peft LoRA tensor (``lora_A``, ``lora_B``, ...).

    Example:
        >>> is_adapter("layers.0.self_attn.q_proj.lora_B.default.weight"), is_adapter("norm.weight")
        (True, False)
    """
    return _ADAPTER_MARK in name


def _blocks(part: nn.Module) -> nn.Module:
    """The part's decoder blocks (``part.layers``), where LoRA goes."""
    layers = getattr(part, "layers", None)
    if not isinstance(layers, nn.Module):
        raise TypeError(f"{type(part).__name__} has no decoder blocks (.layers); LoRA goes on a split's parts")
    return layers


def _check_targets(parts: Mapping[str, nn.Module], targets: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless every target names linear layers and every part has one (nothing changed yet)."""
    found: set[str] = set()
    for part_name, part in parts.items():
        if any(is_adapter(n) for n, _ in part.named_parameters()):
            raise ValueError(f"the {part_name} already has LoRA adapters; apply a LoraSpec to a split once")
        blocks = _blocks(part)
        hits = [(n, m) for n, m in blocks.named_modules() if any(name_matches(n, t) for t in targets)]
        wrong = [f"{n} ({type(m).__name__})" for n, m in hits if not isinstance(m, nn.Linear)]
        if wrong:
            raise ValueError(f"LoRA targets {list(targets)} match modules that are not linear layers in the "
                             f"{part_name}'s blocks: {wrong[:3]}; name nn.Linear layers only")
        if not hits:
            raise ValueError(
                f"none of the LoRA targets {list(targets)} is a layer of the {part_name}'s blocks (blocks "
                f"{getattr(part, 'layer_indices', '?')}); leave it out of parts= or name its layers, e.g. "
                f"{_linear_names(blocks)[:6]}")
        found.update(t for t in targets if any(name_matches(n, t) for n, _ in hits))
    missing = [t for t in targets if t not in found]
    if missing:
        names = sorted({n for part in parts.values() for n in _linear_names(_blocks(part))})
        raise ValueError(f"LoRA targets {missing} match no layer in the blocks of the parts {list(parts)}; "
                         f"their linear layers are named {names}")


def _linear_names(part: nn.Module) -> list[str]:
    """The distinct last names of ``part``'s linear layers, in order (``q_proj``, ``k_proj``, ...)."""
    return list(dict.fromkeys(n.rsplit(".", 1)[-1] for n, m in part.named_modules() if isinstance(m, nn.Linear)))


@dataclass(frozen=True)
class LoraSpec:
    """LoRA on some parts of a split, through ``peft``; only the adapters train (every other weight frozen).

    Args:
        r: the adapters' rank, >= 1.
        alpha: the scale numerator, an integer >= 1 (as peft types it): an adapter adds ``(alpha / r) * B A x``.
        dropout: dropout on an adapter's input while training, in [0, 1).
        parts: which parts get adapters, among ``"head"``, ``"trunk"`` and ``"tail"``. The others
            are frozen whole (``("trunk",)``: the clients train nothing).
        targets: names of the linear layers to adapt (peft's ``target_modules``); ``None``: the
            family's entry of :data:`LORA_TARGETS`.
        seed: seed of the adapters' random ``A`` (the spec forks the RNG; global RNGs are untouched).
        modules_to_save: modules that train *whole* beside the adapters, as peft's option of that
            name (for a classifier head or new tokens), matched by name in any part: e.g.
            ``("embed_tokens",)``, the input block's token embeddings. A federation averages them
            with the adapters. On the shipped tiny GLM, clinic triage needs them: centralized, 200
            steps of 16 at lr 1e-3, seed 0, n = 200 test notes, LoRA (r = 8) alone scores 30.5 %
            (one label), with a LoRA adapter (r = 8) on the embeddings 55 %, with
            ``("embed_tokens",)`` 83.5 % [77.7, 88.0] (Wilson), full fine-tuning 82 %. The notes'
            words are rare in the public corpus, and adapters on the blocks cannot move their
            embeddings. The table is 4,096 x 192 numbers: every round then sends it too.

    Raises:
        ValueError: a rank or alpha below 1, a dropout outside [0, 1), an unknown or repeated part, or empty targets.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> from flglm_kit.split import split_model
        >>> split = split_model(tiny_model("glm"))
        >>> before = split(torch.arange(3, 9)[None]).logits
        >>> split = LoraSpec(r=4).apply(split)
        >>> trainable_summary(split)["trunk"]
        ParamCount(trainable=7680, total=81920)
        >>> torch.equal(split(torch.arange(3, 9)[None]).logits, before)  # B starts at zero
        True

    Introduced in notebook 06.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    parts: tuple[str, ...] = _PARTS
    targets: tuple[str, ...] | None = None
    seed: int = 0
    modules_to_save: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.r) is not int or self.r < 1:
            raise ValueError(f"r must be an integer >= 1 (the adapters' rank), not {self.r!r}")
        if type(self.alpha) is not int or self.alpha < 1:
            raise ValueError(f"alpha must be an integer >= 1 (adapters add alpha / r times B A x), not {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), not {self.dropout!r}")
        parts = tuple(self.parts)
        if not parts or len(set(parts)) != len(parts) or set(parts) - set(_PARTS):
            raise ValueError(f"parts must be distinct names among {_PARTS}, not {self.parts!r}")
        object.__setattr__(self, "parts", parts)
        if self.targets is not None:
            if isinstance(self.targets, str) or not self.targets or not all(isinstance(t, str) and t
                                                                           for t in self.targets):
                raise ValueError(f"targets must be a non-empty tuple of module names, not {self.targets!r}")
            object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "modules_to_save", module_names(self.modules_to_save))

    def targets_for(self, model_type: str) -> tuple[str, ...]:
        """The layers this spec adapts in a model of ``model_type``: ``targets``, or the family's default.

        Raises:
            ValueError: ``targets`` is ``None`` and the family has no entry in :data:`LORA_TARGETS`.
        """
        return self.targets if self.targets is not None else lora_targets(model_type)

    def peft_config(self, model_type: str) -> LoraConfig:
        """The ``peft.LoraConfig`` this spec injects into a model of ``model_type``.

        Inject the same config into a whole model (``peft.inject_adapter_in_model``) to compare
        it with a LoRA-applied split.

        Example:
            >>> LoraSpec(r=4).peft_config("llama").r
            4
        """
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.targets_for(model_type)), bias="none")

    def apply(self, split: SplitModel) -> SplitModel:
        """Inject LoRA adapters into the chosen parts of ``split`` and freeze everything else; returns ``split``.

        Apply it before building the parties (their optimizers take the parameters that train).
        Every target is checked before anything changes, so a refused spec leaves the split as it was.

        Args:
            split: from :func:`~flglm_kit.split.split_model`.

        Returns:
            ``split``, changed in place: its chosen parts hold peft LoRA layers, and only their
            ``lora_`` tensors have ``requires_grad``.

        Raises:
            ValueError: the family has no default targets (pass ``targets=``); a target matches no
                layer, or something other than a linear layer; a chosen part has no target layer
                (e.g. the input block of a ``head_layers=0`` split); or the split already has LoRA.
        """
        config = split.config
        model_type = str(getattr(config, "model_type", ""))
        targets = self.targets_for(model_type)
        chosen = {name: getattr(split, name) for name in self.parts}
        _check_targets(chosen, targets)
        saved = whole_module_parameters(split, self.modules_to_save)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for part in chosen.values():
                # Into the blocks, which carry no config: given a model with config.model_type, peft
                # renames some MoE families' v4 names (gate_proj, up_proj, ...) to their fused experts.
                inject_adapter_in_model(self.peft_config(model_type), _blocks(part))
        for name in _PARTS:
            for param_name, p in getattr(split, name).named_parameters():
                p.requires_grad_(is_adapter(param_name))
        for p in saved:
            p.requires_grad_(True)
        return split


def adapter_state(part: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of ``part``'s LoRA tensors, named as in its ``state_dict`` (what a federation averages).

    Args:
        part: an input block, trunk or output block (or any module with peft LoRA layers).

    Returns:
        ``{name: tensor}`` for every ``lora_`` parameter, detached copies; empty without LoRA.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> from flglm_kit.split import split_model
        >>> split = LoraSpec(r=2, targets=("q_proj",)).apply(split_model(tiny_model("glm")))
        >>> for name, tensor in adapter_state(split.head).items():
        ...     print(name, tuple(tensor.shape))
        layers.0.self_attn.q_proj.lora_A.default.weight (2, 64)
        layers.0.self_attn.q_proj.lora_B.default.weight (64, 2)
    """
    return {name: p.detach().clone() for name, p in part.named_parameters() if is_adapter(name)}


def load_adapter_state(part: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` (as :func:`adapter_state` returns it) into ``part``'s LoRA tensors, in place.

    Everything is checked first: on an error, nothing has changed.

    Args:
        part: the module to load into.
        state: one tensor per LoRA parameter of ``part``, by name; values are cast to the
            parameter's dtype and device.

    Raises:
        ValueError: a LoRA parameter of ``part`` is missing from ``state``, ``state`` names one
            ``part`` does not have (or a tensor that is not a LoRA tensor), a shape differs, or a
            value is not a floating-point tensor.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> from flglm_kit.split import split_model
        >>> split = LoraSpec(r=2, targets=("q_proj",)).apply(split_model(tiny_model("glm")))
        >>> state = {k: torch.ones_like(v) for k, v in adapter_state(split.tail).items()}
        >>> load_adapter_state(split.tail, state)
        >>> float(split.tail.layers["3"].self_attn.q_proj.lora_B["default"].weight.detach().sum())
        128.0
        >>> load_adapter_state(split.tail, {})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: the adapter state lacks 2 LoRA tensor(s) of this part, e.g. [...]
    """
    params = {name: p for name, p in part.named_parameters() if is_adapter(name)}
    missing = [n for n in params if n not in state]
    if missing:
        raise ValueError(f"the adapter state lacks {len(missing)} LoRA tensor(s) of this part, e.g. {missing[:3]}")
    extra = [n for n in state if n not in params]
    if extra:
        raise ValueError(f"the adapter state has {len(extra)} tensor(s) that are not LoRA tensors of this part, "
                         f"e.g. {extra[:3]}; was it taken from another part, rank or target list?")
    for name, p in params.items():
        value = state[name]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"adapter tensor {name} must be a floating-point tensor, not {_describe(value)}")
        if value.shape != p.shape:
            raise ValueError(f"adapter tensor {name} has shape {tuple(value.shape)}, but this part's has "
                             f"{tuple(p.shape)} (a different rank or model?)")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])


def _describe(value: Any) -> str:
    return f"{value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__


class ParamCount(NamedTuple):
    """Trainable and total parameters of one part (tied weights once)."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        """Trainable share of the part's parameters, in percent (0 for an empty part)."""
        return 100.0 * self.trainable / self.total if self.total else 0.0


def trainable_summary(split: SplitModel) -> dict[str, ParamCount]:
    """Trainable vs total parameters of each part: ``{"head": ..., "trunk": ..., "tail": ...}``.

    Args:
        split: a split, with or without LoRA.

    Returns:
        A :class:`ParamCount` per part; each distinct parameter is counted once per part.

    Example:
        >>> from flglm_kit.models import tiny_model
        >>> from flglm_kit.split import split_model
        >>> split = LoraSpec(r=2, parts=("trunk",)).apply(split_model(tiny_model("glm")))
        >>> {k: v.trainable for k, v in trainable_summary(split).items()}
        {'head': 0, 'trunk': 3840, 'tail': 0}
    """
    out = {}
    for name in _PARTS:
        params = {id(p): p for p in getattr(split, name).parameters()}.values()
        out[name] = ParamCount(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    return out
