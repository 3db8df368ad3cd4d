"""Gaussian noise on the activations a client sends: FedSEA-LLaMA's defence, as a pure function.

A party-level defence (``SplitClient(noise_rel=...)`` calls it), so it lives beside the parties
and not among the attacks: the client never imports an attack. The client adds
``N(0, sigma^2)`` to its hidden states before they leave. What matters is sigma *relative to
the activations' size* (BiSR, CCS 2024; FedSEA-LLaMA), so sigma is given as ``sigma_rel``
times the root mean square of the tensor being sent. This is not differential privacy: there
is no clipping and no accounting, and an attacker who trains on equally noised activations
(``train_inverter(noise_rel=...)``) is much stronger than one who does not, and
closest-candidate matching with the public input block
(``whitebox_token_matching(..., max_candidates=16)``) is stronger still: at sigma_rel = 1 it
recovers most tokens (notebook 03). Report its utility cost next to the recovery it prevents.

Introduced in notebook 03.
"""

from __future__ import annotations

import math

import torch

__all__ = ["noise_activations"]


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().pow(2).mean().sqrt()


def noise_activations(activations: torch.Tensor, sigma_rel: float, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Gaussian noise with sigma = ``sigma_rel`` x RMS(``activations``).

    Args:
        activations: (B, T, H) or any shape: what the client is about to send.
        sigma_rel: noise standard deviation relative to the RMS of ``activations`` (0: no noise).
        generator: a ``torch.Generator`` on the activations' device, for reproducible noise.

    Returns:
        A new tensor (the input is untouched), same shape, dtype and device.

    Raises:
        ValueError: for a negative ``sigma_rel``.

    Notebook 03 uses it through ``SplitClient(noise_rel=...)``; no notebook calls it directly.

    Example:
        >>> acts = torch.randn(4, 64, 32, generator=torch.Generator().manual_seed(0))
        >>> noisy = noise_activations(acts, 0.5, generator=torch.Generator().manual_seed(1))
        >>> round(float((noisy - acts).pow(2).mean().sqrt() / acts.pow(2).mean().sqrt()), 2)
        0.5
    """
    if not math.isfinite(sigma_rel) or sigma_rel < 0:
        raise ValueError(f"sigma_rel must be a finite number >= 0, not {sigma_rel}")
    if sigma_rel == 0:
        return activations.clone()
    sigma = sigma_rel * _rms(activations)
    noise = torch.randn(activations.shape, generator=generator, device=activations.device,
                        dtype=torch.float32)
    return (activations.float() + sigma * noise).to(activations.dtype)
