"""Shared helpers for ``datasets/generate.py``: seeded RNGs, a tiny grammar expander, writers.

Everything here is standard library only and deterministic: the same seed gives the same
bytes on any platform and Python >= 3.10 (``random.Random`` seeded with a string hashes it
with SHA-512; only ``random()``, ``randrange``, ``choice`` and ``shuffle`` are used).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, Union

# A slot's options: a list of strings to choose from, or a function of the RNG. Typed loosely
# (Any) because grammars are literal data tables, mixed with plain Python values.
Expansion = Union[Sequence[str], Callable[[random.Random], str]]  # noqa: UP007 - a runtime alias on Python 3.10
Grammar = dict[str, Any]

T = TypeVar("T")
_SLOT = re.compile(r"\{([a-z_0-9]+)\}")
# "a" before a vowel sound becomes "an"; the look-ahead skips the usual "you"-sounding words.
_AN = re.compile(r"\b([Aa]) (?=(?!uni|use|usu|one|once|eu|uk)[aeiouAEIOU]|8|11\D|18\D)")
_SPACES = re.compile(r" {2,}")


def rng_for(seed: int, *parts: object) -> random.Random:
    """A private RNG for one dataset / split / shard, independent of every other one."""
    return random.Random(":".join([str(seed), *map(str, parts)]))


def words(spec: str) -> list[str]:
    """Split a ``"a|b|c"`` vocabulary string into a list (``|`` so entries may hold spaces)."""
    return [w.strip() for w in spec.split("|") if w.strip()]


def integer(lo: int, hi: int, step: int = 1) -> Callable[[random.Random], str]:
    """A grammar slot that draws an integer in ``[lo, hi]`` (inclusive)."""
    return lambda rng: str(rng.randrange(lo, hi + 1, step))


def expand(rng: random.Random, grammar: Grammar, text: str, depth: int = 0) -> str:
    """Fill every ``{slot}`` in ``text`` from ``grammar``, recursively, left to right."""
    if depth > 12:
        raise RecursionError(f"grammar recursion too deep at {text!r}")

    def fill(match: re.Match[str]) -> str:
        options = grammar[match.group(1)]
        choice = options(rng) if callable(options) else rng.choice(options)
        return expand(rng, grammar, choice, depth + 1)

    return _SLOT.sub(fill, text)


def bind(rng: random.Random, grammar: Grammar, keys: Iterable[str]) -> Grammar:
    """Copy ``grammar`` with each of ``keys`` fixed to one drawn value (stays put in a document)."""
    bound: Grammar = dict(grammar)
    for key in keys:
        bound[key] = [expand(rng, grammar, "{" + key + "}")]
    return bound


def tidy(sentence: str) -> str:
    """Fix articles and spacing, and capitalise the first letter."""
    sentence = _SPACES.sub(" ", _AN.sub(r"\1n ", sentence)).strip()
    return sentence[:1].upper() + sentence[1:]


def sentence(rng: random.Random, grammar: Grammar, template: str) -> str:
    """Expand and tidy one template."""
    return tidy(expand(rng, grammar, template))


def pick(rng: random.Random, items: Sequence[T], k: int) -> list[T]:
    """``k`` distinct items in random order (a seeded partial shuffle)."""
    pool = list(items)
    rng.shuffle(pool)
    return pool[:k]


def ordered(rng: random.Random, grammar: Grammar, templates: Sequence[str], lo: int, hi: int) -> str:
    """The first template, then ``lo..hi-1`` of the others, in their written order."""
    rest = sorted(pick(rng, list(range(1, len(templates))), rng.randrange(lo, hi)))
    return " ".join(sentence(rng, grammar, templates[i]) for i in [0, *rest])


def to_jsonl(records: Iterable[Mapping[str, object]]) -> str:
    """One JSON object per line: sorted keys, compact separators, UTF-8 text, ``\\n`` endings."""
    return "".join(
        json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
        for r in records
    )


def from_jsonl(text: str) -> list[dict[str, Any]]:
    """Inverse of :func:`to_jsonl`."""
    return [json.loads(line) for line in text.splitlines() if line]


def tenths(value: int) -> str:
    """Format an integer number of tenths without floats: ``384 -> "38.4"``."""
    return f"{value // 10}.{value % 10}"


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A small Markdown table for datasheets."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
