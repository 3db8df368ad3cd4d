"""Devices, seeds and quick mode: the three switches every notebook's setup cell flips.

Introduced in notebook 00.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["available_devices", "get_device", "set_seed", "quick_mode", "QUICK_ENV"]

#: Environment variable that shrinks every notebook and demo (set by CI and the test suite).
QUICK_ENV = "FLGLM_QUICK"


def available_devices() -> list[str]:
    """The device types this machine has, fastest first (what the dashboard's device control offers)."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")  # the one place a device is named (with get_device)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return [*out, "cpu"]


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the fastest available device: CUDA, then Apple MPS, then CPU.

    Args:
        prefer: force a device by name (for example ``"cpu"``); ``None`` picks automatically.
            The environment variable ``FLGLM_DEVICE`` overrides the automatic choice too.

    Returns:
        The chosen ``torch.device``.

    Example:
        >>> get_device("cpu")
        device(type='cpu')
    """
    name = prefer or os.environ.get("FLGLM_DEVICE")
    if name:
        return torch.device(name)
    return torch.device(available_devices()[0])


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a ``torch.Generator`` seeded the same way.

    Example:
        >>> g = set_seed(0); a = torch.rand(2, generator=g)
        >>> g = set_seed(0); bool((a == torch.rand(2, generator=g)).all())
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def quick_mode(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``FLGLM_QUICK`` is set to a true value (``1``, ``true``, ``yes``, ``on``).

    Args:
        environ: the environment to read; ``None`` reads ``os.environ``.

    Example:
        >>> quick_mode({"FLGLM_QUICK": "1"}), quick_mode({})
        (True, False)
    """
    env = os.environ if environ is None else environ
    return env.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
