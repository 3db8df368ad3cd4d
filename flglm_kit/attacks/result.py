"""How an attack is reported: :class:`AttackResult`, :func:`score`, :func:`results_table`.

Every number an attack produces is reported with the attacker's knowledge and next to a
prior-only baseline (templated text gives any guesser the template tokens for free, so "40 % of
tokens" means nothing without the baseline beside it).

Introduced in notebook 02.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flglm_kit.attacks.recovery import bag_of_words_scores, entity_recovery_rate, token_recovery_rate
from flglm_kit.losses import IGNORE_INDEX
from flglm_kit.metrics import rouge

__all__ = ["AttackResult", "score", "score_bag", "results_table", "next_token_labels"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


@dataclass
class AttackResult:
    """One attack's outcome, with what the attacker knew and the prior-only baseline.

    All rates are fractions in [0, 1]. ``None`` means "not measured".

    Example:
        >>> AttackResult("nearest neighbour", "public embedding table", 0.98, baseline=0.21)
        AttackResult('nearest neighbour': tokens 98.0% vs baseline 21.0%; knows: public embedding table)
    """

    name: str
    knowledge: str
    token_recovery: float
    baseline: float | None = None
    entity_recovery: float | None = None
    rouge_l: float | None = None
    precision: float | None = None
    recall: float | None = None
    seconds: float | None = None

    def __repr__(self) -> str:
        parts = [f"tokens {_pct(self.token_recovery)}"]
        if self.baseline is not None:
            parts[0] += f" vs baseline {_pct(self.baseline)}"
        for label, value in (("entities", self.entity_recovery), ("ROUGE-L", self.rouge_l),
                             ("precision", self.precision), ("recall", self.recall)):
            if value is not None:
                parts.append(f"{label} {_pct(value)}")
        if self.seconds is not None:
            parts.append(f"{self.seconds:.2f} s")
        return f"AttackResult({self.name!r}: {', '.join(parts)}; knows: {self.knowledge})"

    def as_row(self) -> dict[str, Any]:
        """A flat dict (for a pandas DataFrame or a JSON line)."""
        return dict(self.__dict__)


def next_token_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """What the logits at each position are trained to predict: the next real token, else -100.

    The Hugging Face loss shifts inside: logits at position ``t`` predict ``input_ids[t + 1]``.
    Attacks on the loss side (labels, dL/dlogits, dL/dh_B) recover these, so they are scored
    against this tensor.

    Example:
        >>> next_token_labels(torch.tensor([[5, 6, 7, 0]]), torch.tensor([[1, 1, 1, 0]])).tolist()
        [[6, 7, -100, -100]]
    """
    ids = torch.as_tensor(input_ids).long()
    mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask).long()
    out = torch.full_like(ids, IGNORE_INDEX)  # (B, T)
    real_next = (mask[:, :-1] != 0) & (mask[:, 1:] != 0)  # (B, T-1)
    out[:, :-1] = torch.where(real_next, ids[:, 1:], torch.full_like(ids[:, 1:], IGNORE_INDEX))
    return out


def _texts(ids: torch.Tensor, mask: torch.Tensor, tokenizer: Any) -> list[str]:
    rows = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    return [tokenizer.decode([i if i >= 0 else 0 for i in row], skip_special_tokens=True) for row in rows]


def score(name: str, predicted_ids: Any, true_ids: Any, mask: Any = None, *, knowledge: str,
          baseline_ids: Any = None, tokenizer: Any = None, entities: Sequence[Any] | None = None,
          seconds: float | None = None) -> AttackResult:
    """Score recovered token ids against the truth on real positions, next to a baseline.

    Args:
        name: the attack's name.
        predicted_ids: (B, T) the attacker's ids (one tensor, or a list of batches to concatenate
            along the batch axis, as are ``true_ids``, ``mask`` and ``baseline_ids``).
        true_ids: (B, T) the client's real ids (the evaluator knows them; the attacker does not).
        mask: (B, T) 1 at the positions to score (real tokens); default: all positions.
        knowledge: what the attacker knew, in words.
        baseline_ids: (B, T) the prior-only guess (:class:`~flglm_kit.attacks.PriorBaseline`).
        tokenizer: decode rows to text for ROUGE-L (and entities).
        entities: per row, the private entities (see :func:`~flglm_kit.attacks.entity_recovery_rate`).
        seconds: the attack's run time, to report.

    Returns:
        An :class:`AttackResult`.

    Introduced in notebook 02.

    Example:
        >>> score("toy", torch.tensor([[5, 6, 9]]), torch.tensor([[5, 6, 7]]), knowledge="none",
        ...       baseline_ids=torch.tensor([[5, 0, 0]])).token_recovery
        0.6666666666666666
    """
    def cat(x: Any) -> Any:
        return torch.cat([torch.as_tensor(t) for t in x]) if isinstance(x, (list, tuple)) else x

    predicted, true = torch.as_tensor(cat(predicted_ids)).long(), torch.as_tensor(cat(true_ids)).long()
    real = torch.ones_like(true) if mask is None else torch.as_tensor(cat(mask)).long()
    result = AttackResult(name, knowledge, token_recovery_rate(predicted, true, real), seconds=seconds)
    if baseline_ids is not None:
        result.baseline = token_recovery_rate(torch.as_tensor(cat(baseline_ids)).long(), true, real)
    if tokenizer is not None:
        guessed, reference = _texts(predicted, real, tokenizer), _texts(true, real, tokenizer)
        result.rouge_l = rouge(guessed, reference)["rougeL"]
        if entities is not None:
            result.entity_recovery = entity_recovery_rate(guessed, list(entities))
    return result


def score_bag(name: str, predicted: Iterable[int], true_ids: Any, mask: Any = None, *, knowledge: str,
              baseline: Iterable[int] | None = None, seconds: float | None = None) -> AttackResult:
    """Score a recovered *set* of token ids (order lost, e.g. :func:`~flglm_kit.attacks.bag_of_words`).

    ``token_recovery`` is then the recall (share of the batch's distinct tokens recovered), with
    ``precision`` and ``recall`` set too; ``baseline`` is the recall of a prior guess set (e.g.
    the most frequent tokens of public text).

    Example:
        >>> score_bag("bag", {5, 6, 9}, torch.tensor([[5, 6, 7, 0]]), torch.tensor([[1, 1, 1, 0]]), knowledge="update")
        AttackResult('bag': tokens 66.7%, precision 66.7%, recall 66.7%; knows: update)
    """
    true = torch.as_tensor(true_ids)
    real = torch.ones_like(true, dtype=torch.bool) if mask is None else torch.as_tensor(mask) != 0
    truth = set(true[real].tolist())
    got = bag_of_words_scores(set(predicted), truth)
    result = AttackResult(name, knowledge, got.recall, precision=got.precision, recall=got.recall, seconds=seconds)
    if baseline is not None:
        result.baseline = bag_of_words_scores(set(baseline), truth).recall
    return result


def results_table(results: Sequence[AttackResult]) -> str:
    """A plain-text table of several results, one line each (for a notebook cell).

    Example:
        >>> print(results_table([AttackResult("a", "k", 0.5, baseline=0.1)]))
        attack  tokens  baseline  entities  ROUGE-L  seconds  attacker knows
        a       50.0%   10.0%     -         -        -        k
    """
    header = ("attack", "tokens", "baseline", "entities", "ROUGE-L", "seconds", "attacker knows")
    rows = [(r.name, _pct(r.token_recovery), _pct(r.baseline), _pct(r.entity_recovery), _pct(r.rouge_l),
             "-" if r.seconds is None else f"{r.seconds:.2f}", r.knowledge) for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths)), row[-1]])
                     for row in [header, *rows])
