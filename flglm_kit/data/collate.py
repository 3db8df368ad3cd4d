"""Causal-LM batches: ``<bos> prompt <sep> answer <eos>``, with the loss on the answer only.

Layout of one encoded example (``-100`` = no loss, the Hugging Face convention; the model shifts
labels by one itself)::

    input_ids   <bos>  p1 ... pn  <sep>  a1 ... am  <eos>
    labels      -100   -100 ...   -100   a1 ... am  <eos>

**The answer starts with a space** (:data:`ANSWER_PREFIX`), so its words are tokenized as in
running text, the way the prompt's cue ``Answer:`` would be followed in the pretraining corpus:
with the kit's byte-level BPE, " routine" is one token where "routine" at the start of a text is
three. :func:`decode_answer` strips it again.

**Truncation.** The answer is always kept whole (it is what the loss and the scores are about);
only the prompt is cut. By default the prompt loses tokens from its *start* (``"left"``): every
prompt of :mod:`flglm_kit.data.tasks` puts the passage first and the question and cue last, so
the start of the passage goes and the question survives. ``"middle"`` keeps the prompt's first
and last halves of the budget instead, for lead-heavy text such as news articles.

**A classification answer's position says nothing about the label.** An example with candidate
answers (``meta["choices"]``, as every classification task of :mod:`flglm_kit.data.tasks` sets)
reserves room for its *longest* candidate, whichever is its answer: every candidate then gets the
same prompt and starts at the same position. Without this, a truncated prompt fills ``max_len``
exactly, so ``<sep>`` sat two positions earlier before " emergency" (three tokens) than before
" routine" (one): a model learned the label from where the answer starts, reached a training
loss near 0.06 while scoring at chance, and scoring by log-likelihood then preferred whichever
candidate that shortcut favoured (every training note of the clinic triage task is truncated).

**Long texts are cut before they are tokenized.** Tokenizing a 50 MB line whole costs gigabytes
(the fast tokenizer keeps offsets and strings per token) only to keep ``max_len`` tokens of it.
A text longer than ``4 * max_len * CHARS_PER_TOKEN`` characters is therefore tokenized as its
first and last ``max_len * CHARS_PER_TOKEN`` characters or a little more (each cut moved to the
start of a whitespace run, where pre-tokenizers split anyway), and only the first and last
``max_len`` tokens of those are kept: exactly the tokens that either truncation could keep. A piece that
gives too few tokens (text of very long tokens, or mostly whitespace) is doubled and tokenized
again, so the result never depends on :data:`CHARS_PER_TOKEN`, only the work does.

Introduced in notebook 02.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from flglm_kit.data.tasks import Example
from flglm_kit.losses import IGNORE_INDEX

__all__ = [
    "ANSWER_PREFIX", "CHARS_PER_TOKEN", "IGNORE_INDEX", "SpecialIds", "TaskDataset", "collate",
    "decode_answer", "encode_example", "encode_prompt", "make_loader", "special_ids", "toy_tokenizer",
]

#: Characters per token assumed when cutting a long text before tokenizing it: the longest
#: token of the shipped vocabulary ("Ġrepresentatives") covers 16 bytes, so 16 characters always
#: give at least one token there. Other tokenizers may need a retry (see the module docstring).
CHARS_PER_TOKEN = 16
#: Put before every answer when tokenizing it (see the module docstring).
ANSWER_PREFIX = " "

Truncation = Literal["left", "middle"]
Encoded = dict[str, list[int]]


class SpecialIds(NamedTuple):
    """The four special token ids of the kit's format (0, 1, 2, 3 in the shipped tokenizer)."""

    pad: int
    bos: int
    eos: int
    sep: int


