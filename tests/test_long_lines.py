"""A very long line in a data file costs bounded memory and gives the tokens it always gave.

Before, a prompt was tokenized whole and then truncated: one 50 MB line took about 8 GB (the
fast tokenizer keeps offsets and strings per token; measured: 315 MiB for a 2 MB line). Now a
long text is cut by characters first (flglm_kit.data.collate, module docstring).

Prepare / Execute / Assert.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

import flglm_kit.data  # noqa: F401  (loads the submodule looked up below)
from flglm_kit.data import (
    Example, TaskDataset, encode_example, encode_prompt, load_summarization, toy_tokenizer,
)
from flglm_kit.pretrained import ASSETS_DIR

collate_module = sys.modules["flglm_kit.data.collate"]  # flglm_kit.data.collate is the function

LINE_MB = 10  # old code: ~1.5 GB and ~25 s for the three encodings below
MAX_LEN = 128

PROBE = f"""
import json, resource, sys, time
from transformers import PreTrainedTokenizerFast
from flglm_kit.data import Example, TaskDataset, encode_example, encode_prompt
tokenizer = PreTrainedTokenizerFast.from_pretrained({str(ASSETS_DIR)!r}, local_files_only=True)
words = "the rain stopped and the bus was late again "
text = words * ({LINE_MB} * 10**6 // len(words))
encode_example(Example("warm up", "yes"), tokenizer, max_len=8)
scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
lengths = [len(encode_example(Example(text, "yes"), tokenizer, max_len={MAX_LEN})["input_ids"]),
           len(encode_example(Example(text, "yes"), tokenizer, max_len={MAX_LEN},
                              truncation="middle")["input_ids"]),
           len(encode_prompt(Example(text, ""), tokenizer, max_len={MAX_LEN})["input_ids"]),
           len(TaskDataset([Example(text, "no"), Example("short", "yes")], tokenizer,
                           max_len={MAX_LEN})[0]["input_ids"])]
try:
    encode_example(Example("q", text), tokenizer, max_len={MAX_LEN})
    answer_error = ""
except ValueError as err:
    answer_error = str(err)
seconds = time.perf_counter() - start
delta = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / scale / 1024
print(json.dumps(dict(chars=len(text), lengths=lengths, answer_error=answer_error,
                      seconds=seconds, peak_rss_delta_mib=delta)))
"""


def test_a_10_mb_line_is_encoded_in_bounded_memory_and_time() -> None:
    # Execute: in a fresh interpreter, so the peak RSS belongs to this work alone.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Assert: truncated to max_len, and well under the gigabytes the whole line used to take.
    assert result["peak_rss_delta_mib"] < 200, result
    assert result["seconds"] < 5, result
    assert result["chars"] >= LINE_MB * 10**6 - 100
    assert result["lengths"] == [MAX_LEN] * 4, result
    assert "its answer of 256+ tokens leaves no room" in result["answer_error"], result


def reference(monkeypatch: pytest.MonkeyPatch, chars_per_token: int, encode):
    """``encode()`` with a given CHARS_PER_TOKEN (10**9: the old, tokenize-everything path)."""
    monkeypatch.setattr(collate_module, "CHARS_PER_TOKEN", chars_per_token)
    return encode()


@pytest.mark.parametrize("truncation", ["left", "middle"])
def test_cutting_before_tokenizing_keeps_exactly_the_same_tokens(
    monkeypatch: pytest.MonkeyPatch, truncation: str
) -> None:
    # Prepare: real articles with the shipped tokenizer; CHARS_PER_TOKEN = 2 makes nearly every
    # article take the cut path at max_len = 64 (4 * 64 * 2 = 512 characters).
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(ASSETS_DIR), local_files_only=True)
    examples = load_summarization("validation")[:60]
    assert sum(len(ex.prompt) > 512 for ex in examples) >= 50

    def encode() -> list[dict[str, list[int]]]:
        items = [encode_example(ex, tokenizer, max_len=64, truncation=truncation) for ex in examples]
        return items + TaskDataset(examples, tokenizer, max_len=96, truncation=truncation).items

    # Execute / Assert
    assert reference(monkeypatch, 2, encode) == reference(monkeypatch, 10**9, encode)


def test_cutting_handles_whitespace_runs_and_tokens_that_cover_no_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: a word-level tokenizer drops whitespace entirely, so a long run of spaces gives no
    # token and forces the retry with a bigger piece; odd whitespace everywhere else.
    rng = random.Random(0)
    pieces = ["a", "b", "the", "  ", "\n", "\t", " \n ", "word" * 10]
    texts = [" " * 3000 + "a b c " * 50 + " " * 3000]
    texts += [rng.choice([" ", "", "\n"]).join(rng.choice(pieces) for _ in range(rng.randint(100, 900)))
              for _ in range(80)]
    tokenizer = toy_tokenizer(texts)
    examples = [Example(text, "a") for text in texts if text.strip()]

    def encode() -> list[dict[str, list[int]]]:
        return [encode_example(ex, tokenizer, max_len=24, truncation=t) for ex in examples
                for t in ("left", "middle")] + [encode_prompt(ex, tokenizer, max_len=24) for ex in examples]

    assert reference(monkeypatch, 1, encode) == reference(monkeypatch, 10**9, encode)


def test_tokenizer_is_never_given_the_whole_long_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # The memory claim, without measuring memory: no call tokenizes more than a bounded piece.
    tokenizer = toy_tokenizer(["x y z"])
    seen: list[int] = []
    real = collate_module._encode

    def spy(tok, texts):
        seen.extend(len(t) for t in texts)
        return real(tok, texts)

    monkeypatch.setattr(collate_module, "_encode", spy)
    text = "x y z " * 200_000  # 1.2 M characters
    enc = encode_example(Example(text, "z"), tokenizer, max_len=32)
    assert len(enc["input_ids"]) == 32
    assert max(seen) <= 4 * 32 * collate_module.CHARS_PER_TOKEN
