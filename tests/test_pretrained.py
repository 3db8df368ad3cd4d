"""The shipped tokenizer and tiny GLM: offline load, fixed special ids, the card's numbers hold.

Prepare: the committed assets under flglm_kit/assets/tiny-glm and their card.json. Execute:
load, encode, evaluate, generate, retrain the tokenizer. Assert against the card and the brief.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import flglm_kit.pretrained as pretrained
from flglm_kit.pretrained import ASSETS_DIR, heldout_perplexity, load_pretrained

ROOT = Path(__file__).resolve().parents[1]
CARD: dict[str, Any] = json.loads((ASSETS_DIR / "card.json").read_text())


@pytest.fixture(scope="module")
def loaded() -> tuple[Any, Any, float]:
    """Load once with every outgoing connection refused: proof that the default is offline."""
    real_connect = socket.socket.connect

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted while loading the shipped assets")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        tokenizer, model = load_pretrained(device="cpu")
        seconds = time.perf_counter() - start
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
    return tokenizer, model, seconds


def test_loads_offline_and_quickly(loaded: tuple[Any, Any, float]) -> None:
    tokenizer, model, seconds = loaded
    assert type(model).__name__ == "GlmForCausalLM"
    assert not model.training
    assert seconds < 10.0, f"loading took {seconds:.1f} s"  # a sanity bound, not a benchmark


def test_special_token_ids_are_fixed(loaded: tuple[Any, Any, float]) -> None:
    tokenizer, model, _ = loaded
    ids = tokenizer.convert_tokens_to_ids(["<pad>", "<bos>", "<eos>", "<sep>"])
    assert ids == [0, 1, 2, 3]
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.sep_token_id == 3 and "<sep>" in tokenizer.all_special_tokens
    cfg = model.config
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    assert len(tokenizer) == cfg.vocab_size == 4096


def test_encode_decode_round_trip(loaded: tuple[Any, Any, float]) -> None:
    tokenizer, _, _ = loaded
    text = "Heavy rain closed the bridge at Ashenford on Friday; 12 volunteers helped!"
    ids = tokenizer(text)["input_ids"]
    assert 0 < len(ids) < len(text) // 2  # real merges, no special token added
    assert min(ids) > 3
    assert tokenizer.decode(ids) == text
    framed = [tokenizer.bos_token_id, *ids, tokenizer.sep_token_id, tokenizer.eos_token_id]
    assert tokenizer.decode(framed, skip_special_tokens=True) == text


def test_model_shape_for_splitting(loaded: tuple[Any, Any, float]) -> None:
    _, model, _ = loaded
    params = sum(p.numel() for p in model.parameters())
    assert model.config.num_hidden_layers >= 6  # client keeps up to 3 + 1 blocks, server a trunk
    assert 2_000_000 <= params <= 5_000_000
    assert params == CARD["parameters"]
    assert model.config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_heldout_perplexity_matches_card_and_beats_unigram(
    loaded: tuple[Any, Any, float],
) -> None:
    tokenizer, model, _ = loaded
    ev = CARD["eval"]
    ppl = heldout_perplexity(
        model, tokenizer, ROOT / ev["text"], seq_len=ev["seq_len"], max_tokens=ev["max_tokens"]
    )
    assert ppl == pytest.approx(CARD["heldout_perplexity"], rel=0.05)
    assert ppl < 0.5 * CARD["unigram_perplexity"]


def test_greedy_completion_looks_like_english(loaded: tuple[Any, Any, float]) -> None:
    tokenizer, model, _ = loaded
    prompt = "Heavy rain is expected on Friday, and the council"
    input_ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(prompt)["input_ids"]]])
    out = model.generate(
        input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=20, do_sample=False
    )
    text = tokenizer.decode(out[0, input_ids.shape[1] :], skip_special_tokens=True)
    assert text.strip(), "empty completion"
    letters = sum(ch.isascii() and (ch.isalpha() or ch == " ") for ch in text)
    assert letters / len(text) > 0.8, text


def test_card_describes_the_shipped_weights() -> None:
    weights = ASSETS_DIR / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == CARD["model_sha256"]
    readme = (ASSETS_DIR / "README.md").read_text()
    assert CARD["model_sha256"] in readme and "## Fine-tuning sanity" in readme


def test_retraining_the_tokenizer_gives_the_same_bytes(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "train_tokenizer.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (ASSETS_DIR / name).read_bytes(), name


def test_missing_files_name_the_file_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_pretrained(tmp_path, device="cpu")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_pretrained(str(tmp_path / "absent"), device="cpu")  # a path, not a hub id
    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="scripts/pretrain_tiny_glm.py"):
        load_pretrained(device="cpu")
