"""Train the kit's byte-level BPE tokenizer on the public corpus, byte for byte reproducibly.

    python scripts/train_tokenizer.py

writes ``tokenizer.json``, ``tokenizer_config.json`` (and whatever else ``save_pretrained``
writes) into ``flglm_kit/assets/tiny-glm/``. Special tokens have fixed ids: ``<pad>`` = 0,
``<bos>`` = 1, ``<eos>`` = 2, ``<sep>`` = 3; the kit's task format is
``<bos> prompt <sep> answer <eos>``. Encoding adds no special token by itself (no
post-processor template): the data code places ``<bos>``/``<sep>``/``<eos>`` explicitly.

Training runs on one thread (``RAYON_NUM_THREADS=1``, set before ``tokenizers`` is imported)
so that retraining gives an identical ``tokenizer.json``; ``tests/test_pretrained.py``
retrains into a temporary folder and compares the bytes. ``--max-lines N`` trains on the first
N documents only (a quick smoke run; the shipped tokenizer uses the whole file).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Before tokenizers starts its thread pool: one worker makes the merge order reproducible.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "datasets" / "public_corpus" / "train.txt"
OUT = ROOT / "flglm_kit" / "assets" / "tiny-glm"

#: In id order: the trainer gives special tokens the first ids, in this order.
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<sep>"]
VOCAB_SIZE = 4096
MAX_LENGTH = 512  # the model's max_position_embeddings


def read_documents(path: Path, max_lines: int | None = None) -> list[str]:
    """One document per line, as the corpus README states; blank lines skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if max_lines is not None:
        lines = lines[:max_lines]
    return [line for line in lines if line.strip()]


def train(
    corpus: Path = CORPUS, *, vocab_size: int = VOCAB_SIZE, max_lines: int | None = None
) -> Tokenizer:
    """Train a GPT-2 style byte-level BPE (no prefix space, all 256 bytes in the alphabet)."""
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: decode(encode(text)) == text, with no leading space to strip.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(read_documents(corpus, max_lines), trainer=trainer)
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == i, f"{token} did not get id {i}"
    return tokenizer


def wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """The transformers tokenizer the kit loads: pad/bos/eos set, ``<sep>`` as extra special."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        sep_token="<sep>",
        extra_special_tokens=["<sep>"],
        model_max_length=MAX_LENGTH,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--max-lines", type=int, default=None, help="train on the first N docs")
    args = parser.parse_args(argv)

    tokenizer = train(args.corpus, vocab_size=args.vocab_size, max_lines=args.max_lines)
    args.out.mkdir(parents=True, exist_ok=True)
    wrap(tokenizer).save_pretrained(str(args.out))
    size = tokenizer.get_vocab_size()
    note = "" if size == args.vocab_size else f" (asked for {args.vocab_size})"
    print(f"vocab size {size}{note}; saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
