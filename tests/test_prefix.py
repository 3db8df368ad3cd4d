"""Deep prefix tuning (P-tuning v2) split three ways: the split equals peft's PrefixTuning on the
whole model (logits, loss, prefix gradients), only the prefix length crosses the wire, and a
training step moves the prefixes only, on both sides."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from conftest import adamw, make_parties

from flglm_kit.client import ServerError
from flglm_kit.federation import Federation
from flglm_kit.models import tiny_model
from flglm_kit.prefix import PrefixSpec, prefix_parameters, to_peft_prefix
from flglm_kit.split import split_model

P = 3


def _batch(padding: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, 512, (3, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    if padding == "right":
        mask[1, 6:], mask[2, 3:] = 0, 0
    else:
        mask[1, :2], mask[2, :5] = 0, 0
    return ids.masked_fill(mask == 0, 0), mask, ids.masked_fill(mask == 0, -100)


def _peft_model(model: torch.nn.Module, weight: torch.Tensor) -> Any:
    peft = pytest.importorskip("peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        wrapped = peft.get_peft_model(model, peft.PrefixTuningConfig(num_virtual_tokens=P, task_type="CAUSAL_LM"))
    with torch.no_grad():
        wrapped.prompt_encoder["default"].embedding.weight.copy_(weight)
    return wrapped


def _peft_grad_layout(split: Any) -> torch.Tensor:
    """The split's prefix gradients in peft's (P, layers * 2 * kv_heads * head_dim) layout."""
    grads = torch.cat([part.prefix.grad for part in (split.head, split.trunk, split.tail)])
    return grads.permute(3, 0, 1, 2, 4).reshape(P, -1)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_split_with_prefix_equals_peft_prefix_tuning(padding: str) -> None:
    model = tiny_model("glm")
    split = PrefixSpec(length=P, init_std=0.5).apply(split_model(model))
    peft_model = _peft_model(model, to_peft_prefix(split))
    ids, mask, labels = _batch(padding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft passes past_key_values, renamed in transformers 5
        expected = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
    expected.loss.backward()
    got = split(ids, mask, labels)
    assert got.loss is not None
    got.loss.backward()
    real = mask.bool()
    torch.testing.assert_close(got.logits[real], expected.logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=0)
    peft_grad = peft_model.prompt_encoder["default"].embedding.weight.grad
    assert peft_grad.abs().max() > 1e-4  # a gradient worth comparing
    torch.testing.assert_close(_peft_grad_layout(split), peft_grad, atol=1e-5, rtol=0)


def test_prefix_positions_start_after_the_prefix() -> None:
    """Real tokens sit at positions P, P + 1, ... as in peft: numbering them from 0 breaks the equality."""
    model = tiny_model("glm")
    split = PrefixSpec(length=P, init_std=0.5).apply(split_model(model))
    ids, mask, labels = _batch("right")
    right = split(ids, mask, labels).logits
    for part in (split.head, split.trunk, split.tail):
        run = part.run_layers
        part.run_layers = (lambda h, s, _run=run, **kw: _run(h, s, position_ids=torch.arange(h.shape[1])[None], **kw))
    assert (split(ids, mask, labels).logits - right).abs().max() > 1e-4


def test_apply_freezes_the_backbone_and_counts_prefix_parameters() -> None:
    split = PrefixSpec(length=P).apply(split_model(tiny_model("glm")))
    trainable = [n for n, p in split.named_parameters() if p.requires_grad]
    assert trainable == ["head.prefix", "trunk.prefix", "tail.prefix"]
    per_layer = 2 * 2 * P * 16  # (K, V) x kv_heads x P x head_dim
    assert prefix_parameters(split) == {"head": per_layer, "trunk": 2 * per_layer, "tail": per_layer}
    assert prefix_parameters(split_model(tiny_model("glm"))) == {"head": 0, "trunk": 0, "tail": 0}
    with pytest.raises(ValueError, match="length"):
        PrefixSpec(length=0)
    with pytest.raises(ValueError, match="init_std"):
        PrefixSpec(length=2, init_std=float("nan"))


def test_training_over_the_wire_moves_only_the_prefixes_on_both_sides() -> None:
    split = PrefixSpec(length=P).apply(split_model(tiny_model("glm")))  # before the parties build their optimizers
    fed = Federation(split, ["hospital-a"], aggregate=None, optimizer=adamw, record_server_view=True)
    client, server = fed.clients["hospital-a"], fed.server
    assert client.tail is not None
    parts = (("head", client.head), ("trunk", server.trunk), ("tail", client.tail))
    before = {name: {n: p.detach().clone() for n, p in part.named_parameters()} for name, part in parts}
    ids, mask, labels = _batch("right")
    with torch.no_grad():
        expected = fed.split(ids, mask, labels).loss
    assert client.train_step(ids, mask, labels) == pytest.approx(float(expected), abs=1e-5)
    for name, part in parts:
        moved = [n for n, p in part.named_parameters() if not torch.equal(p, before[name][n])]
        assert moved == ["prefix"], (name, moved)
    assert fed.seen[0].meta["prefix_len"] == P
    assert all("prefix" not in name for m in fed.seen for name in m.tensors)  # only the length crosses


def test_the_server_refuses_a_prefix_length_it_does_not_have() -> None:
    parties = make_parties(tiny_model("glm"))
    client = parties.clients[0]
    PrefixSpec(length=2).apply_part(client.head)  # the client thinks P = 2; the server's trunk has none
    ids, mask, _ = _batch("right")
    with pytest.raises(ServerError, match="prefix_len.*length 0"):
        client.train_step(ids, mask)
    PrefixSpec(length=2).apply_part(parties.server.trunk)
    assert client.forward(ids, mask).shape == (3, 8, 512)  # the tail has no prefix here: it still runs


def test_modules_to_save_train_whole_beside_the_prefixes_stay_on_the_client_and_are_averaged() -> None:
    spec = PrefixSpec(length=P, modules_to_save=("embed_tokens",))
    split = spec.apply(split_model(tiny_model("glm")))
    trainable = {n for n, p in split.named_parameters() if p.requires_grad}
    assert trainable == {"head.embed_tokens.weight", "head.prefix", "trunk.prefix", "tail.prefix"}
    with pytest.raises(ValueError, match="modules_to_save names 'embedding'.*embed_tokens"):
        PrefixSpec(length=P, modules_to_save=("embedding",)).apply(untouched := split_model(tiny_model("glm")))
    assert all(p.requires_grad for p in untouched.parameters())  # refused before anything changed
    with pytest.raises(ValueError, match="modules_to_save must be"):
        PrefixSpec(length=P, modules_to_save="embed_tokens")
    # Two clients, server averaging: the embeddings move, end equal on both, and never cross the wire.
    fed = Federation(split_model(tiny_model("glm")), ["a", "b"], peft=spec, optimizer=adamw, aggregate="server",
                     record_server_view=True)
    before = fed.clients["a"].head.embed_tokens.weight.detach().clone()
    trunk_before = {n: p.detach().clone() for n, p in fed.server.trunk.named_parameters()}
    ids, mask, labels = _batch("right")
    fed.train_round({"a": [(ids, mask, labels)], "b": [(ids.flip(0), mask.flip(0), labels.flip(0))]}, local_steps=1)
    a, b = (fed.clients[c].head.embed_tokens.weight for c in ("a", "b"))
    assert not torch.equal(a, before) and torch.equal(a, b)
    assert [n for n, p in fed.server.trunk.named_parameters() if not torch.equal(p, trunk_before[n])] == ["prefix"]
    activations = [m for m in fed.seen if m.kind != "client_update"]  # updates: the server aggregates
    assert activations and all("embed" not in name for m in activations for name in m.tensors)
