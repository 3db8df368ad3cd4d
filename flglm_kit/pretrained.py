"""The shipped tokenizer and pretrained tiny GLM, loaded offline, and the held-out evaluation.

``flglm_kit/assets/tiny-glm/`` holds a byte-level BPE tokenizer (4,096 tokens; ``<pad>`` = 0,
``<bos>`` = 1, ``<eos>`` = 2, ``<sep>`` = 3) and a ~4M-parameter ``GlmForCausalLM`` (6 decoder
layers, untied LM head) pretrained on ``datasets/public_corpus`` (``train.txt``, then a few
minutes more with its public medical text mixed in). Both are built by

    python scripts/train_tokenizer.py && python scripts/pretrain_tiny_glm.py
    python scripts/pretrain_tiny_glm.py --continue-from flglm_kit/assets/tiny-glm \
        --steps 400 --lr 5e-4 --warmup 20 --threads 1 --max-minutes 12

and described, with their numbers, in ``assets/tiny-glm/README.md`` and ``card.json``.

The evaluation here is the one the model card reports, so the card, the pretraining script
and the tests share a single definition:

1. every non-blank line of the text file is one document, encoded as ``<bos> doc <eos>``
   (no other special token); the documents are concatenated into one stream;
2. the stream is cut to its first ``max_tokens`` tokens (all of it when ``None``), then into
   consecutive, non-overlapping windows of ``seq_len`` tokens; a shorter last window is kept
   when it has at least two tokens;
3. each window is scored on its own: every token but the window's first is predicted from
   the tokens before it in that window; perplexity = exp(mean negative log-likelihood).

The card also reports how well the model meets the *private* domain before any fine-tuning:
:func:`answer_loss`, the mean next-token loss on the answer tokens of the clinic notes as the
fine-tuning collation formats them (``<bos> Note: ... Summary: <sep> answer <eos>``), i.e. the
loss of fine-tuning's first step. Uniform guessing over 4,096 tokens scores ln 4096 = 8.32.

Introduced in notebook 01 (used from notebook 02 on).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from flglm_kit.data.records import read_text
from flglm_kit.data.tasks import Example
from flglm_kit.device import get_device
from flglm_kit.losses import next_token_loss, supervised_tokens

__all__ = [
    "ASSETS_DIR",
    "CHECKSUMMED_FILES",
    "REBUILD_COMMAND",
    "RESTORE_COMMAND",
    "file_checksums",
    "load_pretrained",
    "pack_documents",
    "heldout_perplexity",
    "unigram_perplexity",
    "answer_loss",
    "CLINIC_LOSS_EXAMPLES",
]

#: Where the shipped tokenizer and model live.
ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "tiny-glm"
#: How to rebuild them from the repository root.
REBUILD_COMMAND = ("python scripts/train_tokenizer.py && python scripts/pretrain_tiny_glm.py && "
                   "python scripts/pretrain_tiny_glm.py --continue-from flglm_kit/assets/tiny-glm "
                   "--steps 400 --lr 5e-4 --warmup 20 --threads 1 --max-minutes 12")
#: How to restore the committed ones from the repository root.
RESTORE_COMMAND = "git checkout flglm_kit/assets"
#: The files whose SHA-256 the model card records (``card.json``, key ``"sha256"``).
CHECKSUMMED_FILES = ("config.json", "generation_config.json", "model.safetensors",
                     "tokenizer.json", "tokenizer_config.json")
_REQUIRED = ("tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors")


def _check_files(folder: Path, *, shipped: bool) -> None:
    """Raise a FileNotFoundError naming the first missing file (and how to rebuild it)."""
    for name in _REQUIRED:
        if not (folder / name).is_file():
            hint = f"; rebuild the shipped assets with `{REBUILD_COMMAND}`" if shipped else ""
            raise FileNotFoundError(f"{folder / name} is missing{hint}")


def file_checksums(folder: str | Path) -> dict[str, str]:
    """SHA-256 of each of :data:`CHECKSUMMED_FILES` present in ``folder``: what the card records.

    Args:
        folder: a model folder in ``save_pretrained`` layout.

    Returns:
        ``{file name: hex digest}``, for the files that exist.

    Example:
        >>> sums = file_checksums(ASSETS_DIR)
        >>> sorted(sums) == sorted(CHECKSUMMED_FILES), len(sums["model.safetensors"])
        (True, 64)
    """
    folder = Path(folder)
    return {name: _sha256(folder / name) for name in CHECKSUMMED_FILES if (folder / name).is_file()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_checksums(folder: Path, *, shipped: bool) -> None:
    """Compare ``folder``'s files with the SHA-256s in its ``card.json`` (if it records any).

    The shipped folder must have them; another folder is checked only when its card has them.
    """
    card_path = folder / "card.json"
    how = (f"restore the shipped files with `{RESTORE_COMMAND}` or rebuild them with "
           f"`{REBUILD_COMMAND}`" if shipped else "re-save or re-download the folder")
    if not card_path.is_file():
        if shipped:
            raise FileNotFoundError(f"{card_path} is missing, so the shipped weights cannot be "
                                    f"checked; {how}")
        return
    expected = json.loads(card_path.read_text(encoding="utf-8")).get("sha256", {})
    if shipped and not expected:
        raise ValueError(f"{card_path} records no 'sha256' checksums; {how}")
    for name, want in sorted(expected.items()):
        got = _sha256(folder / name) if (folder / name).is_file() else "(file missing)"
        if got != want:
            raise ValueError(f"{folder / name} does not match the model card: SHA-256 expected "
                             f"{want}, got {got}; the file is corrupt or was changed; {how}")


def _check_finite(model: torch.nn.Module, source: str) -> None:
    """Raise a ValueError naming the first parameter that holds a NaN or an infinity."""
    for name, param in model.named_parameters():
        bad = int((~torch.isfinite(param.detach())).sum())
        if bad:
            raise ValueError(f"{source}: parameter {name!r} has {bad} non-finite value(s) "
                             f"(NaN or inf) of {param.numel()}; the weights file is corrupt or the "
                             "model diverged when it was trained; load an intact copy")


def load_pretrained(
    path: str | Path | None = None,
    *,
    hub_id: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedTokenizerFast, PreTrainedModel]:
    """Load a tokenizer and causal LM: the kit's shipped tiny GLM, a local folder, or a hub model.

    Nothing goes online unless ``hub_id`` is given: a string ``path`` is always a local folder,
    so a mistyped folder name fails at once, naming the path, instead of being sent to the hub.

    Args:
        path: ``None`` (default) loads ``flglm_kit/assets/tiny-glm`` strictly offline, after
            checking every file's SHA-256 against ``card.json``. Otherwise a local folder in
            ``save_pretrained`` layout with ``model.safetensors`` (its ``card.json``, if it
            has checksums, is checked too).
        hub_id: a Hugging Face hub id such as ``"THUDM/glm-4-9b"``, the one way to download.
            Only safetensors weights are accepted (no pickled ``.bin``) and no remote code runs.
        device: where to put the model; ``None`` picks :func:`flglm_kit.get_device`.
        dtype: parameter dtype of the model (float32 by default).

    Returns:
        ``(tokenizer, model)``: a fast tokenizer and the model in eval mode. For the shipped
        assets the model is a ``GlmForCausalLM``; for a folder or hub id, whatever causal-LM
        class its config names.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names the resolved path and how
            to load from the hub), or a required file of it or of the shipped assets is missing
            (for the shipped assets, with the rebuild command).
        ValueError: both ``path`` and ``hub_id`` given; a file does not match the card's
            SHA-256 (file, expected and actual digests, how to restore it); or a loaded
            parameter holds NaN or inf (the first such tensor is named).
        TypeError: the hub model's tokenizer is not a fast tokenizer.

    Introduced in notebook 01.

    Example:
        >>> tokenizer, model = load_pretrained(device="cpu")
        >>> tokenizer.convert_tokens_to_ids(["<pad>", "<bos>", "<eos>", "<sep>"])
        [0, 1, 2, 3]
        >>> type(model).__name__, model.config.num_hidden_layers
        ('GlmForCausalLM', 6)
    """
    if path is not None and hub_id is not None:
        raise ValueError("pass either path (a local folder) or hub_id (a hub model), not both")
    if hub_id is not None:
        tokenizer, model = _from_hub(hub_id, dtype)
        source = f"hub model {hub_id!r}"
    else:
        folder = ASSETS_DIR if path is None else _local_folder(path)
        _check_files(folder, shipped=path is None)
        _verify_checksums(folder, shipped=path is None)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
        with _no_loading_bar():  # a local load takes a moment; its bar froze at 0 % in saved notebooks
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=dtype, local_files_only=True, use_safetensors=True)
        source = str(folder)
    _check_finite(model, source)
    target = torch.device(device) if device is not None else get_device()
    torch.nn.Module.to(model, target)  # PreTrainedModel.to's decorated signature confuses mypy
    return tokenizer, model.eval()


@contextmanager
def _no_loading_bar() -> Iterator[None]:
    """Turn transformers' progress bars off for the block, then back to what they were."""
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _local_folder(path: str | Path) -> Path:
    """``path`` as an existing folder, or a FileNotFoundError that says how to use the hub."""
    folder = Path(path).expanduser()
    if not folder.exists():
        text = str(path)
        hub_like = text.count("/") == 1 and not text.startswith((".", "~", "/"))
        example = text if hub_like else "org/name"
        raise FileNotFoundError(
            f"no such folder: {folder.resolve()}; load_pretrained reads a path as a local folder "
            f"only (check the name); a hub model is loaded with load_pretrained(hub_id={example!r})")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder.resolve()} is not a folder: pass the folder that "
                                "holds config.json and model.safetensors")
    return folder


