"""Task metrics: how useful a model is.

Utility (notebook 03, then 06): :func:`accuracy`, :func:`f1_binary` and :func:`f1_macro` as
SuperGLUE reports them (BoolQ, RTE, COPA: accuracy; CB: accuracy and macro-F1), :func:`rouge`
for summaries, :func:`perplexity` and :func:`perplexity_of` for language modelling.

How much an attacker recovered (token, entity and bag-of-words recovery) is scored next to the
attacks, in :mod:`flglm_kit.attacks.recovery`.

Every function returns plain Python floats in [0, 1] (perplexity: >= 1 for a proper model) and
raises ``ValueError`` where the score would be undefined, instead of returning NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import torch

from flglm_kit.losses import IGNORE_INDEX, next_token_loss, supervised_tokens

__all__ = ["accuracy", "f1_binary", "f1_macro", "mean_label_nll", "perplexity", "perplexity_of", "rouge"]


def _pairs(preds: Any, labels: Any) -> tuple[list[Any], list[Any]]:
    """Two equal-length, non-empty lists (tensors and arrays become lists of Python scalars)."""
    preds = preds.tolist() if hasattr(preds, "tolist") else list(preds)
    labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if not preds:
        raise ValueError("no predictions to score")
    return preds, labels


# --- classification ----------------------------------------------------------------------------

def accuracy(preds: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Fraction of predictions equal to their label.

    Raises:
        ValueError: for different lengths or no predictions.

    Not called directly in a notebook yet.

    Example:
        >>> accuracy(["yes", "no", "no", "yes"], ["yes", "no", "yes", "yes"])
        0.75
    """
    preds, labels = _pairs(preds, labels)
    return sum(p == t for p, t in zip(preds, labels)) / len(labels)


