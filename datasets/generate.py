#!/usr/bin/env python
"""Rebuild the kit's own synthetic datasets, byte for byte, from one seed.

    python datasets/generate.py [--seed 0] [--out datasets] [--only NAME[,NAME]] [--check]

Datasets (each in ``<out>/<name>/`` with a datasheet ``README.md``):

- ``public_corpus``: ~1M words of varied English in twelve domains (gen_corpus*.py), plus
  public medical text in files of its own (gen_medical.py).
- ``clinic_notes``: the private data, synthetic patient notes at four sites (gen_clinic.py).
- ``superglue``: BoolQ, RTE, COPA and CB in SuperGLUE's schema (gen_superglue.py).
- ``summarization``: short articles in CNN/DailyMail's schema (gen_summarization.py).

Standard library only. Same seed, same bytes: sorted JSON keys, no floats, UTF-8, ``\\n``.
``--check`` regenerates in memory and compares with the files under ``--out`` instead of
writing (exit status 1 on any difference). The index ``<out>/README.md`` is written only when
every dataset is built.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling gen_* modules

import gen_clinic  # noqa: E402
import gen_corpus  # noqa: E402
import gen_summarization  # noqa: E402
import gen_superglue  # noqa: E402
from gen_datasheets import DATASHEETS  # noqa: E402

BUILDERS = {"public_corpus": gen_corpus.build, "clinic_notes": gen_clinic.build,
            "superglue": gen_superglue.build, "summarization": gen_summarization.build}
DESCRIPTIONS = {
    "public_corpus": "public English text in twelve domains (tokenizer, pretraining, attackers), "
                     "and public medical text (continued pretraining)",
    "clinic_notes": "the private data: synthetic patient notes at four non-IID sites, with "
                    "entity spans, triage labels and summaries",
    "superglue": "BoolQ, RTE, COPA and CB in the official SuperGLUE schema",
    "summarization": "short news articles with highlights in the CNN/DailyMail schema",
}


def build(name: str, seed: int = 0) -> dict[str, str]:
    """Every file of one dataset, datasheet included: ``{path relative to its folder: text}``."""
    files = BUILDERS[name](seed)
    files["README.md"] = DATASHEETS[name](files, seed)
    return files


def index(seed: int) -> str:
    """The top-level ``README.md`` that lists the datasets."""
    rows = "\n".join(f"| [`{n}/`]({n}/README.md) | {d} |" for n, d in DESCRIPTIONS.items())
    return (
        "# The kit's datasets\n\nAll synthetic, all rebuilt byte for byte from one seed by "
        f"`generate.py` (standard library only):\n\n```\npython datasets/generate.py --seed {seed}"
        "\n```\n\nNothing here was downloaded or copied, and no real person's record is in it. "
        "Each folder has a datasheet (what it is, how it was made, fields, sizes, intended use, "
        "limitations). `tests/test_datasets.py` checks that regenerating gives the same bytes.\n\n"
        "| dataset | what |\n|---|---|\n" + rows + "\n\n"
        "The generator is split by dataset: `gen_corpus.py` (with `gen_corpus_extra.py`, the "
        "fact sentences in `gen_facts.py` and the medical text in `gen_medical.py`), "
        "`gen_clinic.py`, `gen_superglue.py` and "
        "`gen_summarization.py`; public word lists are in `gen_lexicon.py`, shared helpers in "
        "`gen_common.py`, the datasheets in `gen_datasheets.py`. `generate.py` is the only entry "
        "point. The real benchmarks "
        "(SuperGLUE, CNN/DailyMail) load through the same loaders when you have them.\n"
    )


def build_all(names: list[str], seed: int = 0) -> dict[str, str]:
    """Files of the named datasets, keyed by path relative to the output folder."""
    files = {f"{n}/{path}": text for n in names for path, text in build(n, seed).items()}
    if sorted(names) == sorted(BUILDERS):
        files["README.md"] = index(seed)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--only", default=",".join(BUILDERS),
                        help="comma-separated dataset names (default: all)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files under --out instead of writing them")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {sorted(BUILDERS)}")
    start = time.perf_counter()
    files = build_all(names, args.seed)
    differ = []
    for path, text in sorted(files.items()):
        target = args.out / path
        data = text.encode("utf-8")
        if args.check:
            if not target.is_file() or target.read_bytes() != data:
                differ.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    total = sum(len(t.encode("utf-8")) for t in files.values())
    verb = "checked" if args.check else "wrote"
    print(f"{verb} {len(files)} files, {total / 1e6:.1f} MB, in "
          f"{time.perf_counter() - start:.1f} s (seed {args.seed})")
    for path in differ:
        print(f"DIFFERS: {path}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
