"""How much an attacker recovered: token, entity and bag-of-words recovery scores.

The arithmetic under :func:`~flglm_kit.attacks.score` and :func:`~flglm_kit.attacks.score_bag`:
:func:`token_recovery_rate` (exact ids on real positions), :func:`entity_recovery_rate` (private
entities found in the reconstructed text) and :func:`bag_of_words_scores` (a recovered *set* of
tokens). Always report them next to a prior-only baseline (see the clinic notes datasheet):
templated text gives an attacker template tokens for free. Task metrics (accuracy, F1, ROUGE,
perplexity) are in :mod:`flglm_kit.metrics`.

Every function returns plain Python floats in [0, 1] and raises ``ValueError`` where the score
would be undefined, instead of returning NaN.

Introduced in notebook 02 (inside :func:`~flglm_kit.attacks.score`) and 03.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, NamedTuple

import torch

__all__ = ["BagOfWordsScores", "bag_of_words_scores", "entity_recovery_rate", "token_recovery_rate"]


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

    Notebook 02 reads it as ``score(...).token_recovery`` (:func:`~flglm_kit.attacks.score`).

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
    """Case-folded, with each run of whitespace as one space."""
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

    Introduced in notebook 03 (its exercise on private entities).

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

    Notebook 02 reads it as ``score_bag(...)``'s precision and recall (:func:`~flglm_kit.attacks.score_bag`).

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