def special_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialIds:
    """Read ``<pad>``, ``<bos>``, ``<eos>`` and ``<sep>`` ids from a tokenizer.

    Args:
        tokenizer: a tokenizer with pad, bos and eos tokens set and ``<sep>`` in its vocabulary
            (as its ``sep_token`` or an extra special token).

    Returns:
        The ids as a :class:`SpecialIds`.

    Raises:
        ValueError: naming any special token the tokenizer lacks.

    Not called directly in a notebook yet.

    Example:
        >>> special_ids(toy_tokenizer(["a b"]))
        SpecialIds(pad=0, bos=1, eos=2, sep=3)
    """
    sep = tokenizer.sep_token_id
    if sep is None and "<sep>" in tokenizer.get_vocab():
        sep = tokenizer.convert_tokens_to_ids("<sep>")
    found = {"pad": tokenizer.pad_token_id, "bos": tokenizer.bos_token_id,
             "eos": tokenizer.eos_token_id, "sep": sep}
    missing = [name for name, value in found.items() if value is None]
    if missing:
        raise ValueError(f"the tokenizer has no {', '.join(missing)} token; the kit's format "
                         "needs <pad>, <bos>, <eos> and <sep>")
    return SpecialIds(**{k: int(v) for k, v in found.items()})


def _truncate(ids: list[int], budget: int, truncation: Truncation) -> list[int]:
    """At most ``budget`` prompt tokens, cut as the module docstring says."""
    if len(ids) <= budget:
        return ids
    if truncation == "left":
        return ids[len(ids) - budget:]
    if truncation == "middle":
        head = budget // 2
        return ids[:head] + ids[len(ids) - (budget - head):]
    raise ValueError(f"truncation must be 'left' or 'middle', got {truncation!r}")


def _assemble(prompt: list[int], answer: list[int], ids: SpecialIds, max_len: int,
              truncation: Truncation, what: str, room: int = 0) -> Encoded:
    """``room``: answer tokens to reserve at least (the longest candidate's; see the module docstring)."""
    if not answer:
        raise ValueError(f"{what} has no answer (an unlabelled test example?); "
                         "use encode_prompt to encode it for generation")
    budget = max_len - max(len(answer), room) - 3  # bos, sep, eos
    if budget < 1:
        size = f"{len(answer)}+" if len(answer) >= 2 * max_len else str(len(answer))  # cut: see _tokens
        longest = f" (its longest candidate answer: {room} tokens)" if room > len(answer) else ""
        raise ValueError(f"{what}: its answer of {size} tokens{longest} leaves no room for the "
                         f"prompt in max_len={max_len}; raise max_len")
    prompt = _truncate(prompt, budget, truncation)
    input_ids = [ids.bos, *prompt, ids.sep, *answer, ids.eos]
    labels = [IGNORE_INDEX] * (len(prompt) + 2) + [*answer, ids.eos]
    return {"input_ids": input_ids, "labels": labels}


def _name(example: Example) -> str:
    key = example.meta.get("id", example.meta.get("idx"))
    return "example" if key is None else f"example {key!r}"


