"""Save and load a party's state as safetensors and JSON: weights, optimizer moments, counters. No pickle.

A party's checkpoint is a folder it alone writes and reads: the server never sees a client's,
and a client never sees the server's. Optimizer state is split into its tensors (safetensors)
and its plain values (JSON), so loading a checkpoint cannot run code, unlike ``torch.load`` of
a pickle.

Introduced in notebook 06.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_state", "load_state", "optimizer_state", "load_optimizer_state", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, or from another run; the text says which."""


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as (tensors, JSON-able values).

    Example:
        >>> p = torch.nn.Parameter(torch.ones(2))
        >>> opt = torch.optim.AdamW([p], lr=0.1)
        >>> p.sum().backward(); opt.step()
        >>> tensors, plain = optimizer_state(opt)
        >>> sorted(tensors), plain["param_groups"][0]["lr"]
        (['state.0.exp_avg', 'state.0.exp_avg_sq', 'state.0.step'], 0.1)
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                         plain: Mapping[str, Any]) -> None:
    """Inverse of :func:`optimizer_state`; ``CheckpointError`` if the parameter groups differ."""
    groups = [dict(g) for g in plain["param_groups"]]
    current = optimizer.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in current]:
        raise CheckpointError("the optimizer in the checkpoint has other parameter groups than this one: "
                              "resume with the same model, split and parameter-efficient method")
    for g, now in zip(groups, current):
        if isinstance(now.get("betas"), tuple):
            g["betas"] = tuple(g["betas"])
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, values in plain.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_state(folder: str | Path, *, weights: Mapping[str, torch.Tensor],
               optimizer: torch.optim.Optimizer | None = None, info: Mapping[str, Any] | None = None) -> Path:
    """Write ``weights.safetensors``, ``optimizer.safetensors`` + ``optimizer.json`` and ``state.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(folder / "weights.safetensors"))
    if optimizer is not None:
        tensors, plain = optimizer_state(optimizer)
        save_file({k: v.cpu() for k, v in tensors.items()}, str(folder / "optimizer.safetensors"))
        (folder / "optimizer.json").write_text(json.dumps(plain, indent=1))
    (folder / "state.json").write_text(json.dumps(dict(info or {}), indent=1, sort_keys=True))
    return folder


def load_state(folder: str | Path, *, optimizer: torch.optim.Optimizer | None = None,
               device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_state` wrote: returns (weights, info) and loads the optimizer's state in place.

    Raises:
        CheckpointError: the folder or one of its files is missing (the text names it).
    """
    folder = Path(folder)
    names = ["weights.safetensors", "state.json"] + (["optimizer.safetensors", "optimizer.json"] if optimizer else [])
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint folder {folder} lacks {', '.join(missing)}; "
                              "pass the folder that Federation.save() (or save_state) wrote")
    weights = load_file(str(folder / "weights.safetensors"), device=str(device))
    info = json.loads((folder / "state.json").read_text())
    if optimizer is not None:
        plain = json.loads((folder / "optimizer.json").read_text())
        load_optimizer_state(optimizer, load_file(str(folder / "optimizer.safetensors"), device=str(device)), plain)
    return weights, info
