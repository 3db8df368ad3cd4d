"""Evidence with its uncertainty: what one attack recovered, by kind, each with a 95 % interval.

A privacy number means something only with its n, its interval and a baseline beside it.
:func:`measure_recovery` scores an attack's recovered token ids three ways, each against the
prior-only guess scored the same way:

* **tokens**: real tokens recovered exactly, over all real tokens;
* **identifiers**: whole private identifiers found in the decoded text (names, dates of birth,
  ages, phone numbers, towns, record numbers, visit dates:
  :data:`~flglm_kit.data.IDENTIFIER_ENTITY_TYPES`);
* **clinical terms**: whole conditions and medications
  (:data:`~flglm_kit.data.CLINICAL_ENTITY_TYPES`). They come from short lists, so a prior
  guesses them more often than identifiers: the clinic datasheet asks for the two separately.

Each rate carries a 95 % Wilson interval (:func:`~flglm_kit.stats.wilson_interval`). The
interval treats tokens (or entities) as independent draws; tokens of one note are not, so
the interval is narrower than a per-note resampling would give. Read it as a lower bound on
the uncertainty, and look at n.

Introduced in notebook 02.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flglm_kit.attacks.recovery import entity_recovery_rate
from flglm_kit.data.clinic import CLINICAL_ENTITY_TYPES, IDENTIFIER_ENTITY_TYPES
from flglm_kit.stats import Interval, wilson_interval

__all__ = ["KINDS", "Recovery", "measure_recovery", "recovery_table"]

#: the three kinds of recovery, in the order tables show them
KINDS = ("tokens", "identifiers", "clinical")


@dataclass(frozen=True)
class Recovery:
    """One attack's recovery rates with their 95 % Wilson intervals, and the baseline's.

    ``identifiers`` / ``clinical`` are ``None`` when no entity of that kind lies in the text
    scored (e.g. only the first 64 tokens of a note were sent). ``baseline`` is the prior-only
    guess scored the same way (``None`` if none was given).
    """

    name: str
    knowledge: str
    tokens: Interval
    identifiers: Interval | None = None
    clinical: Interval | None = None
    baseline: Recovery | None = None

    def kind(self, kind: str) -> Interval | None:
        """The interval of one of :data:`KINDS`."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        return getattr(self, kind)

    def __str__(self) -> str:
        lines = [f"{self.name} (attacker knows: {self.knowledge})"]
        for kind in KINDS:
            got = self.kind(kind)
            base = self.baseline.kind(kind) if self.baseline is not None else None
            lines.append((f"  {kind:12s} {_cell(got):30s}" + (f" prior-only {_cell(base)}" if base else "")).rstrip())
        return "\n".join(lines)


def _cell(iv: Interval | None) -> str:
    """``'85.3 % [83.0, 87.4] of 1024'``, or ``'none in view'``."""
    return "none in view" if iv is None else f"{iv.pct()} of {iv.n}"


def _texts(ids: torch.Tensor, mask: torch.Tensor, tokenizer: Any) -> list[str]:
    rows = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    return [tokenizer.decode([i if i >= 0 else 0 for i in row], skip_special_tokens=True) for row in rows]


def _entities(texts: list[str], entities: Sequence[Sequence[Any]], types: Iterable[str]) -> Interval | None:
    wanted = set(types)
    n = sum(1 for group in entities for e in group if e["type"] in wanted)
    if n == 0:
        return None
    found = round(entity_recovery_rate(texts, list(entities), types=wanted) * n)
    return wilson_interval(found, n)


def _score(name: str, knowledge: str, predicted: torch.Tensor, true: torch.Tensor, mask: torch.Tensor,
           tokenizer: Any, entities: Sequence[Sequence[Any]] | None, baseline: Recovery | None) -> Recovery:
    real = mask != 0
    n = int(real.sum())
    if n == 0:
        raise ValueError("no real token to score (the mask is all zero)")
    tokens = wilson_interval(int(((predicted == true) & real).sum()), n)
    identifiers = clinical = None
    if entities is not None:
        if len(entities) != len(true):
            raise ValueError(f"{len(entities)} entity lists for {len(true)} rows")
        texts = _texts(predicted, mask, tokenizer)
        identifiers = _entities(texts, entities, IDENTIFIER_ENTITY_TYPES)
        clinical = _entities(texts, entities, CLINICAL_ENTITY_TYPES)
    return Recovery(name, knowledge, tokens, identifiers, clinical, baseline)


