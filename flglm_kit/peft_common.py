"""What LoRA and P-tuning v2 share: naming the modules a spec trains whole beside its adapters or prefixes.

Both :class:`flglm_kit.lora.LoraSpec` and :class:`flglm_kit.prefix.PrefixSpec` take
``modules_to_save`` (peft's name for it): modules trained whole, such as the token embeddings,
found in the split's parts by peft's own name rule.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from flglm_kit.split import SplitModel

__all__ = ["name_matches", "module_names", "whole_module_parameters"]


def name_matches(name: str, target: str) -> bool:
    """peft's rule for a string in ``target_modules``: the whole name or its last dotted components.

    Example:
        >>> name_matches("layers.0.self_attn.q_proj", "q_proj"), name_matches("embed_tokens", "tokens")
        (True, False)
    """
    return name == target or name.endswith("." + target)


def module_names(value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of module names (a spec's ``modules_to_save``); ``ValueError`` for anything else."""
    if isinstance(value, str) or not all(isinstance(m, str) and m for m in value):
        raise ValueError(f"modules_to_save must be a tuple of module names, e.g. ('embed_tokens',), not {value!r}")
    return tuple(value)


def whole_module_parameters(split: SplitModel, names: tuple[str, ...]) -> list[nn.Parameter]:
    """The parameters of the modules ``names`` match (:func:`name_matches`) in any part of ``split``.

    What a parameter-efficient spec's ``modules_to_save`` trains whole beside its adapters or prefixes.

    Raises:
        ValueError: a name matches no module of the split (the message lists its leaf modules).
    """
    modules = [(n, m) for part in (split.head, split.trunk, split.tail) for n, m in part.named_modules() if n]
    out: list[nn.Parameter] = []
    for target in names:
        hits = [m for n, m in modules if name_matches(n, target)]
        if not hits:
            leaves = sorted({n.rsplit(".", 1)[-1] for n, m in modules if not list(m.children())})
            raise ValueError(f"modules_to_save names {target!r}, which is no module of the split; its leaf "
                             f"modules are named {leaves[:12]}")
        out += [p for m in hits for p in m.parameters()]
    return out
