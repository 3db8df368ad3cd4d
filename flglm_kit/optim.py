"""Optimizers for the parties: one default, one factory type, unique and trainable parameters, train mode.

Both parties build their optimizer the same way, from a factory that takes the parameters they
own; nothing here knows about clients or servers. With parameter-efficient fine-tuning (LoRA,
prefixes: notebook 06) most parameters are frozen; :func:`trainable_parameters` and
:func:`only_trainable` keep them out of an optimizer.

Introduced in notebook 01; the trainable helpers in notebook 06.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["OptimizerFactory", "default_optimizer", "unique_parameters", "trainable_parameters", "only_trainable",
           "set_training"]

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


def trainable_parameters(*modules: nn.Module | None) -> list[nn.Parameter]:
    """The parameters of ``modules`` that require gradients, in order, each once (frozen ones left out).

    Args:
        *modules: modules, or ``None`` (skipped), as for :func:`unique_parameters`.

    Returns:
        :func:`unique_parameters` without the parameters whose ``requires_grad`` is ``False``;
        empty when everything is frozen.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> _ = layer.bias.requires_grad_(False)
        >>> [tuple(p.shape) for p in trainable_parameters(layer, layer, None)]
        [(2, 2)]

    Not called directly in a notebook (the parties use it).
    """
    return [p for p in unique_parameters(*modules) if p.requires_grad]


def only_trainable(factory: OptimizerFactory = default_optimizer) -> OptimizerFactory:
    """Wrap an optimizer factory so that it is handed only the parameters that require gradients.

    Pass the result where a party takes ``optimizer=``: frozen weights (everything but LoRA
    adapters or prefixes) then have no place in the optimizer or its checkpoints.

    Args:
        factory: the optimizer factory to wrap (default: :func:`default_optimizer`).

    Returns:
        A factory that filters its parameters, then calls ``factory``.

    Raises:
        ValueError: (when the returned factory is called) every parameter is frozen; the message
            says so, instead of the optimizer's "empty parameter list".

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> _ = layer.weight.requires_grad_(False)
        >>> opt = only_trainable(lambda ps: torch.optim.SGD(ps, lr=0.1))(layer.parameters())
        >>> [tuple(p.shape) for p in opt.param_groups[0]["params"]]
        [(2,)]

    Not called directly in a notebook yet.
    """

    def make(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        trainable = [p for p in params if p.requires_grad]
        if not trainable:
            raise ValueError("every parameter handed to the optimizer is frozen (requires_grad=False), so there "
                             "is nothing to train; apply LoRA or a prefix to this party's parts, or unfreeze them")
        return factory(trainable)

    return make


def set_training(training: bool, *modules: nn.Module | None) -> None:
    """Train or evaluation mode (dropout on or off) for ``modules``; a module already in it is left alone.

    ``Module.train`` walks every submodule, and the parties call this once per request: at one
    generated token per request that walk cost about 6 % of split generation on the tiny GLM.

    Example:
        >>> layer = nn.Dropout(0.1)
        >>> set_training(False, layer, None)
        >>> layer.training
        False
    """
    for module in modules:
        if module is not None and module.training != training:
            module.train(training)
