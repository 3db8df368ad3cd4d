"""Optimizers for the parties: one default, one factory type, and unique parameters.

Both parties build their optimizer the same way, from a factory that takes the parameters they
own; nothing here knows about clients or servers.

Introduced in notebook 01.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["OptimizerFactory", "default_optimizer", "unique_parameters"]

#: Makes an optimizer from the parameters a party owns, e.g. ``lambda p: torch.optim.SGD(p, lr=0.1)``.
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW with lr 1e-3: the kit's default for both parties."""
    return torch.optim.AdamW(params, lr=1e-3)


def unique_parameters(*modules: nn.Module | None) -> list[nn.Parameter]:
    """The parameters of ``modules`` in order, each once (tied weights appear once).

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> len(unique_parameters(layer, layer, None))
        2
    """
    seen: dict[int, nn.Parameter] = {}
    for module in modules:
        if module is not None:
            for p in module.parameters():
                seen.setdefault(id(p), p)
    return list(seen.values())