def measure_recovery(name: str, predicted_ids: torch.Tensor, true_ids: torch.Tensor, mask: torch.Tensor | None = None,
                     *, knowledge: str, tokenizer: Any = None, entities: Sequence[Sequence[Any]] | None = None,
                     baseline_ids: torch.Tensor | None = None) -> Recovery:
    """Score recovered ids: tokens, identifiers and clinical terms, each with a Wilson interval.

    Args:
        name: the attack's name.
        predicted_ids: (B, T) the attacker's guess (``-100`` counts as a miss).
        true_ids: (B, T) the client's real ids (or next-token labels, for attacks on the loss side).
        mask: (B, T) 1 at the positions to score; default all.
        knowledge: what the attacker knew, in words.
        tokenizer: decodes each row's scored positions, to look for the entities; needed with
            ``entities``.
        entities: per row, the private entities (mappings with ``type`` and ``text``, as
            in ``load_clinic_notes(...)[i].meta["entities"]``).
        baseline_ids: (B, T) the prior-only guess, scored the same way.

    Returns:
        A :class:`Recovery`.

    Raises:
        ValueError: no real token to score, or one entity list per row is not given.

    Introduced in notebook 02.

    Example:
        >>> r = measure_recovery("toy", torch.tensor([[5, 6, 9, 0]]), torch.tensor([[5, 6, 7, 0]]),
        ...                      torch.tensor([[1, 1, 1, 0]]), knowledge="none")
        >>> r.tokens.pct(), r.tokens.n, r.identifiers
        ('66.7 % [20.8, 93.9]', 3, None)
    """
    true = torch.as_tensor(true_ids).long().cpu()
    predicted = torch.as_tensor(predicted_ids).long().cpu()
    real = torch.ones_like(true) if mask is None else torch.as_tensor(mask).long().cpu()
    if predicted.shape != true.shape:
        raise ValueError(f"predicted ids {tuple(predicted.shape)} and true ids {tuple(true.shape)} differ in shape")
    if entities is not None and tokenizer is None:
        raise ValueError("entities need a tokenizer to decode the recovered text")
    base = None
    if baseline_ids is not None:
        base = _score("prior only", "public text only", torch.as_tensor(baseline_ids).long().cpu(), true, real,
                      tokenizer, entities, None)
    return _score(name, knowledge, predicted, true, real, tokenizer, entities, base)


def recovery_table(results: Sequence[Recovery], *, baseline: bool = True) -> str:
    """One line per attack: tokens, identifiers and clinical terms, each ``% [95 % interval]``.

    With ``baseline=True`` a last line gives the first result's prior-only baseline (all
    results of one table should share it), and each column header says the n behind it.

    Example:
        >>> r = measure_recovery("toy", torch.tensor([[5, 6, 9]]), torch.tensor([[5, 6, 7]]), knowledge="-",
        ...                      baseline_ids=torch.tensor([[5, 0, 0]]))
        >>> print(recovery_table([r]))
        attack       tokens (n=3)          identifiers   clinical terms
        toy          66.7 % [20.8, 93.9]   -             -
        prior only   33.3 % [6.1, 79.2]    -             -
    """
    rows = list(results)
    if baseline and rows and rows[0].baseline is not None:
        rows.append(rows[0].baseline)
    first = results[0] if results else None

    def head(kind: str, label: str) -> str:
        iv = first.kind(kind) if first is not None else None
        return f"{label} (n={iv.n})" if iv is not None else label

    table = [["attack", head("tokens", "tokens"), head("identifiers", "identifiers"),
              head("clinical", "clinical terms")]]
    for r in rows:
        table.append([r.name] + [r.kind(k).pct() if r.kind(k) is not None else "-" for k in KINDS])  # type: ignore[union-attr]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)
