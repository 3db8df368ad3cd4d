"""Inverting the activations a client sends back into its tokens.

Two attackers who hold only PUBLIC knowledge (the pretrained model that every party started
from), working on the ``activations`` tensor of the messages the server decrypts
(``SplitServer.add_tap``; :func:`flglm_kit.attacks.activations_of` pulls them out):

* :func:`nearest_neighbour_inversion`: each activation vector -> the closest row of the
  embedding table. Exact on raw embeddings (``head_layers=0``); falls fast with depth.
* :class:`LearnedInverter` / :func:`train_inverter`: a per-position probe trained on public
  text pushed through the pretrained input block (SIP, the forward part of BiSR). Falls much
  more slowly with depth, and, trained on equally noised activations, shrugs off much of the
  noise defence (:func:`flglm_kit.attacks.noise_activations`).

Introduced in notebook 02 (nearest neighbour) and 03 (learned inverter).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from flglm_kit.attacks._common import TokenBatch, as_id_batches, rms, weight_of
from flglm_kit.attacks.probe import ProbeHead, train_probe
from flglm_kit.split import InputBlock, Spans

__all__ = ["nearest_neighbour_inversion", "LearnedInverter", "train_inverter"]


@torch.no_grad()
def nearest_neighbour_inversion(activations: torch.Tensor, embedding_weight: torch.Tensor, *,
                                metric: str = "cosine", chunk: int = 1024) -> torch.Tensor:
    """Map each activation vector to the id of the nearest embedding-table row.

    THREAT MODEL: the honest-but-curious server (or anyone who reads the activations).
    ATTACKER'S KNOWLEDGE: the embedding table (public: the pretrained checkpoint's), nothing of
    the client's fine-tuned weights, no training.

    Args:
        activations: (..., H) what the client sent, e.g. (B, T, H).
        embedding_weight: (V, H) the public embedding table.
        metric: ``"cosine"`` (angle only) or ``"l2"`` (Euclidean distance).
        chunk: activation vectors scored at once (memory: ``chunk x V`` floats).

    Returns:
        (...) long ids, the shape of ``activations`` without its last axis.

    Raises:
        ValueError: for an unknown metric or mismatched hidden sizes.

    Introduced in notebook 02.

    Example:
        >>> table = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
        >>> ids = torch.tensor([[3, 14, 15, 9]])
        >>> nearest_neighbour_inversion(table[ids], table).tolist()
        [[3, 14, 15, 9]]
    """
    if metric not in ("cosine", "l2"):
        raise ValueError(f"metric must be 'cosine' or 'l2', not {metric!r}")
    if activations.shape[-1] != embedding_weight.shape[-1]:
        raise ValueError(f"activations have hidden size {activations.shape[-1]}, the embedding table "
                         f"{embedding_weight.shape[-1]}")
    flat = activations.detach().reshape(-1, activations.shape[-1]).float()  # (N, H)
    table = embedding_weight.detach().to(flat.device).float()  # (V, H)
    if metric == "cosine":
        flat, table = F.normalize(flat, dim=-1), F.normalize(table, dim=-1)
        offset = torch.zeros(table.shape[0], device=flat.device)
    else:  # argmin |a - e|^2 = argmax 2 a.e - |e|^2
        flat, offset = 2 * flat, -table.pow(2).sum(dim=-1)  # (V,)
    ids = [(rows @ table.T + offset).argmax(dim=-1) for rows in flat.split(chunk)]  # (chunk, V) each
    return torch.cat(ids).reshape(activations.shape[:-1])


class LearnedInverter(ProbeHead):
    """A per-position probe from one activation vector (H) to vocabulary logits (V).

    A :class:`~flglm_kit.attacks.ProbeHead` that reads the activations as they are:
    ``LayerNorm -> x + MLP(x) -> LayerNorm -> unembedding``. The unembedding starts from the
    public embedding table (row-normalised) when one is given, so tokens that are rare or absent
    in the attacker's auxiliary text are still reachable; everything is then trained.
    Notebook 03 gets one from :func:`train_inverter`.

    Args:
        hidden_size: H of the activations.
        vocab_size: V.
        width: the MLP's hidden width.
        embedding_weight: (V, H) public embedding table to start the unembedding from.
        seed: seeds the initialisation (a local generator: the global one is left alone).
    """

    def __init__(self, hidden_size: int, vocab_size: int, *, width: int = 512,
                 embedding_weight: torch.Tensor | None = None, seed: int = 0) -> None:
        super().__init__(hidden_size, vocab_size, width=width, unembed_weight=embedding_weight, seed=seed)

    @torch.no_grad()
    def invert(self, activations: torch.Tensor, *, chunk: int = 4096) -> torch.Tensor:
        """(..., H) activations -> (...) most likely token ids."""
        device = self.unembed.weight.device
        flat = activations.detach().reshape(-1, activations.shape[-1])  # (N, H)
        ids = [self(rows.to(device)).argmax(dim=-1).cpu() for rows in flat.split(chunk)]
        return torch.cat(ids).reshape(activations.shape[:-1])


@torch.no_grad()
def _pairs(input_block: InputBlock, batches: list[tuple[torch.Tensor, torch.Tensor]],
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Public text through the input block: (N, H) activations, (N,) tokens, (N,) their batch's RMS."""
    acts, tokens, scale = [], [], []
    for ids, mask in batches:
        ids, mask = ids.to(device), mask.to(device)
        out = input_block(ids, Spans.from_attention_mask(mask))  # (B, T, H)
        real = mask.bool()
        acts.append(out[real].float())
        tokens.append(ids[real])
        scale.append(rms(out).expand(int(real.sum())))  # the client scales noise by the RMS of what it sends
    return torch.cat(acts), torch.cat(tokens), torch.cat(scale)