def _from_hub(hub_id: str, dtype: torch.dtype) -> tuple[PreTrainedTokenizerFast, PreTrainedModel]:
    """Tokenizer and model of a hub id (may download): safetensors only, no remote code."""
    tokenizer = AutoTokenizer.from_pretrained(hub_id)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(f"hub model {hub_id!r} has a {type(tokenizer).__name__}; the kit needs "
                        "a fast (tokenizers) tokenizer")
    model = AutoModelForCausalLM.from_pretrained(hub_id, dtype=dtype, use_safetensors=True)
    return tokenizer, model


def pack_documents(
    tokenizer: PreTrainedTokenizerBase, text_path: str | Path, *, max_tokens: int | None = None
) -> torch.Tensor:
    """Encode every line of ``text_path`` as ``<bos> doc <eos>`` and concatenate them.

    This is the stream that pretraining samples from and that evaluation cuts into windows.

    Args:
        tokenizer: a tokenizer with ``bos_token_id`` and ``eos_token_id``.
        text_path: UTF-8 text, one document per line (blank lines are skipped).
        max_tokens: keep only the first ``max_tokens`` tokens of the stream.

    Returns:
        A 1-D ``torch.long`` tensor of token ids.

    Raises:
        ValueError: if the tokenizer lacks a bos or eos token.
        flglm_kit.data.DataError: if the file is missing or not UTF-8 (line and byte named).

    Example:
        >>> import tempfile; tokenizer, _ = load_pretrained(device="cpu")
        >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        ...     _ = f.write("The rain stopped.\\n\\nThe bus was late.\\n")
        >>> stream = pack_documents(tokenizer, f.name)
        >>> tokenizer.decode(stream)
        '<bos>The rain stopped.<eos><bos>The bus was late.<eos>'
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError("the tokenizer needs a bos_token and an eos_token")
    lines = read_text(Path(text_path)).splitlines()
    docs = [line for line in lines if line.strip()]
    ids: list[int] = []
    # Documents a chunk at a time, so that max_tokens also bounds the tokenizing.
    for start in range(0, len(docs), _DOCS_PER_CALL):
        for doc_ids in tokenizer(docs[start:start + _DOCS_PER_CALL], add_special_tokens=False)["input_ids"]:
            ids.extend([bos, *doc_ids, eos])
            if max_tokens is not None and len(ids) >= max_tokens:
                return torch.tensor(ids[:max_tokens], dtype=torch.long)
    return torch.tensor(ids, dtype=torch.long)


_DOCS_PER_CALL = 256  # documents per batched tokenizer call in pack_documents


def _windows(stream: torch.Tensor, seq_len: int) -> Iterator[torch.Tensor]:
    """Consecutive non-overlapping windows; a last window shorter than 2 tokens is dropped."""
    for start in range(0, stream.numel(), seq_len):
        window = stream[start : start + seq_len]
        if window.numel() >= 2:
            yield window


@torch.no_grad()
def heldout_perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text_path: str | Path,
    *,
    seq_len: int = 128,
    max_tokens: int | None = None,
    batch_size: int = 32,
) -> float:
    """Perplexity of ``model`` on ``text_path`` by the procedure in this module's docstring.

    Args:
        model: a causal LM (put in eval mode for the duration; its device is used).
        tokenizer: the model's tokenizer.
        text_path: held-out text, one document per line.
        seq_len: window length in tokens (128, as in pretraining).
        max_tokens: evaluate only the first ``max_tokens`` tokens of the packed stream.
        batch_size: windows per forward pass (does not change the result beyond float noise).

    Returns:
        ``exp`` of the mean next-token negative log-likelihood over all scored tokens.

    Raises:
        ValueError: if the text yields no window of at least two tokens.

    Example:
        >>> import tempfile; tokenizer, model = load_pretrained(device="cpu")
        >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        ...     _ = f.write("Walked the mill pond near Ashenford on a fierce westerly wind.\\n")
        >>> 1.0 < heldout_perplexity(model, tokenizer, f.name) < 20.0  # corpus-like text
        True
    """
    device = next(model.parameters()).device
    windows = list(_windows(pack_documents(tokenizer, text_path, max_tokens=max_tokens), seq_len))
    if not windows:
        raise ValueError(f"{text_path} gives no window of at least two tokens")
    was_training = model.training
    model.eval()
    total_nll, count = 0.0, 0
    full = [w for w in windows if w.numel() == seq_len]
    batches = [torch.stack(full[i : i + batch_size]) for i in range(0, len(full), batch_size)]
    batches += [w[None] for w in windows if w.numel() != seq_len]  # the short last window
    for batch in batches:
        batch = batch.to(device)  # (B, T)
        logits = model(input_ids=batch).logits.float()  # (B, T, V)
        total_nll += float(next_token_loss(logits, batch, reduction="sum"))  # the window's own labels
        count += supervised_tokens(batch)  # B * (T-1): every token but each window's first
    model.train(was_training)
    return math.exp(total_nll / count)


#: The clinic-notes examples the card's starting loss is measured on (split, task, count).
CLINIC_LOSS_EXAMPLES = ("validation", "summary", 200)


@torch.no_grad()
def answer_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    max_len: int = 256,
    batch_size: int = 32,
) -> float:
    """Mean next-token loss (nats per token) on the examples' answer tokens and ``<eos>``.

    The examples are encoded exactly as fine-tuning encodes them
    (:func:`flglm_kit.data.encode_example`: ``<bos> prompt <sep> answer <eos>``, loss on the
    answer only), so this is the loss the first fine-tuning step sees, averaged over tokens.

    Args:
        model: a causal LM (put in eval mode for the duration; its device is used).
        tokenizer: the model's tokenizer (with ``<pad>``, ``<bos>``, ``<eos>``, ``<sep>``).
        examples: labelled examples, e.g. from :func:`flglm_kit.data.load_clinic_notes`.
        max_len: token budget per example (prompts are cut from the start, as in fine-tuning).
        batch_size: examples per forward pass (does not change the result beyond float noise).

    Returns:
        The summed answer-token negative log-likelihood over the number of answer tokens.

    Raises:
        ValueError: if ``examples`` is empty.

    Introduced in the model card (``assets/tiny-glm/README.md``); planned for notebook 06.

    Example:
        >>> from flglm_kit.data import load_clinic_notes
        >>> tokenizer, model = load_pretrained(device="cpu")
        >>> notes = load_clinic_notes("validation")[:8]
        >>> answer_loss(model, tokenizer, notes) < math.log(len(tokenizer))  # beats uniform
        True
    """
    from flglm_kit.data import collate, encode_example, special_ids

    if not examples:
        raise ValueError("no examples to score")
    device = next(model.parameters()).device
    pad = special_ids(tokenizer).pad
    was_training = model.training
    model.eval()
    total_nll, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        chunk = [encode_example(ex, tokenizer, max_len=max_len)
                 for ex in examples[start:start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id=pad).items()}  # (B, T) each
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits.float()  # (B, T, V)
        total_nll += float(next_token_loss(logits, batch["labels"], reduction="sum"))
        count += supervised_tokens(batch["labels"])
    model.train(was_training)
    return total_nll / count


def unigram_perplexity(
    tokenizer: PreTrainedTokenizerBase,
    train_path: str | Path,
    text_path: str | Path,
    *,
    seq_len: int = 128,
    max_tokens: int | None = None,
) -> float:
    """The baseline the card compares against: token frequencies, no context at all.

    Token counts come from ``train_path`` packed by :func:`pack_documents`, with add-one
    smoothing over the whole vocabulary (``len(tokenizer)``); the scored tokens are exactly
    those :func:`heldout_perplexity` scores on ``text_path``.

    Returns:
        ``exp`` of the mean negative log-probability of the scored held-out tokens.
    """
    vocab = len(tokenizer)
    counts = torch.bincount(pack_documents(tokenizer, train_path), minlength=vocab).double()
    log_p = torch.log((counts + 1.0) / (counts.sum() + vocab))  # (V,)
    stream = pack_documents(tokenizer, text_path, max_tokens=max_tokens)
    targets = torch.cat([w[1:] for w in _windows(stream, seq_len)])
    return math.exp(float(-log_p[targets].mean()))