def f1_binary(preds: Sequence[Hashable], labels: Sequence[Hashable], *,
              positive: Hashable = 1) -> float:
    """F1 of one class against the rest: ``2PR / (P + R)``.

    Like scikit-learn with ``zero_division=0``: a precision or recall with an empty
    denominator counts as 0, so a class never predicted and never present scores 0.

    Args:
        preds: predicted labels.
        labels: true labels.
        positive: the class scored (``True == 1``, so the default also fits BoolQ's booleans).

    Returns:
        The F1 score in [0, 1].

    Raises:
        ValueError: for different lengths or no predictions.

    Not called directly in a notebook yet.

    Example:
        >>> f1_binary([1, 1, 0, 0], [1, 0, 1, 0])  # P = 1/2, R = 1/2
        0.5
    """
    preds, labels = _pairs(preds, labels)
    tp = sum(p == positive and t == positive for p, t in zip(preds, labels))
    fp = sum(p == positive and t != positive for p, t in zip(preds, labels))
    fn = sum(p != positive and t == positive for p, t in zip(preds, labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def f1_macro(preds: Sequence[Hashable], labels: Sequence[Hashable], *,
             classes: Iterable[Hashable] | None = None) -> float:
    """Unweighted mean of per-class F1 (SuperGLUE's CB metric, with accuracy).

    Args:
        preds: predicted labels.
        labels: true labels.
        classes: the classes to average over; default: every class seen in ``labels`` or
            ``preds`` (scikit-learn's default), so a never-predicted class counts as 0.

    Returns:
        The macro-F1 in [0, 1].

    Raises:
        ValueError: for different lengths or no predictions.

    Not called directly in a notebook yet.

    Example:
        >>> round(f1_macro(["a", "b", "b"], ["a", "a", "b"]), 4)  # F1(a) = 2/3, F1(b) = 2/3
        0.6667
    """
    preds, labels = _pairs(preds, labels)
    chosen = list(classes) if classes is not None else list(dict.fromkeys(labels + preds))
    if not chosen:
        raise ValueError("no classes to average over")
    return sum(f1_binary(preds, labels, positive=c) for c in chosen) / len(chosen)


# --- generation --------------------------------------------------------------------------------

_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer  # imports nltk: pay for it only when scoring

    return rouge_scorer.RougeScorer(list(_ROUGE_TYPES), use_stemmer=True)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE F1 over pairs, via ``rouge-score`` with the Porter stemmer.

    Newlines follow the CNN/DailyMail convention (highlights are one sentence per line):
    ``rougeL`` ignores them (one LCS over the whole text), ``rougeLsum`` splits both texts on
    ``'\\n'`` and takes the summary-level union LCS over sentences. Give predictions one
    sentence per line too, or ``rougeLsum`` treats them as one sentence. Text is lower-cased
    and reduced to ASCII letters and digits by ``rouge-score``'s tokenizer.

    Args:
        predictions: generated texts.
        references: reference texts, one per prediction.

    Returns:
        ``{"rouge1", "rouge2", "rougeL", "rougeLsum"}``: mean F1 in [0, 1] (not percent).

    Raises:
        ValueError: for different lengths or no predictions.

    Not called directly in a notebook yet.

    Example:
        >>> rouge(["the cat sat"], ["the cat sat"])["rougeL"]
        1.0
    """
    predictions, references = _pairs(predictions, references)
    scorer = _rouge_scorer()
    totals = dict.fromkeys(_ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)  # rouge-score's order: (target, prediction)
        for name in _ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: total / len(predictions) for name, total in totals.items()}


def perplexity(mean_nll: float) -> float:
    """``exp(mean negative log-likelihood per token)``, in nats; ``inf`` when that overflows.

    Raises:
        ValueError: for a NaN mean.

    Not called directly in a notebook yet.

    Example:
        >>> round(perplexity(math.log(7.0)), 6)  # uniform over 7 tokens
        7.0
    """
    if math.isnan(mean_nll):
        raise ValueError("mean_nll is NaN")
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def mean_label_nll(model: Callable[..., Any], batches: Iterable[Mapping[str, torch.Tensor]], *,
                   device: torch.device | str | None = None) -> float:
    """Token-weighted mean NLL of the label tokens (``labels != IGNORE_INDEX``), under ``torch.no_grad``.

    The model predicts token t + 1 from position t (Hugging Face convention: labels are not
    shifted in the batch); the sum is :func:`flglm_kit.losses.next_token_loss`'s. Every label
    token weighs the same, whichever batch it is in: not a mean of per-batch means.

    Args:
        model: called as ``model(input_ids=..., attention_mask=...)``; returns logits
            ``(B, T, V)`` or an object with ``.logits``. An ``nn.Module`` is put in eval mode
            for the call and restored after.
        batches: dicts with ``input_ids``, ``attention_mask`` and ``labels`` (``(B, T)``), as
            :func:`flglm_kit.data.make_loader` yields.
        device: where to move each batch; default: left where it is.

    Returns:
        The mean NLL in nats per label token.

    Raises:
        ValueError: if the batches hold no label token.

    Introduced in notebook 03.

    Example:
        >>> batch = {"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.ones(1, 2),
        ...          "labels": torch.tensor([[-100, 2]])}
        >>> round(mean_label_nll(lambda **kw: torch.zeros(1, 2, 4), [batch]), 4)  # ln 4
        1.3863
    """
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()  # dropout off: the score must not depend on a random mask
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for batch in batches:
                moved = {k: v.to(device) if device is not None else v for k, v in batch.items()}
                out = model(input_ids=moved["input_ids"], attention_mask=moved["attention_mask"])
                logits = getattr(out, "logits", out)  # (B, T, V)
                total += float(next_token_loss(logits, moved["labels"], reduction="sum"))
                count += supervised_tokens(moved["labels"])
    finally:
        if was_training and isinstance(model, torch.nn.Module):
            model.train()
    if count == 0:
        raise ValueError(f"no label tokens (labels are all {IGNORE_INDEX})")
    return total / count


def perplexity_of(model: Callable[..., Any], batches: Iterable[Mapping[str, torch.Tensor]], *,
                  device: torch.device | str | None = None) -> float:
    """Perplexity of ``model`` on the label tokens of ``batches``: see :func:`mean_label_nll`.

    Not called directly in a notebook yet.

    Example:
        >>> batch = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3),
        ...          "labels": torch.tensor([[-100, 2, 3]])}
        >>> uniform = lambda input_ids, attention_mask: torch.zeros(1, 3, 5)  # V = 5
        >>> round(perplexity_of(uniform, [batch]), 6)
        5.0
    """
    return perplexity(mean_label_nll(model, batches, device=device))
