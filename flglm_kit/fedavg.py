"""FedAvg of the client blocks: which tensors are averaged, how they travel, and the weighted mean.

Every client holds its own copy of the input and output blocks. Every few local steps the
copies are averaged, each weighted by how many samples its client trained on since the last
average (McMahan et al. 2017), and every client continues from the average. With a
parameter-efficient method only what is trained is averaged: the LoRA adapters or the prefixes.

What travels is one flat float32 vector per client in a fixed order (:class:`BlockLayout`),
so a message holds one tensor however many the blocks have. Both sides check the layout's
digest: clients built from another model, split or adapter configuration are refused, not
averaged into nonsense.

Introduced in notebook 06.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BlockLayout", "averaged_tensors", "weighted_average", "pack_update", "unpack_update"]

_SAMPLES = struct.Struct("<Q")


@dataclass(frozen=True)
class BlockLayout:
    """The names and shapes of the averaged tensors, in the order they are flattened.

    Example:
        >>> layout = BlockLayout.of({"head": nn.Linear(2, 3)})
        >>> layout.names, layout.numel
        (('head.weight', 'head.bias'), 9)
        >>> vec = layout.flatten({"head": nn.Linear(2, 3)})
        >>> vec.shape
        torch.Size([9])
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, parts: Mapping[str, nn.Module | None]) -> BlockLayout:
        """The trainable tensors of ``parts`` (``{"head": ..., "tail": ...}``), each once, in order."""
        names, shapes = [], []
        for part, name, p in _trainable(parts):
            names.append(f"{part}.{name}")
            shapes.append(tuple(p.shape))
        if not names:
            raise ValueError("the client blocks have no trainable tensor, so there is nothing to average")
        return cls(tuple(names), tuple(shapes))

    @property
    def numel(self) -> int:
        """How many numbers one update holds."""
        return sum(_prod(s) for s in self.shapes)

    @property
    def digest(self) -> str:
        """16 hex characters naming this layout; equal on two clients iff their layouts are equal."""
        text = json.dumps([self.names, self.shapes], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def flatten(self, parts: Mapping[str, nn.Module | None]) -> torch.Tensor:
        """The trainable tensors of ``parts`` as one (numel,) float32 CPU vector."""
        found = _trainable(parts)
        tensors = [p.detach().reshape(-1).float().cpu() for _, _, p in found]
        if list(self.names) != [f"{part}.{name}" for part, name, _ in found]:
            raise ValueError("these blocks do not have this layout's tensors; build every client from the same "
                             "split and parameter-efficient method")
        return torch.cat(tensors)

    @torch.no_grad()
    def load(self, parts: Mapping[str, nn.Module | None], vector: torch.Tensor) -> None:
        """Copy ``vector`` (from :meth:`flatten` or :func:`weighted_average`) into the trainable tensors."""
        if vector.shape != (self.numel,):
            raise ValueError(f"an update for this layout has {self.numel} numbers; got shape {tuple(vector.shape)}")
        offset = 0
        for _, _, p in _trainable(parts):
            n = p.numel()
            p.copy_(vector[offset:offset + n].view(p.shape).to(p.dtype))
            offset += n


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _trainable(parts: Mapping[str, nn.Module | None]) -> list[tuple[str, str, nn.Parameter]]:
    """(part, name, parameter) of every trainable parameter, each once (tied weights under their first name)."""
    seen: set[int] = set()
    out = []
    for part, module in parts.items():
        if module is None:
            continue
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append((part, name, p))
    return out


def averaged_tensors(parts: Mapping[str, nn.Module | None]) -> dict[str, torch.Tensor]:
    """The tensors FedAvg averages, by their layout names (a view for inspection and attacks)."""
    return {f"{part}.{name}": p.detach() for part, name, p in _trainable(parts)}


def weighted_average(vectors: Sequence[torch.Tensor], weights: Sequence[int]) -> torch.Tensor:
    """Σ wᵢ·vᵢ / Σ wᵢ, summed in the given order (callers sort by client id, so every client gets the same bits).

    Example:
        >>> weighted_average([torch.tensor([0.0, 2.0]), torch.tensor([4.0, 2.0])], [3, 1]).tolist()
        [1.0, 2.0]
    """
    if not vectors or len(vectors) != len(weights):
        raise ValueError(f"need one weight per vector and at least one vector; got {len(vectors)} and {len(weights)}")
    if any(int(w) <= 0 for w in weights):
        raise ValueError(f"weights are sample counts and must be positive; got {list(weights)}")
    total = float(sum(int(w) for w in weights))
    out = torch.zeros_like(vectors[0], dtype=torch.float64)
    for vec, w in zip(vectors, weights):
        out += vec.double() * (int(w) / total)
    return out.float()


def pack_update(vector: torch.Tensor, samples: int) -> bytes:
    """The bytes a client seals under the group key: its sample count, then the float32 vector."""
    return _SAMPLES.pack(samples) + vector.float().contiguous().numpy().tobytes()


def unpack_update(data: bytes, layout: BlockLayout) -> tuple[torch.Tensor, int]:
    """Inverse of :func:`pack_update`; ``ValueError`` if the size does not fit ``layout``."""
    if len(data) != _SAMPLES.size + 4 * layout.numel:
        expected = _SAMPLES.size + 4 * layout.numel
        raise ValueError(f"a sealed update for this layout has {expected} bytes; got {len(data)}")
    (samples,) = _SAMPLES.unpack_from(data)
    vector = torch.frombuffer(bytearray(data[_SAMPLES.size:]), dtype=torch.float32)
    return vector, int(samples)
