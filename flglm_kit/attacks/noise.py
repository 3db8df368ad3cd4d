"""The activation-noise defence, seen from the attacker's side: it lives in :mod:`flglm_kit.noise`.

Kept here so that ``from flglm_kit.attacks import noise_activations`` still works; the client
imports :mod:`flglm_kit.noise` and never this package.
"""

from flglm_kit.noise import noise_activations

__all__ = ["noise_activations"]
