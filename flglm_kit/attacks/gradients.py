"""Reading the text out of gradients: embedding updates, dL/dlogits, and dL/dh_B.

* :func:`bag_of_words`: the rows of an embedding-table gradient or update that are not zero are
  exactly the tokens of the batch (Melis et al. 2019; FILM 2022).
* :func:`labels_from_logit_grads`: dL/dlogits = softmax - onehot is negative only at the label.
* :class:`GradientLabelInverter` / :func:`train_gradient_inverter`: the gradient dL/dh_B that
  the client's output block returns to the server still points at the next tokens (the
  backward part of BiSR); a probe trained on public text reads them off.

Introduced in notebook 02 (bag of words, logit gradients) and 03 (gradient label inverter).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from flglm_kit.attacks._common import TokenBatch, as_id_batches, weight_of
from flglm_kit.attacks.probe import ProbeHead, train_probe
from flglm_kit.attacks.result import next_token_labels
from flglm_kit.losses import IGNORE_INDEX
from flglm_kit.split import SplitModel, Spans

__all__ = ["bag_of_words", "labels_from_logit_grads", "GradientLabelInverter", "train_gradient_inverter"]


@torch.no_grad()
def bag_of_words(embedding_grad: torch.Tensor, *, atol: float = 0.0) -> set[int]:
    """The token ids whose embedding row has a non-zero gradient (or update).

    THREAT MODEL: whoever receives a client's embedding-table gradient or update: the server or
    an aggregator in a naive layout that ships (or averages) embedding updates, or an
    eavesdropper on a plaintext channel. ATTACKER'S KNOWLEDGE: only the gradient/update itself.

    Only rows of tokens that occur in the batch receive gradient, so their set is the batch's
    bag of words, order and counts lost. Two honest caveats: a token that occurs only at the last
    real position of its sample gets no gradient (nothing is predicted from it, and no later
    position attends to it), and an *update* is only this sparse under plain SGD: AdamW's weight
    decay moves every row (raise ``atol`` above ``lr x weight_decay x |w|``) and its momentum
    keeps rows of earlier batches moving.

    Args:
        embedding_grad: (V, H) gradient of the loss w.r.t. the embedding table, or weight delta.
        atol: a row counts if any entry's absolute value exceeds this.

    Returns:
        The set of token ids; score it with :func:`~flglm_kit.attacks.score_bag`.

    Introduced in notebook 02.

    Example:
        >>> emb = nn.Embedding(10, 4)
        >>> emb(torch.tensor([[3, 7, 3]])).sum().backward()
        >>> sorted(bag_of_words(emb.weight.grad))
        [3, 7]
    """
    rows = (embedding_grad.detach().abs() > atol).any(dim=-1)  # (V,)
    return set(rows.nonzero().flatten().tolist())


@torch.no_grad()
def labels_from_logit_grads(dlogits: torch.Tensor) -> torch.Tensor:
    """The label each position was trained on: the argmin over the vocabulary of dL/dlogits.

    THREAT MODEL: a server that holds the LM head but lets the client compute the loss, so the
    client returns dL/dlogits. (The kit's naive ``tail_on_server`` layout is worse still: it ships
    the labels outright; see :func:`flglm_kit.attacks.shipped_labels`.) ATTACKER'S KNOWLEDGE:
    only the gradient. For cross-entropy, dL/dlogits = (softmax - onehot(label)) / N, negative at
    the label and positive everywhere else, whatever the model or the scale N.

    Args:
        dlogits: (B, T, V) gradient of the loss w.r.t. the logits.

    Returns:
        (B, T) labels: position ``t`` holds the token that followed it (``input_ids[t + 1]``);
        -100 where the gradient is zero (no loss taken: padding, the last token, prompts).
        Score against :func:`flglm_kit.attacks.next_token_labels`.

    Introduced in notebook 02.

    Example:
        >>> logits = torch.randn(1, 3, 11, requires_grad=True)
        >>> labels = torch.tensor([[4, 9, -100]])
        >>> torch.nn.functional.cross_entropy(logits.view(-1, 11), labels.view(-1)).backward()
        >>> labels_from_logit_grads(logits.grad).tolist()
        [[4, 9, -100]]
    """
    ids = dlogits.argmin(dim=-1)  # (B, T)
    return ids.masked_fill((dlogits == 0).all(dim=-1), IGNORE_INDEX)


def _features(grads: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
    """Per-position features: dL/dh_B scaled to unit RMS (the client's 1/N and the loss scale
    vanish), and h_B scaled to unit RMS when used."""
    g = grads.float()
    g = g / g.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-30)  # (..., H)
    if hidden is None:
        return g
    h = hidden.float()
    return torch.cat([g, h / h.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-30)], dim=-1)


class GradientLabelInverter(ProbeHead):
    """A per-position probe from [dL/dh_B, optionally h_B] to the next token's logits.

    A :class:`~flglm_kit.attacks.ProbeHead` with an input projection. It starts from the analytic
    guess for an output block with no decoder layer (the gradient points away from the label's
    LM-head row: ``-g`` scored against the LM head), then learns the rest. Train it with
    :func:`train_gradient_inverter`; introduced in notebook 03.

    Args:
        hidden_size: H.
        vocab_size: V.
        use_hidden: also read h_B (the server computed it, so it has it).
        width: the MLP's hidden width.
        lm_head_weight: (V, H) the public pretrained LM head, to start the unembedding from.
        seed: seeds the initialisation (a local generator: the global one is left alone).
    """

    def __init__(self, hidden_size: int, vocab_size: int, *, use_hidden: bool = True, width: int = 512,
                 lm_head_weight: torch.Tensor | None = None, seed: int = 0) -> None:
        super().__init__(hidden_size, vocab_size, in_features=hidden_size * (2 if use_hidden else 1), width=width,
                         unembed_weight=lm_head_weight, seed=seed)
        self.use_hidden = use_hidden
        if lm_head_weight is not None:
            with torch.no_grad():  # the analytic start: read -g, ignore h_B
                inp = self.inp
                assert isinstance(inp, nn.Linear)
                inp.weight.zero_()
                inp.weight[:, :hidden_size] = -torch.eye(hidden_size)
                inp.bias.zero_()

    def forward(self, grads: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(..., H) dL/dh_B [and (..., H) h_B] -> (..., V) logits of the next token."""
        return super().forward(_features(grads, hidden if self.use_hidden else None))

    @torch.no_grad()
    def invert(self, output_grads: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, H) gradients [and h_B] -> (B, T) next-token ids; -100 where the gradient is zero."""
        if self.use_hidden and hidden is None:
            raise ValueError("this inverter was trained with use_hidden=True: pass the h_B the server computed")
        device = self.unembed.weight.device
        ids = self(output_grads.to(device), None if hidden is None else hidden.to(device)).argmax(dim=-1)
        return ids.cpu().masked_fill((output_grads == 0).all(dim=-1).cpu(), IGNORE_INDEX)


def _simulate(split: SplitModel, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Public text through the pretrained model as a client would: (N, H) grads, (N, H) h_B, (N,) next tokens."""
    grads, hiddens, targets = [], [], []
    for ids, mask in batches:
        ids, mask = ids.to(device), mask.to(device)
        spans = Spans.from_attention_mask(mask)
        with torch.no_grad():
            hidden = split.trunk(split.head(ids, spans), spans)  # (B, T, H): h_B
        hidden.requires_grad_(True)
        loss = split.tail(hidden, spans, ids.masked_fill(mask == 0, IGNORE_INDEX)).loss  # the client's default labels
        (grad,) = torch.autograd.grad(loss, hidden)  # (B, T, H)
        keep = next_token_labels(ids, mask) != IGNORE_INDEX  # (B, T)
        grads.append(grad[keep])
        hiddens.append(hidden.detach()[keep])
        targets.append(ids[:, 1:][keep[:, :-1]])
    return torch.cat(grads), torch.cat(hiddens), torch.cat(targets)


