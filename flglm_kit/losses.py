"""The kit's one definition of the next-token loss, and of the label value that carries no loss.

Every place that scores a causal LM (the client's output block, perplexity, the pretraining
script, fine-tuning) calls :func:`next_token_loss`, so that "the loss" means one thing
everywhere. It is the loss Hugging Face causal LMs compute (``ForCausalLMLoss``): the logits at
position ``t`` predict the label at ``t + 1``; labels equal to :data:`IGNORE_INDEX` carry no
loss; the mean is taken over the supervised tokens (token-weighted).

Introduced in notebook 01.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "next_token_loss", "supervised_tokens"]

#: Label value that carries no loss (padding, prompts): the Hugging Face and PyTorch convention.
IGNORE_INDEX = -100


def supervised_tokens(labels: torch.Tensor) -> int:
    """How many positions of ``labels`` (B, T) carry a next-token loss (the first never does).

    Example:
        >>> supervised_tokens(torch.tensor([[5, 6, -100], [7, -100, -100]]))
        1
    """
    return int((labels[..., 1:] != IGNORE_INDEX).sum())


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of each position's logits against the next position's label.

    Args:
        logits: (B, T, V) scores.
        labels: (B, T) token ids, :data:`IGNORE_INDEX` where no loss is taken. Not shifted: the
            shift happens here, as in Hugging Face models.
        reduction: ``"mean"`` over supervised tokens (NaN when there are none: check with
            :func:`supervised_tokens` first), ``"sum"``, or ``"none"`` for a (B, T) tensor whose
            last column and ignored positions are 0.

    Returns:
        The loss, computed in float32 whatever the logits' dtype.

    Raises:
        ValueError: shapes that do not line up, or an unknown reduction.

    Example:
        >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
        >>> round(float(next_token_loss(logits, torch.tensor([[0, 1, 2]]))), 4)  # ln 4
        1.3863
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and labels (B, T); got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    batch, seq_len, vocab = logits.shape
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:].to(logits.device)  # (B, T): next label
    loss = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction=reduction)
    return loss.reshape(batch, seq_len) if reduction == "none" else loss
