"""Metrics: how useful a model is, and how much an attacker recovered.

Utility (notebook 03, then 06): :func:`accuracy`, :func:`f1_binary` and :func:`f1_macro` as
SuperGLUE reports them (BoolQ, RTE, COPA: accuracy; CB: accuracy and macro-F1), :func:`rouge`
for summaries, :func:`perplexity` and :func:`perplexity_of` for language modelling.

Attacks (notebook 02, then 03): :func:`token_recovery_rate`, :func:`entity_recovery_rate` and
:func:`bag_of_words_scores`. Always report them next to a prior-only baseline (see the clinic
notes datasheet): templated text gives an attacker template tokens for free.

Every function returns plain Python floats in [0, 1] (perplexity: >= 1 for a proper model) and
raises ``ValueError`` where the score would be undefined, instead of returning NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "BagOfWordsScores", "accuracy", "bag_of_words_scores", "entity_recovery_rate", "f1_binary",
    "f1_macro", "mean_label_nll", "perplexity", "perplexity_of", "rouge", "token_recovery_rate",
]

IGNORE_INDEX = -100  # as in flglm_kit.data: label positions that carry no loss


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

    Introduced in notebook 03.

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

    Introduced in notebook 03.

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

    Introduced in notebook 03.

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

    Introduced in notebook 03.

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

    Introduced in notebook 03.

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
    """Token-weighted mean NLL of the label tokens (``labels != -100``), under ``torch.no_grad``.

    The model predicts token t + 1 from position t (Hugging Face convention: labels are not
    shifted in the batch). Every label token weighs the same, whichever batch it is in: not a
    mean of per-batch means.

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
                logits = getattr(out, "logits", out)[:, :-1]  # (B, T-1, V)
                targets = moved["labels"][:, 1:]  # (B, T-1)
                total += float(F.cross_entropy(logits.transpose(1, 2).float(), targets,
                                               ignore_index=IGNORE_INDEX, reduction="sum"))
                count += int((targets != IGNORE_INDEX).sum())
    finally:
        if was_training and isinstance(model, torch.nn.Module):
            model.train()
    if count == 0:
        raise ValueError("no label tokens (labels are all -100)")
    return total / count


def perplexity_of(model: Callable[..., Any], batches: Iterable[Mapping[str, torch.Tensor]], *,
                  device: torch.device | str | None = None) -> float:
    """Perplexity of ``model`` on the label tokens of ``batches``: see :func:`mean_label_nll`.

    Introduced in notebook 03.

    Example:
        >>> batch = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.ones(1, 3),
        ...          "labels": torch.tensor([[-100, 2, 3]])}
        >>> uniform = lambda input_ids, attention_mask: torch.zeros(1, 3, 5)  # V = 5
        >>> round(perplexity_of(uniform, [batch]), 6)
        5.0
    """
    return perplexity(mean_label_nll(model, batches, device=device))


# --- attacks -----------------------------------------------------------------------------------

def token_recovery_rate(predicted_ids: Any, true_ids: Any, mask: Any = None) -> float:
    """Fraction of real token positions where the attacker's token equals the true one.

    Args:
        predicted_ids: recovered ids, any shape (tensor, array or nested lists).
        true_ids: the true ids, same shape.
        mask: 1 at real tokens and 0 at padding (an ``attention_mask``); default: all real.

    Returns:
        Exact matches / real positions.

    Raises:
        ValueError: for mismatched shapes or no real position.

    Introduced in notebook 02.

    Example:
        >>> token_recovery_rate([[5, 6, 0]], [[5, 7, 9]], mask=[[1, 1, 0]])  # 1 of 2 real
        0.5
    """
    predicted, true = torch.as_tensor(predicted_ids), torch.as_tensor(true_ids)
    real = torch.ones_like(true, dtype=torch.bool) if mask is None else torch.as_tensor(mask) != 0
    if predicted.shape != true.shape or real.shape != true.shape:
        raise ValueError(f"shapes differ: predicted {tuple(predicted.shape)}, true "
                         f"{tuple(true.shape)}, mask {tuple(real.shape)}")
    total = int(real.sum())
    if total == 0:
        raise ValueError("no real token positions to score")
    return int(((predicted == true) & real).sum()) / total


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def _found(entity: Any, text: str, types: set[str] | None) -> bool | None:
    """Whether one entity occurs in ``text`` (already normalised); ``None``: filtered out."""
    if isinstance(entity, str):
        if types is not None:
            raise ValueError("types= needs entities as mappings with a 'type'")
        needle = entity
    else:
        if types is not None and entity.get("type") not in types:
            return None
        needle = entity["text"]
    needle = _normalise(needle)
    # Whole words and numbers only: an age of "36" must not count inside "1936".
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", text) is not None


