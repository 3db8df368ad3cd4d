"""The probe both learned attacks train: one head network and one training loop.

A *probe* reads one position's features (an activation vector, or a gradient) and scores every
token of the vocabulary. :class:`~flglm_kit.attacks.LearnedInverter` (activations -> token) and
:class:`~flglm_kit.attacks.GradientLabelInverter` (dL/dh_B -> next token) are both a
:class:`ProbeHead`, fitted by :func:`train_probe` on pairs the attacker makes itself from public
text; they differ only in the features they read and where the unembedding starts.

Randomness is local: the initialisation comes from a generator seeded with ``seed`` and the
training loop draws minibatches and noise from its own generators, so training a probe neither
reseeds nor advances PyTorch's global random generator (a notebook's later cells draw the same
numbers whether or not a probe was trained before them).

Introduced in notebook 03.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from flglm_kit.attacks._common import generator

__all__ = ["ProbeHead", "train_probe"]

Probe = TypeVar("Probe", bound=nn.Module)


class ProbeHead(nn.Module):
    """A per-position probe from F features to V vocabulary logits.

    ``[Linear F -> H] -> LayerNorm -> x + MLP(x) -> LayerNorm -> unembedding``; the input
    projection exists only when ``in_features`` is given. The unembedding starts from a public
    (V, H) table (row-normalised) when one is given, so tokens that are rare or absent in the
    attacker's auxiliary text are still reachable; everything is then trained.

    Notebook 03 meets it as :class:`~flglm_kit.attacks.LearnedInverter` and
    :class:`~flglm_kit.attacks.GradientLabelInverter`; train it with :func:`train_probe`.

    Args:
        hidden_size: H, the width of the probe's residual stream (the model's hidden size).
        vocab_size: V.
        in_features: F, when it differs from H (adds the input projection); default: read H.
        width: the MLP's hidden width.
        unembed_weight: (V, H) public table (embedding or LM head) to start the unembedding from.
        seed: seeds the initialisation (a local generator: the global one is left alone).

    Example:
        >>> probe = ProbeHead(8, 50, width=16, seed=0)
        >>> probe(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 50])
        >>> ProbeHead(8, 50, width=16, seed=0).unembed.weight.equal(probe.unembed.weight)
        True
    """

    def __init__(self, hidden_size: int, vocab_size: int, *, in_features: int | None = None, width: int = 512,
                 unembed_weight: torch.Tensor | None = None, seed: int = 0) -> None:
        super().__init__()
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        # nn.Linear draws its default initialisation from the global generator: build under a fork
        # (state restored on exit), then draw the real initialisation from a local generator.
        with torch.random.fork_rng(devices=[]):
            self.inp: nn.Module = nn.Identity() if in_features is None else nn.Linear(in_features, hidden_size)
            self.norm = nn.LayerNorm(hidden_size)
            self.mlp = nn.Sequential(nn.Linear(hidden_size, width), nn.GELU(), nn.Linear(width, hidden_size))
            self.out_norm = nn.LayerNorm(hidden_size)
            self.unembed = nn.Linear(hidden_size, vocab_size)
        self.reset_parameters(torch.Generator().manual_seed(seed), unembed_weight=unembed_weight)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator, *, unembed_weight: torch.Tensor | None = None) -> None:
        """PyTorch's default initialisation, drawn from ``generator``; then the unembedding from the table."""
        for layer in self.modules():
            if isinstance(layer, nn.Linear):  # in registration order: inp, mlp, unembed
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            elif isinstance(layer, nn.LayerNorm):
                layer.reset_parameters()
        if unembed_weight is not None:
            # Scaled unit rows: logits start as 4 x cosine similarity to each token's public row.
            self.unembed.weight.copy_(F.normalize(unembed_weight.detach().float(), dim=-1) * 4.0)
            self.unembed.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., F) features -> (..., V) logits."""
        x = self.norm(self.inp(features.float()))  # (..., H)
        x = x + self.mlp(x)
        return self.unembed(self.out_norm(x))  # (..., V)


def train_probe(probe: Probe, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor, *, steps: int = 300,
                lr: float = 3e-3, batch_size: int = 512, seed: int = 0, noise_std: torch.Tensor | None = None,
                progress: bool = False, desc: str = "probe") -> Probe:
    """Fit ``probe`` by cross-entropy on random minibatches of (inputs, target) rows.

    AdamW (no weight decay) under a one-cycle learning-rate schedule; each step draws
    ``batch_size`` rows with replacement. The attack functions call this with pairs they made from
    public text (:func:`~flglm_kit.attacks.train_inverter`,
    :func:`~flglm_kit.attacks.train_gradient_inverter`); the threat model is theirs.

    Args:
        probe: called as ``probe(*rows)`` on each minibatch's rows of ``inputs``; returns (b, V) logits.
        inputs: tensors with N rows each, on the probe's device (e.g. (N, H) activations).
        targets: (N,) token ids the probe should predict.
        steps: optimizer steps.
        lr: the schedule's peak learning rate.
        batch_size: rows per step (at most N).
        seed: seeds the minibatch draws and the noise (local generators).
        noise_std: (N,) standard deviation of Gaussian noise added to ``inputs[0]``, row by row and
            fresh at every step (the attacker who knows the noise defence); default: none.
        progress: show a progress bar.
        desc: the progress bar's label.

    Returns:
        ``probe``, trained in place, in eval mode.

    Raises:
        ValueError: for no rows, or rows that do not line up.

    Notebook 03 runs it inside :func:`~flglm_kit.attacks.train_inverter` and
    :func:`~flglm_kit.attacks.train_gradient_inverter`.

    Example:
        >>> x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        >>> y = (x[:, 0] > 0).long()  # a token that the first feature gives away
        >>> probe = train_probe(ProbeHead(8, 2, width=16), (x,), y, steps=100, lr=1e-2, batch_size=32)
        >>> float((probe(x).argmax(-1) == y).float().mean()) > 0.9
        True
    """
    from tqdm.auto import tqdm

    count = len(targets)
    if count == 0 or any(len(t) != count for t in inputs) or (noise_std is not None and len(noise_std) != count):
        raise ValueError(f"need the same number (> 0) of rows in every input and the {count} targets")
    picks = generator(seed)  # CPU: indices are drawn on the CPU whatever the device
    noise = generator(seed, inputs[0].device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    probe.train()
    for _ in tqdm(range(steps), disable=not progress, desc=desc):
        pick = torch.randint(count, (min(batch_size, count),), generator=picks).to(targets.device)  # (b,)
        rows = [t[pick] for t in inputs]  # (b, ...) each
        if noise_std is not None:
            rows[0] = rows[0] + noise_std[pick, None] * torch.randn(rows[0].shape, generator=noise,
                                                                     device=rows[0].device)
        loss = F.cross_entropy(probe(*rows), targets[pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return probe.eval()
