"""The shipped tokenizer and pretrained tiny GLM, loaded offline, and the held-out evaluation.

``flglm_kit/assets/tiny-glm/`` holds a byte-level BPE tokenizer (4,096 tokens; ``<pad>`` = 0,
``<bos>`` = 1, ``<eos>`` = 2, ``<sep>`` = 3) and a ~4M-parameter ``GlmForCausalLM`` (6 decoder
layers, untied LM head) pretrained on ``datasets/public_corpus``. Both are built by

    python scripts/train_tokenizer.py && python scripts/pretrain_tiny_glm.py

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

Introduced in notebook 01 (used from notebook 02 on).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from flglm_kit.device import get_device

__all__ = [
    "ASSETS_DIR",
    "REBUILD_COMMAND",
    "load_pretrained",
    "pack_documents",
    "heldout_perplexity",
    "unigram_perplexity",
]

#: Where the shipped tokenizer and model live.
ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "tiny-glm"
#: How to rebuild them from the repository root.
REBUILD_COMMAND = "python scripts/train_tokenizer.py && python scripts/pretrain_tiny_glm.py"
_REQUIRED = ("tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors")


def _check_files(folder: Path, *, shipped: bool) -> None:
    """Raise a FileNotFoundError naming the first missing file (and how to rebuild it)."""
    for name in _REQUIRED:
        if not (folder / name).is_file():
            hint = f"; rebuild the shipped assets with `{REBUILD_COMMAND}`" if shipped else ""
            raise FileNotFoundError(f"{folder / name} is missing{hint}")


def _looks_like_path(path: str) -> bool:
    """A string no hub id could be: "/abs", "./rel", "~/x", "a/b/c", "C:\\x"."""
    return path.startswith(("/", ".", "~")) or path.count("/") > 1 or "\\" in path


def load_pretrained(
    path: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedTokenizerFast, PreTrainedModel]:
    """Load a tokenizer and causal LM: the kit's shipped tiny GLM, or one you name.

    Args:
        path: ``None`` (default) loads ``flglm_kit/assets/tiny-glm`` strictly offline. A local
            folder in ``save_pretrained`` layout is loaded from disk; any other string is taken
            as a Hugging Face hub id and may download (only then does the kit go online).
        device: where to put the model; ``None`` picks :func:`flglm_kit.get_device`.
        dtype: parameter dtype of the model (float32 by default).

    Returns:
        ``(tokenizer, model)``: a fast tokenizer and the model in eval mode. For the shipped
        assets the model is a ``GlmForCausalLM``; for a path or hub id, whatever causal-LM
        class its config names.

    Raises:
        FileNotFoundError: a local folder does not exist, or a required file of it or of the
            shipped assets is missing (the message names it and, for the shipped assets, the
            rebuild command).

    Example:
        >>> tokenizer, model = load_pretrained(device="cpu")
        >>> tokenizer.convert_tokens_to_ids(["<pad>", "<bos>", "<eos>", "<sep>"])
        [0, 1, 2, 3]
        >>> type(model).__name__, model.config.num_hidden_layers
        ('GlmForCausalLM', 6)
    """
    shipped = path is None
    if path is None:
        source = str(ASSETS_DIR)
        _check_files(ASSETS_DIR, shipped=True)
    elif isinstance(path, Path) or Path(path).expanduser().exists() or _looks_like_path(path):
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder (nor a hub id)")
        _check_files(folder, shipped=False)
        source = str(folder)
    else:
        source = path  # a hub id: the one case that may download
    tokenizer = PreTrainedTokenizerFast.from_pretrained(source, local_files_only=shipped)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=shipped)
    target = torch.device(device) if device is not None else get_device()
    torch.nn.Module.to(model, target)  # PreTrainedModel.to's decorated signature confuses mypy
    return tokenizer, model.eval()


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
    lines = Path(text_path).read_text(encoding="utf-8").splitlines()
    docs = [line for line in lines if line.strip()]
    ids: list[int] = []
    for doc_ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend([bos, *doc_ids, eos])
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


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
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),  # (B * (T-1), V)
            batch[:, 1:].reshape(-1),  # (B * (T-1),)
            reduction="sum",
        )
        total_nll += float(nll)
        count += batch[:, 1:].numel()
    model.train(was_training)
    return math.exp(total_nll / count)


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
