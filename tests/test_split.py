"""Split equals whole (DESIGN.md §4.7): logits, loss and every gradient, for each family."""

from __future__ import annotations

import pytest
import torch

from flglm_kit.models import FAMILIES, tiny_model
from flglm_kit.split import Spans, split_model

TOL = 1e-5
B, T = 3, 12


def _batch(padding: str, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (B, T), generator=g)
    if padding == "none":
        return input_ids, None, input_ids.clone()
    lengths = torch.tensor([T, T - 4, T - 7])
    mask = torch.zeros(B, T, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        if padding == "right":
            mask[row, :n] = 1
        else:
            mask[row, T - n:] = 1
    input_ids = input_ids.masked_fill(mask == 0, 0)
    labels = input_ids.masked_fill(mask == 0, -100)
    return input_ids, mask, labels


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("head_layers,tail_layers", [(0, 0), (1, 1), (2, 2), (0, 2), (2, 0), (1, 2)])
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_split_equals_whole(family, head_layers, tail_layers, padding):
    # Prepare: a tiny model with 5 blocks so that (2, 2) still leaves a trunk.
    model = tiny_model(family, seed=1, num_hidden_layers=5)
    split = split_model(model, head_layers=head_layers, tail_layers=tail_layers)
    input_ids, mask, labels = _batch(padding, model.config.vocab_size)

    # Execute
    whole = model(input_ids=input_ids, attention_mask=mask, labels=labels)
    whole.loss.backward()
    parts = split(input_ids, attention_mask=mask, labels=labels)
    parts.loss.backward()

    # Assert: logits on real tokens, loss, and every parameter's gradient.
    real = torch.ones(B, T, dtype=torch.bool) if mask is None else mask.bool()
    assert torch.allclose(parts.logits[real], whole.logits[real], atol=TOL, rtol=0)
    assert torch.allclose(parts.loss, whole.loss, atol=TOL, rtol=0)
    whole_params = dict(model.named_parameters())
    seen = set()
    for part_name in ("head", "trunk", "tail"):
        for name, p in getattr(split, part_name).named_parameters():
            original = split.original_name(part_name, name)
            seen.add(original)
            ref = whole_params[original].grad
            assert p.grad is not None and ref is not None, original
            assert torch.allclose(p.grad, ref, atol=TOL, rtol=0), original
    assert seen == set(whole_params)


def test_parts_own_their_parameters():
    model = tiny_model("glm")
    split = split_model(model)
    model_ptrs = {p.data_ptr() for p in model.parameters()}
    ptrs = {name: {p.data_ptr() for p in getattr(split, name).parameters()} for name in ("head", "trunk", "tail")}
    assert not (ptrs["trunk"] & (ptrs["head"] | ptrs["tail"]))
    assert not (model_ptrs & (ptrs["head"] | ptrs["trunk"] | ptrs["tail"]))


def test_tied_embeddings_stay_tied_on_the_client():
    model = tiny_model("qwen2", tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    split = split_model(model)
    assert split.tail.lm_head.weight is split.head.embed_tokens.weight
    assert split.head.embed_tokens.weight is not model.model.embed_tokens.weight
    with pytest.raises(ValueError, match="ties its LM head"):
        split_model(model, tail_on_server=True)


def test_tail_on_server_places_the_output_block_on_the_server():
    split = split_model(tiny_model("glm"), head_layers=0, tail_layers=0, tail_on_server=True)
    assert split.placement == {"input block": "client", "trunk": "server", "output block": "server"}
    assert "layers 0-3" in split.summary()


def test_unsupported_model_names_what_is_missing():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(TypeError, match="missing model.embed_tokens"):
        split_model(model)


@pytest.mark.parametrize("head_layers,tail_layers", [(-1, 1), (3, 3)])
def test_bad_layer_counts(head_layers, tail_layers):
    with pytest.raises(ValueError, match="head_layers"):
        split_model(tiny_model("glm"), head_layers=head_layers, tail_layers=tail_layers)


def test_spans_reject_gaps_and_bad_values():
    with pytest.raises(ValueError, match="row 1 has padding between real tokens"):
        Spans.from_attention_mask(torch.tensor([[1, 1, 1], [1, 0, 1]]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        Spans.from_attention_mask(torch.tensor([[2, 1, 1]]))
    spans = Spans(torch.tensor([0, 2]), torch.tensor([3, 3]), seq_len=4)
    with pytest.raises(ValueError, match="runs past"):
        spans.validate(2)
    with pytest.raises(ValueError, match="shape"):
        spans.validate(3)


def test_summary_shows_each_side():
    text = split_model(tiny_model("glm"), head_layers=1, tail_layers=1).summary()
    assert "input block" in text and "client" in text and "server" in text
    assert "layers 1-2" in text and "lm_head" in text


def test_an_empty_trunk_must_be_asked_for():
    model = tiny_model("glm")  # 4 blocks
    with pytest.raises(ValueError, match="allow_empty_trunk=True"):
        split_model(model, head_layers=2, tail_layers=2)
    split = split_model(model, head_layers=2, tail_layers=2, allow_empty_trunk=True)
    assert split.trunk.layer_indices == []


def test_every_part_carries_the_same_fingerprint_of_model_and_cut():
    split = split_model(tiny_model("glm"))
    prints = {split.fingerprint, split.head.fingerprint, split.trunk.fingerprint, split.tail.fingerprint}
    assert len(prints) == 1 and len(split.fingerprint) == 64
    assert split_model(tiny_model("glm", seed=7)).fingerprint == split.fingerprint  # weights are not in it
    assert split_model(tiny_model("glm", dtype=torch.float64)).fingerprint == split.fingerprint
    assert split_model(tiny_model("glm", num_hidden_layers=5)).fingerprint != split.fingerprint
    assert split_model(tiny_model("glm", vocab_size=256)).fingerprint != split.fingerprint
    assert split_model(tiny_model("glm"), head_layers=2).fingerprint != split.fingerprint
    assert split_model(tiny_model("glm"), tail_layers=0, tail_on_server=True).fingerprint != split.fingerprint