def entity_recovery_rate(recovered_text: str | Sequence[str], entities: Sequence[Any], *,
                         types: Iterable[str] | None = None) -> float:
    """Fraction of private entities whose text appears in the recovered text.

    Matching is case-insensitive (``str.casefold``), runs of whitespace count as one space,
    and an entity counts only as whole words: not inside a longer word or number. A whole
    entity must be recovered; half a phone number is a miss.

    Args:
        recovered_text: one reconstruction, or one per record.
        entities: the record's entities (mappings with ``text`` and ``type``, as in the clinic
            notes, or plain strings); with several reconstructions, one list per record, and
            each record's entities are searched in its own reconstruction only.
        types: count only entities of these types (e.g. ``IDENTIFIER_ENTITY_TYPES``).

    Returns:
        Found entities / scored entities, over all records together.

    Raises:
        ValueError: if no entity is left to score, or the record counts differ.

    Introduced in notebook 02.

    Example:
        >>> ents = [{"type": "name", "text": "Ada  Byrne"}, {"type": "age", "text": "36"}]
        >>> entity_recovery_rate("patient ada byrne, born 1936", ents)  # name yes, age no
        0.5
    """
    if isinstance(recovered_text, str):
        texts, groups = [recovered_text], [entities]
    else:
        texts, groups = list(recovered_text), list(entities)
        if len(texts) != len(groups):
            raise ValueError(f"{len(texts)} reconstructions for {len(groups)} entity lists")
    wanted = set(types) if types is not None else None
    hits = [_found(entity, _normalise(text), wanted) for text, group in zip(texts, groups)
            for entity in group]
    scored = [hit for hit in hits if hit is not None]
    if not scored:
        raise ValueError("no entities to score")
    return sum(scored) / len(scored)


class BagOfWordsScores(NamedTuple):
    """Precision and recall of a recovered set of token ids (or words)."""

    precision: float
    recall: float


def bag_of_words_scores(predicted_set: Iterable[Hashable],
                        true_set: Iterable[Hashable]) -> BagOfWordsScores:
    """Score a recovered *set* of tokens, order ignored (e.g. from an embedding-gradient leak).

    Args:
        predicted_set: what the attacker says occurred (a tensor or any iterable; repeats
            count once).
        true_set: what occurred.

    Returns:
        ``precision = |predicted & true| / |predicted|`` (0 when nothing was predicted) and
        ``recall = |predicted & true| / |true|``.

    Raises:
        ValueError: if ``true_set`` is empty.

    Introduced in notebook 02.

    Example:
        >>> bag_of_words_scores({1, 2, 3, 4}, {2, 4, 6})  # 2 of 4 right, 2 of 3 found
        BagOfWordsScores(precision=0.5, recall=0.6666666666666666)
    """
    predicted = set(predicted_set.tolist() if hasattr(predicted_set, "tolist") else predicted_set)
    true = set(true_set.tolist() if hasattr(true_set, "tolist") else true_set)
    if not true:
        raise ValueError("true_set is empty: recall is undefined")
    hit = len(predicted & true)
    return BagOfWordsScores(hit / len(predicted) if predicted else 0.0, hit / len(true))