def _tokens(tokenizer: PreTrainedTokenizerBase, texts: list[str], *, keep: int) -> list[list[int]]:
    """Each text's token ids; a long text gives only its first and last ``keep`` (module docstring).

    A cut result has exactly ``2 * keep`` ids, so any truncation to at most ``keep`` tokens of
    it equals that truncation of the whole text's ids.
    """
    limit = 4 * keep * CHARS_PER_TOKEN
    short = [i for i, text in enumerate(texts) if len(text) <= limit]
    out: list[list[int]] = [[] for _ in texts]
    # One batched call for the ordinary texts: the fast tokenizer is far quicker this way.
    for i, ids in zip(short, _encode(tokenizer, [texts[i] for i in short])):
        out[i] = ids
    for i, text in enumerate(texts):
        if len(text) > limit:
            out[i] = _ends(tokenizer, text, keep)
    return out


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    # The format places every special token itself, so the tokenizer must add none.
    return list(tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else []


_RUN_START = re.compile(r"(?<=\S)\s")  # the first character of a whitespace run


def _ends(tokenizer: PreTrainedTokenizerBase, text: str, keep: int) -> list[int]:
    """The first and last ``keep`` token ids of ``text``, tokenizing only pieces of its ends."""
    chars = keep * CHARS_PER_TOKEN
    while 4 * chars < len(text):
        # Cut where a whitespace run starts (a pre-token boundary), letting each piece grow by
        # up to ``chars``; a word longer than that is cut inside (it may tokenize differently
        # near the cut, which the one-token margin below usually absorbs).
        found = _RUN_START.search(text, chars, 2 * chars)
        head_end = found.start() if found else chars
        window = _RUN_START.finditer(text, len(text) - 2 * chars, len(text) - chars + 1)
        starts = [m.start() for m in window]
        tail_start = starts[-1] if starts else len(text) - chars
        head, tail = _encode(tokenizer, [text[:head_end], text[tail_start:]])
        if len(head) > keep and len(tail) > keep:
            return head[:keep] + tail[-keep:]
        chars *= 2  # too few tokens in a piece: long tokens, or mostly whitespace
    return _encode(tokenizer, [text])[0]


def _answer(text: str) -> str:
    return ANSWER_PREFIX + text if text else ""  # an empty answer stays empty: no target


def _choices(example: Example) -> tuple[str, ...]:
    """The example's candidate answers (``meta["choices"]``), or none."""
    return tuple(example.meta.get("choices") or ())


def _rooms(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *, keep: int) -> list[int]:
    """Per example, the token count of its longest candidate answer (0 without candidates)."""
    sets = {c for ex in examples if (c := _choices(ex))}
    longest = {}
    for choices in sets:
        longest[choices] = max(len(ids) for ids in _tokens(tokenizer, [_answer(c) for c in choices], keep=keep))
    return [longest.get(_choices(ex), 0) for ex in examples]


def decode_answer(token_ids: Sequence[int], tokenizer: PreTrainedTokenizerBase) -> str:
    """The answer text of generated ids: up to the first ``<eos>``, without :data:`ANSWER_PREFIX`.

    Args:
        token_ids: ids generated after ``<sep>`` (the prompt already removed).
        tokenizer: see :func:`special_ids`.

    Returns:
        The decoded answer, special tokens dropped and surrounding whitespace stripped.

    Planned for notebook 06.

    Example:
        >>> tok = toy_tokenizer(["no yes"])
        >>> decode_answer([6, 2, 5], tok)  # 'yes' <eos> 'no': stops at <eos>
        'yes'
    """
    ids = list(token_ids)
    eos = special_ids(tokenizer).eos
    ids = ids[:ids.index(eos)] if eos in ids else ids
    return str(tokenizer.decode(ids, skip_special_tokens=True)).strip()


def encode_example(example: Example, tokenizer: PreTrainedTokenizerBase, *, max_len: int,
                   truncation: Truncation = "left") -> Encoded:
    """Encode one example as ``<bos> prompt <sep> answer <eos>``, with loss on the answer only.

    Args:
        example: a formatted example with a non-empty answer.
        tokenizer: see :func:`special_ids`.
        max_len: the most tokens in the result; the prompt is cut to fit, the answer never. An
            example with ``meta["choices"]`` leaves room for its longest candidate, so that
            where the answer starts does not depend on which candidate it is (module docstring).
        truncation: ``"left"`` (drop the prompt's first tokens) or ``"middle"``.

    Returns:
        ``{"input_ids": [...], "labels": [...]}``, equal lengths, ``-100`` before the answer.

    Raises:
        ValueError: if the answer is empty, or the answer alone does not fit in ``max_len``.

    Not called directly in a notebook yet.

    Example:
        >>> tok = toy_tokenizer(["is it red ? yes no"])
        >>> enc = encode_example(Example("is it red ?", "yes"), tok, max_len=16)
        >>> tok.convert_ids_to_tokens(enc["input_ids"])
        ['<bos>', 'is', 'it', 'red', '?', '<sep>', 'yes', '<eos>']
        >>> enc["labels"]  # loss on 'yes' (id 9) and <eos> (id 2) only
        [-100, -100, -100, -100, -100, -100, 9, 2]
    """
    prompt, answer = _tokens(tokenizer, [example.prompt, _answer(example.answer)], keep=max_len)
    room = _rooms(tokenizer, [example], keep=max_len)[0]
    return _assemble(prompt, answer, special_ids(tokenizer), max_len, truncation, _name(example), room)


def encode_prompt(example: Example, tokenizer: PreTrainedTokenizerBase, *, max_len: int,
                  truncation: Truncation = "left") -> Encoded:
    """Encode only ``<bos> prompt <sep>``: the input from which a model generates the answer.

    Args:
        example: any example (its answer is ignored).
        tokenizer: see :func:`special_ids`.
        max_len: the most tokens in the result (leave room for the tokens to generate).
        truncation: as in :func:`encode_example`.

    Returns:
        ``{"input_ids": [...]}``; :func:`collate` pads such items without labels.

    Planned for notebook 06.

    Example:
        >>> tok = toy_tokenizer(["one two three"])
        >>> enc = encode_prompt(Example("one two three", ""), tok, max_len=4)
        >>> tok.convert_ids_to_tokens(enc["input_ids"])  # 'one' cut from the left
        ['<bos>', 'two', 'three', '<sep>']
    """
    if max_len < 3:
        raise ValueError(f"max_len must be at least 3 (<bos>, a prompt token, <sep>), "
                         f"got {max_len}")
    ids = special_ids(tokenizer)
    prompt = _truncate(_tokens(tokenizer, [example.prompt], keep=max_len)[0], max_len - 2, truncation)
    return {"input_ids": [ids.bos, *prompt, ids.sep]}


def collate(batch: Sequence[Mapping[str, Sequence[int]]], *, pad_id: int,
            padding_side: Literal["right", "left"] = "right") -> dict[str, torch.Tensor]:
    """Pad encoded examples into ``(B, T)`` tensors.

    Right padding suits training; left padding suits batched generation, where every row's
    last real token must sit at the same position. Either way each row's real tokens are one
    contiguous span, which is what :class:`flglm_kit.Spans` compresses for the wire.

    Args:
        batch: items from :func:`encode_example` (or :func:`encode_prompt`: no ``labels``).
        pad_id: the ``<pad>`` id, written where ``attention_mask`` is 0.
        padding_side: ``"right"`` or ``"left"``.

    Returns:
        ``input_ids``, ``attention_mask`` and (when the items have them) ``labels``, each a
        ``(B, T)`` int64 tensor; labels are ``-100`` on padding.

    Raises:
        ValueError: for an empty batch, a bad ``padding_side`` or mismatched lengths.

    Not called directly in a notebook yet.

    Example:
        >>> batch = [{"input_ids": [1, 5, 2], "labels": [-100, 5, 2]},
        ...          {"input_ids": [1, 2], "labels": [-100, 2]}]
        >>> out = collate(batch, pad_id=0, padding_side="left")
        >>> out["input_ids"].tolist(), out["attention_mask"].tolist(), out["labels"][1].tolist()
        ([[1, 5, 2], [0, 1, 2]], [[1, 1, 1], [0, 1, 1]], [-100, -100, 2])
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    with_labels = "labels" in batch[0]
    seq_len = max(len(item["input_ids"]) for item in batch)
    input_ids = torch.full((len(batch), seq_len), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(batch), seq_len), dtype=torch.long)  # (B, T)
    labels = torch.full((len(batch), seq_len), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, item in enumerate(batch):
        length = len(item["input_ids"])
        if ("labels" in item) != with_labels or (with_labels and len(item["labels"]) != length):
            raise ValueError(f"batch item {row}: labels missing or of a different length "
                             "than input_ids")
        cols = slice(0, length) if padding_side == "right" else slice(seq_len - length, seq_len)
        input_ids[row, cols] = torch.as_tensor(item["input_ids"], dtype=torch.long)
        attention_mask[row, cols] = 1
        if with_labels:
            labels[row, cols] = torch.as_tensor(item["labels"], dtype=torch.long)
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    return {**out, "labels": labels} if with_labels else out


class TaskDataset(Dataset[Encoded]):
    """Examples encoded once, up front, for a ``DataLoader`` (see :func:`make_loader`).

    Args:
        examples: formatted examples, each with an answer.
        tokenizer: see :func:`special_ids`.
        max_len: passed to :func:`encode_example`.
        truncation: passed to :func:`encode_example`.

    Not called directly in a notebook yet.

    Example:
        >>> ds = TaskDataset([Example("a b", "c")], toy_tokenizer(["a b c"]), max_len=8)
        >>> len(ds), ds[0]["input_ids"]
        (1, [1, 5, 6, 3, 7, 2])
    """

    def __init__(self, examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, *,
                 max_len: int, truncation: Truncation = "left") -> None:
        self.examples = list(examples)
        self.special = special_ids(tokenizer)
        self.max_len = max_len
        prompts = _tokens(tokenizer, [ex.prompt for ex in self.examples], keep=max_len)
        answers = _tokens(tokenizer, [_answer(ex.answer) for ex in self.examples], keep=max_len)
        rooms = _rooms(tokenizer, self.examples, keep=max_len)
        self.items = [
            _assemble(p, a, self.special, max_len, truncation, _name(ex), room)
            for ex, p, a, room in zip(self.examples, prompts, answers, rooms)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Encoded:
        return self.items[index]

    def __repr__(self) -> str:
        lengths = [len(item["input_ids"]) for item in self.items] or [0]
        return (f"TaskDataset({len(self)} examples, max_len={self.max_len}, "
                f"tokens per example {min(lengths)}-{max(lengths)})")


def make_loader(examples: Sequence[Example] | TaskDataset, tokenizer: PreTrainedTokenizerBase, *,
                batch_size: int, max_len: int, shuffle: bool = False, seed: int = 0,
                padding_side: Literal["right", "left"] = "right",
                truncation: Truncation = "left", drop_last: bool = False) -> DataLoader[Any]:
    """A ``DataLoader`` of padded causal-LM batches with its own seeded shuffling.

    Args:
        examples: formatted examples (or a ready :class:`TaskDataset`).
        tokenizer: see :func:`special_ids`.
        batch_size: examples per batch.
        max_len: passed to :func:`encode_example`.
        shuffle: reshuffle every epoch, from a ``torch.Generator`` seeded with ``seed`` (the
            global torch RNG is never touched, so two loaders with one seed give one order).
        seed: see ``shuffle``.
        padding_side: see :func:`collate`.
        truncation: see :func:`encode_example`.
        drop_last: drop a last, smaller batch.

    Returns:
        A loader yielding dicts of ``input_ids``, ``attention_mask``, ``labels`` (``(B, T)``).

    Introduced in notebook 02.

    Example:
        >>> tok = toy_tokenizer(["a b c d"])
        >>> examples = [Example("a", "b"), Example("c d", "a")]
        >>> loader = make_loader(examples, tok, batch_size=2, max_len=8)
        >>> next(iter(loader))["input_ids"].shape
        torch.Size([2, 6])
    """
    dataset = examples if isinstance(examples, TaskDataset) else \
        TaskDataset(examples, tokenizer, max_len=max_len, truncation=truncation)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, collate_fn=partial(
                          collate, pad_id=dataset.special.pad, padding_side=padding_side))


def toy_tokenizer(texts: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer with the kit's special tokens, for examples and tests.

    Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<sep>`` 3, ``<unk>`` 4, then the words of
    ``texts`` in order of first appearance. Use the shipped tokenizer for real work.

    Args:
        texts: the text whose words make the vocabulary.

    Returns:
        A ``PreTrainedTokenizerFast`` that adds no special tokens by itself.

    Not called directly in a notebook yet.

    Example:
        >>> toy_tokenizer(["hello world"])("hello there")["input_ids"]
        [5, 4]
    """
    from tokenizers import Tokenizer, models, pre_tokenizers  # only the toy needs them

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<bos>", "<eos>", "<sep>", "<unk>"])}
    for word in " ".join(texts).split():
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", sep_token="<sep>", unk_token="<unk>")
