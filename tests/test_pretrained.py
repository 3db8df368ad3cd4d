"""The shipped tokenizer and tiny GLM: offline load, fixed special ids, the card's numbers hold.

Prepare: the committed assets under flglm_kit/assets/tiny-glm and their card.json. Execute:
load, encode, evaluate, generate, retrain the tokenizer. Assert against the card and the brief.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import flglm_kit.pretrained as pretrained
from flglm_kit.data import DataError, load_clinic_notes, make_loader
from flglm_kit.models import tiny_model
from flglm_kit.pretrained import (
    ASSETS_DIR, CHECKSUMMED_FILES, answer_loss, file_checksums, heldout_perplexity,
    load_pretrained, pack_documents,
)

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


def test_the_model_meets_the_clinic_domain_better_than_uniform(
    loaded: tuple[Any, Any, float],
) -> None:
    # Prepare: the examples the card names; before continued pretraining on the public medical
    # text the shipped model scored ~11 nats/token here, worse than uniform guessing.
    tokenizer, model, _ = loaded
    clinic = CARD["clinic_answer_loss"]
    split, task, count = pretrained.CLINIC_LOSS_EXAMPLES
    assert (clinic["split"], clinic["task"], clinic["examples"]) == (split, task, count)
    examples = load_clinic_notes(split, task=task)[:count]
    # Execute
    loss = answer_loss(model, tokenizer, examples, max_len=clinic["max_len"])
    # Assert: where the card says, clearly below uniform, and far below the old checkpoint.
    assert loss == pytest.approx(clinic["after"], rel=0.05)
    assert clinic["uniform"] == pytest.approx(math.log(len(tokenizer)), abs=1e-3)
    assert loss < clinic["uniform"] - 2.0 and loss < clinic["before"] - 3.0


def test_medical_heldout_perplexity_matches_card(loaded: tuple[Any, Any, float]) -> None:
    tokenizer, model, _ = loaded
    med = CARD["medical_heldout_perplexity"]
    ppl = heldout_perplexity(model, tokenizer, ROOT / med["text"], seq_len=CARD["eval"]["seq_len"])
    assert ppl == pytest.approx(med["after"], rel=0.05)
    assert ppl < 0.01 * med["before"]  # the continued pretraining learned the new domain


def test_answer_loss_is_the_fine_tuning_loss_of_the_first_step(
    loaded: tuple[Any, Any, float],
) -> None:
    # The number the card reports is the loss train_centralized would see on these examples.
    tokenizer, model, _ = loaded
    examples = load_clinic_notes("validation", task="triage")[:4]
    batch = next(iter(make_loader(examples, tokenizer, batch_size=4, max_len=256)))
    with torch.no_grad():
        expected = float(model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"], labels=batch["labels"]).loss)
    assert answer_loss(model, tokenizer, examples, max_len=256) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="no examples"):
        answer_loss(model, tokenizer, [])


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
    assert sorted(CARD["sha256"]) == sorted(CHECKSUMMED_FILES)  # every file the loader reads
    assert CARD["sha256"] == file_checksums(ASSETS_DIR)
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
    with pytest.raises(FileNotFoundError, match="no such folder: .*absent"):
        load_pretrained(str(tmp_path / "absent"), device="cpu")
    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="scripts/pretrain_tiny_glm.py"):
        load_pretrained(device="cpu")


# --- corrupted weights --------------------------------------------------------------------------


def copy_assets(dest: Path, *, card: bool = True) -> Path:
    """The shipped asset folder copied to ``dest`` (optionally without card.json)."""
    shutil.copytree(ASSETS_DIR, dest)
    if not card:
        (dest / "card.json").unlink()
    return dest


def flip_tensor_bytes(weights: Path, tensor: str) -> None:
    """Overwrite the first 4 data bytes of ``tensor`` with 0xFF (a float32 NaN); header intact."""
    data = bytearray(weights.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    start = 8 + header_len + header[tensor]["data_offsets"][0]
    data[start : start + 4] = b"\xff\xff\xff\xff"
    weights.write_bytes(bytes(data))


def test_corrupted_weights_are_refused_naming_file_digests_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a copy of the assets whose weights have 4 tensor bytes flipped (the header is
    # untouched, so the file still parses: only the checksum can tell).
    folder = copy_assets(tmp_path / "tiny-glm")
    tensor = "model.layers.2.mlp.down_proj.weight"
    flip_tensor_bytes(folder / "model.safetensors", tensor)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        assert torch.isnan(f.get_tensor(tensor)).any()
    got = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    # Execute / Assert: loaded as the shipped model, the error names the file, both digests and
    # how to restore it.
    monkeypatch.setattr(pretrained, "ASSETS_DIR", folder)
    with pytest.raises(ValueError) as err:
        load_pretrained(device="cpu")
    message = str(err.value)
    assert "model.safetensors" in message and CARD["sha256"]["model.safetensors"] in message
    assert got in message
    assert "git checkout flglm_kit/assets" in message and pretrained.REBUILD_COMMAND in message
    # The same folder named by path is checked against its own card.json too.
    with pytest.raises(ValueError, match="does not match the model card"):
        load_pretrained(folder, device="cpu")


def test_shipped_assets_without_checksums_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pretrained, "ASSETS_DIR", copy_assets(tmp_path / "a", card=False))
    with pytest.raises(FileNotFoundError, match="card.json is missing"):
        load_pretrained(device="cpu")


def test_non_finite_parameters_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    # Prepare: a folder without a card (nothing to check sums against) and one NaN weight.
    folder = copy_assets(tmp_path / "no-card", card=False)
    flip_tensor_bytes(folder / "model.safetensors", "model.layers.2.mlp.down_proj.weight")
    # Execute / Assert
    with pytest.raises(ValueError, match=r"'model\.layers\.2\.mlp\.down_proj\.weight' has 1 "
                                         r"non-finite value"):
        load_pretrained(folder, device="cpu")


# --- local paths and hub ids --------------------------------------------------------------------


class Calls:
    """Stand-ins for the hub loaders that record their arguments and never go online."""

    def __init__(self) -> None:
        self.model: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.tokenizer: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def load_model(self, *args: Any, **kwargs: Any) -> Any:
        self.model.append((args, kwargs))
        return tiny_model("glm", seed=0, vocab_size=16)

    def load_tokenizer(self, *args: Any, **kwargs: Any) -> Any:
        self.tokenizer.append((args, kwargs))
        from flglm_kit.data import toy_tokenizer

        return toy_tokenizer(["a b c"])


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    monkeypatch.setattr(pretrained.AutoModelForCausalLM, "from_pretrained", calls.load_model)
    monkeypatch.setattr(pretrained.AutoTokenizer, "from_pretrained", calls.load_tokenizer)
    monkeypatch.setattr(pretrained.PreTrainedTokenizerFast, "from_pretrained", calls.load_tokenizer)
    return calls


def test_a_mistyped_folder_is_an_error_naming_the_path_not_a_download(
    hub: Calls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "org/name" that is not a folder here: before, it went to the hub and failed much later.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained("THUDM/glm-4-9bb", device="cpu")
    message = str(err.value)
    assert str(tmp_path / "THUDM" / "glm-4-9bb") in message  # the resolved path
    assert "load_pretrained(hub_id='THUDM/glm-4-9bb')" in message
    with pytest.raises(FileNotFoundError, match="hub_id='org/name'"):
        load_pretrained("my_checkpoint", device="cpu")
    assert hub.model == [] and hub.tokenizer == []  # nothing was asked of the hub


def test_hub_loading_is_explicit_and_safetensors_only(hub: Calls) -> None:
    tokenizer, model = load_pretrained(hub_id="THUDM/glm-4-9b", device="cpu")
    assert not model.training
    (args, kwargs), = hub.model
    assert args == ("THUDM/glm-4-9b",)
    assert kwargs["use_safetensors"] is True  # never a pickled .bin
    assert not kwargs.get("trust_remote_code") and not kwargs.get("local_files_only")
    (args, kwargs), = hub.tokenizer
    assert args == ("THUDM/glm-4-9b",) and not kwargs.get("trust_remote_code")
    with pytest.raises(ValueError, match="not both"):
        load_pretrained("a", hub_id="b")


def test_local_folders_load_offline_from_safetensors(hub: Calls) -> None:
    load_pretrained(ASSETS_DIR, device="cpu")
    (args, kwargs), = hub.model
    assert kwargs["use_safetensors"] is True and kwargs["local_files_only"] is True
    assert hub.tokenizer[0][1]["local_files_only"] is True


def test_pack_documents_names_a_line_that_is_not_utf8(
    loaded: tuple[Any, Any, float], tmp_path: Path
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_bytes(b"First doc.\nSecond caf\xe9 doc.\n")
    with pytest.raises(DataError, match=r"corpus.txt line 2: not valid UTF-8 at byte offset 10"):
        pack_documents(loaded[0], text)


def test_pack_documents_stops_tokenizing_at_max_tokens(
    loaded: tuple[Any, Any, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer = loaded[0]
    corpus = ROOT / "datasets" / "public_corpus" / "train.txt"
    whole = pack_documents(tokenizer, corpus, max_tokens=None)
    seen: list[int] = []
    real_call = type(tokenizer).__call__

    def counting(self: Any, texts: Any, **kwargs: Any) -> Any:
        seen.append(len(texts))
        return real_call(self, texts, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    head = pack_documents(tokenizer, corpus, max_tokens=1000)
    assert torch.equal(head, whole[:1000])
    assert sum(seen) <= 256  # one chunk of documents, not the whole corpus