def train_gradient_inverter(split: SplitModel, token_batches: Iterable[TokenBatch], *, steps: int = 300,
                            lr: float = 3e-3, use_hidden: bool = False, seed: int = 0, batch_size: int = 512,
                            width: int = 512, device: torch.device | str | None = None,
                            progress: bool = False) -> GradientLabelInverter:
    """Train a :class:`GradientLabelInverter` on gradients simulated from public text.

    THREAT MODEL: the honest-but-curious server in the FL-GLM layout. It computes h_B itself and
    receives dL/dh_B from the client's output block (``output_grads`` messages; see
    :func:`flglm_kit.attacks.output_grads_of`), never the labels or the loss.
    ATTACKER'S KNOWLEDGE: the PUBLIC PRETRAINED model (input block, trunk, output block: the
    checkpoint everyone starts from, not the client's fine-tuned output block) and auxiliary
    public text. It runs the text through the pretrained model, takes the gradient of the mean
    next-token loss w.r.t. h_B exactly as a client would, and learns gradient (+ h_B) -> next
    token. Gradients are normalised per position, since the client's mean loss scales them by
    1 / (number of label tokens).

    Args:
        split: the pretrained model split as the client's is (same ``head_layers``/``tail_layers``).
        token_batches: public text: (B, T) ids, ``(ids, mask)`` pairs or dicts.
        steps, lr, seed, batch_size, width, progress: as in :func:`~flglm_kit.attacks.train_inverter`.
        use_hidden: also feed h_B to the probe.
        device: where to train; default: where the model is.

    Returns:
        The trained inverter, in eval mode. ``invert(grads)`` gives next-token ids (-100 where
        the gradient is zero); score them against :func:`~flglm_kit.attacks.next_token_labels`.
        ``steps=0`` leaves the analytic starting point (the gradient scored against the LM head).

    Introduced in notebook 03.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> split = split_model(tiny_model())
        >>> inv = train_gradient_inverter(split, [torch.randint(3, 512, (4, 12))], steps=2)
        >>> type(inv).__name__
        'GradientLabelInverter'
    """
    head_weight = weight_of(split.tail.lm_head)  # (V, H)
    where = torch.device(device) if device is not None else head_weight.device
    split = split.to(where).eval()
    grads, hiddens, targets = _simulate(split, as_id_batches(token_batches), where)
    inverter = GradientLabelInverter(grads.shape[1], head_weight.shape[0], use_hidden=use_hidden, width=width,
                                     lm_head_weight=head_weight, seed=seed).to(where)
    return train_probe(inverter, (grads, hiddens), targets, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                       progress=progress, desc="gradient inverter")
