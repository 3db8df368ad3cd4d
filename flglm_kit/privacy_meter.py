"""A privacy meter: how much of the clients' text the server reads back from what it just received.

The learned inverter of notebook 03 (:func:`flglm_kit.attacks.train_inverter`), trained once on
public text pushed through the public pretrained input block, is run on the activations of the
latest step of each client that the server decrypted, and scored against the true tokens next
to the prior-only baseline (:func:`flglm_kit.attacks.prior_baseline`), which sees nothing. The
dashboard draws both after every round, so that a learner sees the privacy cost of a setting
(fewer client blocks, no noise) while it trains.

THREAT MODEL: the honest-but-curious server, which decrypts every activation to compute.
ATTACKER'S KNOWLEDGE: the public pretrained input block, public text of a similar kind and,
when the clients add noise, its level (the inverter is then trained on equally noised
activations). Not the clients' fine-tuned weights: the meter is a lower bound on what a
stronger attacker (white-box matching, notebook 03) reads.

Not called directly in a notebook yet: the dashboard of notebook 06 runs it after every round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from flglm_kit.attacks import LearnedInverter, PriorBaseline, activations_of, prior_baseline, train_inverter
from flglm_kit.data import load_corpus
from flglm_kit.split import InputBlock
from flglm_kit.wire import Message

__all__ = ["PrivacyMeter", "public_token_batches"]


def public_token_batches(tokenizer: PreTrainedTokenizerBase, *, documents: int = 512, seq_len: int = 64,
                         batch: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``seq_len`` tokens of the first ``documents`` public corpus documents, as ``(ids, mask)``
    batches (what notebook 03's attacker trains on)."""
    docs = load_corpus("train")[:documents]
    enc = tokenizer([tokenizer.bos_token + d for d in docs], max_length=seq_len, truncation=True,
                    padding="max_length", add_special_tokens=False, return_tensors="pt")
    return list(zip(enc.input_ids.split(batch), enc.attention_mask.split(batch)))


class PrivacyMeter:
    """A trained inverter and the prior baseline; :meth:`measure` scores the latest activations.

    Args:
        inverter: a :class:`~flglm_kit.attacks.LearnedInverter` for the clients' input block depth.
        prior: the prior-only baseline from the same public text.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> head = split_model(tiny_model(), head_layers=1).head
        >>> text = [(torch.randint(3, 512, (8, 12)), torch.ones(8, 12, dtype=torch.long))]
        >>> meter = PrivacyMeter.train(head, text, steps=2)
        >>> ids = torch.randint(3, 512, (2, 12))
        >>> from flglm_kit.split import Spans
        >>> msg = Message("activations", "c0", 1, tensors={"activations": head(ids, Spans.full(2, 12)),
        ...     "starts": torch.tensor([0, 0]), "lengths": torch.tensor([12, 12])})
        >>> recovered, prior, tokens = meter.measure([msg], {"c0": {"input_ids": ids}})
        >>> tokens, 0.0 <= recovered <= 1.0
        (24, True)
    """

    def __init__(self, inverter: LearnedInverter, prior: PriorBaseline) -> None:
        self.inverter, self.prior = inverter, prior

    @classmethod
    def train(cls, public_block: InputBlock, public_batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
              noise_rel: float = 0.0, steps: int = 60, batch_size: int = 256, lr: float = 6e-3,
              seed: int = 0) -> PrivacyMeter:
        """Train the inverter on ``public_batches`` through ``public_block`` (noise-aware when ``noise_rel > 0``)."""
        batches = list(public_batches)
        inverter = train_inverter(public_block, batches, steps=steps, batch_size=batch_size, lr=lr,
                                  noise_rel=noise_rel, seed=seed)
        return cls(inverter, prior_baseline(batches))

    def measure(self, seen: Sequence[Message], batches: Mapping[str, Mapping[str, torch.Tensor]]
                ) -> tuple[float, float, int] | None:
        """Token recovery of the inverter and of the prior on each client's latest activations in ``seen``.

        Args:
            seen: messages the server decrypted (``Federation(record_server_view=True).seen``).
            batches: client id -> the batch (``input_ids``) of that client's latest step: the truth,
                which only the experimenter has.

        Returns:
            ``(recovered, prior, tokens)``: fractions of the real tokens each got right, and how
            many tokens were scored; ``None`` if no client's activations were seen.
        """
        latest: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for obs in activations_of(seen):
            if obs.client_id in batches:
                latest[obs.client_id] = (obs.tensor, obs.spans.attention_mask())
        hits = prior_hits = total = 0
        for cid, (acts, mask) in latest.items():
            truth = batches[cid]["input_ids"].cpu()  # (B, T)
            real = mask.cpu().bool()  # (B, T): what the server itself knows is real
            if truth.shape != real.shape:
                continue
            guess = self.inverter.invert(acts).cpu()  # (B, T)
            hits += int(((guess == truth) & real).sum())
            prior_hits += int(((self.prior.predict(mask.cpu()) == truth) & real).sum())
            total += int(real.sum())
        if total == 0:
            return None
        return hits / total, prior_hits / total, total