def train_inverter(input_block: InputBlock, token_batches: Iterable[TokenBatch], *, steps: int = 300,
                   lr: float = 3e-3, noise_rel: float = 0.0, seed: int = 0, batch_size: int = 512,
                   width: int = 512, device: torch.device | str | None = None,
                   progress: bool = False) -> LearnedInverter:
    """Train a :class:`LearnedInverter` on public text pushed through the public input block.

    THREAT MODEL: the honest-but-curious server, which sees the activations after the client's
    input block (FL-GLM: embedding + 1 block) but not the client's tokens.
    ATTACKER'S KNOWLEDGE: the PUBLIC PRETRAINED input-block weights (the checkpoint every client
    starts from; the client's fine-tuned weights stay unknown) and auxiliary public text of a
    similar kind. It makes (activation, token) pairs itself and learns the inverse map, then
    applies :meth:`LearnedInverter.invert` to what it receives. With ``noise_rel > 0`` it is
    noise-aware: it trains on activations noised as the client noises them.

    Args:
        input_block: the attacker's copy of the pretrained input block (run in eval mode on
            ``device``; its weights are not changed).
        token_batches: public text: (B, T) ids, ``(ids, mask)`` pairs or dicts of ``input_ids``
            and ``attention_mask``.
        steps: optimizer steps (minibatches of ``batch_size`` real positions).
        lr: AdamW learning rate.
        noise_rel: train on activations + N(0, (noise_rel x RMS)^2), fresh noise each step.
        seed: seeds the minibatch sampling, the noise and the probe's initialisation.
        batch_size: positions per step.
        width: the probe's MLP width.
        device: where to train; default: where the input block is.
        progress: show a progress bar.

    Returns:
        The trained inverter, in eval mode, on ``device``.

    Introduced in notebook 03.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> head = split_model(tiny_model(), head_layers=1).head
        >>> inv = train_inverter(head, [torch.randint(3, 512, (8, 16))], steps=2)
        >>> inv.invert(head(torch.tensor([[5, 6]]), Spans.full(1, 2))).shape
        torch.Size([1, 2])
    """
    table = weight_of(input_block.embed_tokens)  # (V, H)
    where = torch.device(device) if device is not None else table.device
    input_block = input_block.to(where).eval()
    acts, tokens, scale = _pairs(input_block, as_id_batches(token_batches), where)  # (N, H), (N,), (N,)
    inverter = LearnedInverter(acts.shape[1], table.shape[0], width=width, embedding_weight=table,
                               seed=seed).to(where)
    return train_probe(inverter, (acts,), tokens, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                       noise_std=noise_rel * scale if noise_rel > 0 else None, progress=progress, desc="inverter")
