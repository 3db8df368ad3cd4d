"""LoRA on a split (flglm_kit/lora.py): split equals whole with adapters, only adapters train, clear errors."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import transformers
from peft import inject_adapter_in_model
from torch import nn

from conftest import padded_batch

from flglm_kit.client import SplitClient
from flglm_kit.crypto import Identity
from flglm_kit.families import SUPPORTED
from flglm_kit.federation import Federation
from flglm_kit.lora import (LORA_TARGETS, LoraSpec, adapter_state, is_adapter, load_adapter_state, lora_targets,
                            trainable_summary)
from flglm_kit.models import tiny_model
from flglm_kit.optim import only_trainable, trainable_parameters, unique_parameters
from flglm_kit.server import SplitServer
from flglm_kit.split import SplitModel, split_model
from flglm_kit.transport import InProcessTransport

from conftest import adamw, batches

TOL = 1e-5
B, T = 3, 12
PARTS = ("head", "trunk", "tail")
ROOT = Path(__file__).resolve().parents[1]


def _families_script():
    """scripts/supported_families.py, loaded as tests/test_families.py loads it (its tiny configs)."""
    if "supported_families" not in sys.modules:
        spec = importlib.util.spec_from_file_location("supported_families", ROOT / "scripts" / "supported_families.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["supported_families"] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
    return sys.modules["supported_families"]


def _batch(padding: str, vocab: int):
    return padded_batch(padding, vocab, B, T)


def _randomize_adapters(module: nn.Module, seed: int = 0) -> None:
    """Non-zero values in every LoRA tensor: lora_B starts at zero, which would hide a missing adapter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if is_adapter(name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _whole_names(split: SplitModel, part: str, state: dict[str, torch.Tensor]) -> dict[str, str]:
    return {name: split.original_name(part, name) for name in state}


def _snapshot(*modules: nn.Module) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def _changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("family", ["glm", "llama", "qwen2"])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_split_with_lora_equals_whole_with_lora(family, padding):
    # Prepare: the same LoRA config in the whole model and, through LoraSpec, in a split of the
    # plain model; random adapters copied from the whole model into the split.
    spec = LoraSpec(r=4, alpha=8)
    base = tiny_model(family, seed=1)
    whole = inject_adapter_in_model(spec.peft_config(base.config.model_type), copy.deepcopy(base))
    _randomize_adapters(whole)
    of_injected = split_model(whole)  # a split of the LoRA-injected whole model
    applied = spec.apply(split_model(base))
    whole_state = dict(whole.named_parameters())
    covered = set()
    for part in PARTS:
        names = _whole_names(applied, part, adapter_state(getattr(applied, part)))
        load_adapter_state(getattr(applied, part), {n: whole_state[w].detach() for n, w in names.items()})
        covered |= set(names.values())
    assert covered == {n for n in whole_state if is_adapter(n)}  # every adapter sits in exactly one part
    input_ids, mask, labels = _batch(padding, base.config.vocab_size)

    # Execute
    ref = whole(input_ids=input_ids, attention_mask=mask, labels=labels)
    ref.loss.backward()
    outs = {"split of the injected model": of_injected(input_ids, mask, labels),
            "LoraSpec on the split": applied(input_ids, mask, labels)}
    for out in outs.values():
        out.loss.backward()

    # Assert: the adapters matter, and both splits give the whole model's logits, loss and adapter gradients.
    real = mask.bool()
    plain = base(input_ids=input_ids, attention_mask=mask).logits
    assert (ref.logits[real] - plain[real]).abs().max() > 1e-2
    for (what, out), split in zip(outs.items(), (of_injected, applied)):
        assert torch.allclose(out.logits[real], ref.logits[real], atol=TOL, rtol=0), what
        assert torch.allclose(out.loss, ref.loss, atol=TOL, rtol=0), what
        for part in PARTS:
            for name, p in getattr(split, part).named_parameters():
                w = whole_state[split.original_name(part, name)]
                if is_adapter(name):
                    assert p.grad is not None and w.grad is not None, (what, name)
                    assert p.grad.abs().max() > 0, (what, name)
                    assert torch.allclose(p.grad, w.grad, atol=TOL, rtol=0), (what, name)
                else:  # frozen, as in the injected whole model
                    assert p.grad is None and w.grad is None, (what, name)


def test_only_adapters_require_gradients_and_only_they_move():
    split = LoraSpec(r=4).apply(split_model(tiny_model("llama")))
    for part in PARTS:
        names = [n for n, p in getattr(split, part).named_parameters() if p.requires_grad]
        assert names and all(is_adapter(n) for n in names), part
    counts = trainable_summary(split)
    assert all(0 < counts[p].trainable < counts[p].total / 5 for p in PARTS)
    assert sum(c.trainable for c in counts.values()) == sum(p.numel() for p in trainable_parameters(split))
    before = _snapshot(split)[0]
    opt = torch.optim.AdamW(trainable_parameters(split), lr=1e-2, weight_decay=0.1)
    for ids, mask in batches(3, vocab=64):
        opt.zero_grad()
        split(ids, mask, ids.masked_fill(mask == 0, -100)).loss.backward()
        opt.step()
    changed = _changed(before, split)
    assert changed == {k for k in before if is_adapter(k)}  # every adapter moved (A from step 2), nothing else


def test_parts_choose_where_adapters_go_and_the_rest_is_frozen():
    split = LoraSpec(r=2, parts=("trunk",)).apply(split_model(tiny_model("glm")))
    counts = trainable_summary(split)
    assert counts["head"].trainable == counts["tail"].trainable == 0 and counts["trunk"].trainable > 0
    assert adapter_state(split.head) == {} and trainable_parameters(split.head, split.tail) == []
    assert len(unique_parameters(split.head, split.tail)) > 0  # unique_parameters still lists frozen weights
    # A head_layers=0 input block has no layer to adapt: named, and a spec without it works.
    with pytest.raises(ValueError, match="none of the LoRA targets .* is a layer of the head"):
        LoraSpec().apply(split_model(tiny_model("glm"), head_layers=0))
    split = LoraSpec(parts=("trunk", "tail")).apply(split_model(tiny_model("glm"), head_layers=0))
    assert trainable_summary(split)["head"].trainable == 0


def _supported_model_types() -> dict[str, str]:
    """model_type -> one supported class name of that family (from flglm_kit.families.SUPPORTED)."""
    return {getattr(transformers, name).config_class.model_type: name for name in sorted(SUPPORTED)}


def test_every_supported_family_has_targets_and_no_entry_is_stale():
    types = _supported_model_types()
    assert not set(types) - set(LORA_TARGETS), "supported families without LoRA targets"
    assert not set(LORA_TARGETS) - set(types), "LORA_TARGETS names a family the split does not support"


@pytest.mark.parametrize("model_type", sorted(LORA_TARGETS))
def test_the_targets_exist_in_every_family(model_type):
    # Prepare: the family's tiny model on the meta device (no weights: fast), split as FL-GLM does.
    script = _families_script()
    cls = getattr(transformers, _supported_model_types()[model_type])
    try:
        config = script.tiny_config(cls.config_class)
    except Exception:  # noqa: BLE001 - as the discovery does: some families want as many kv heads as heads
        config = script.tiny_config(cls.config_class, num_key_value_heads=script.TINY["num_attention_heads"])
    with torch.device("meta"):
        model = cls(config)
    targets = LORA_TARGETS[model_type]
    linear = [n for n, m in model.model.layers.named_modules() if isinstance(m, nn.Linear)]
    chosen = {f"layers.{n}" for n in linear if n.rsplit(".", 1)[-1] in targets}
    # Execute
    split = LoraSpec(r=2).apply(split_model(model, copy_weights=False))
    # Assert: each target names linear layers of the blocks; exactly those got adapters, in every part.
    for target in targets:
        assert any(n.endswith("." + target) for n in linear), (model_type, target, linear)
    adapted = {n.split(".lora_")[0] for part in PARTS for n, _ in getattr(split, part).named_parameters()
               if is_adapter(n)}
    assert adapted == chosen, sorted(adapted ^ chosen)[:4]
    counts = trainable_summary(split)
    assert all(counts[p].trainable > 0 for p in PARTS), counts


def test_unknown_families_and_wrong_targets_are_refused_clearly(monkeypatch):
    with pytest.raises(ValueError, match=r"'gpt2'.*targets="):
        lora_targets("gpt2")
    monkeypatch.delitem(LORA_TARGETS, "llama")
    split = split_model(tiny_model("llama"))
    with pytest.raises(ValueError, match=r"family 'llama'.*pass them yourself.*targets="):
        LoraSpec().apply(split)
    LoraSpec(targets=("q_proj", "v_proj")).apply(split)  # explicit targets need no entry
    assert trainable_summary(split)["trunk"].trainable > 0

    split = split_model(tiny_model("glm"))
    with pytest.raises(ValueError, match=r"none of the LoRA targets \['nope'\].*head.*q_proj"):
        LoraSpec(targets=("nope",)).apply(split)
    with pytest.raises(ValueError, match=r"targets \['nope'\] match no layer.*gate_up_proj"):
        LoraSpec(targets=("q_proj", "nope")).apply(split)
    with pytest.raises(ValueError, match="not linear layers.*GlmMLP"):
        LoraSpec(targets=("mlp",)).apply(split)
    assert not any(is_adapter(n) for n, _ in split.named_parameters())  # a refused spec changed nothing
    assert all(p.requires_grad for p in split.parameters())
    LoraSpec(r=2).apply(split)
    with pytest.raises(ValueError, match="already has LoRA"):
        LoraSpec(r=2).apply(split)


@pytest.mark.parametrize("options,match", [
    (dict(r=0), "r must be"), (dict(r=2.0), "r must be"), (dict(alpha=0), "alpha must be"),
    (dict(dropout=1.0), "dropout must be"), (dict(dropout=float("nan")), "dropout must be"),
    (dict(parts=("client",)), "parts must be"), (dict(parts=("head", "head")), "parts must be"),
    (dict(parts=()), "parts must be"), (dict(targets="q_proj"), "targets must be"),
    (dict(targets=()), "targets must be"), (dict(modules_to_save="embed_tokens"), "modules_to_save must be"),
    (dict(modules_to_save=("",)), "modules_to_save must be"),
])
def test_a_bad_spec_is_refused(options, match):
    with pytest.raises(ValueError, match=match):
        LoraSpec(**options)


def test_bad_adapter_states_are_refused_and_change_nothing():
    split = LoraSpec(r=2).apply(split_model(tiny_model("glm")))
    state = adapter_state(split.tail)
    assert state and all(is_adapter(n) for n in state)
    before = adapter_state(split.tail)
    first = next(iter(state))
    bad = {
        "lacks 1 LoRA tensor": {k: v for k, v in state.items() if k != first},
        "not LoRA tensors of this part.*norm.weight": {**state, "norm.weight": torch.ones(64)},
        "not LoRA tensors of this part": adapter_state(split.head) | state,
        "has shape": adapter_state(LoraSpec(r=3).apply(split_model(tiny_model("glm"))).tail),
        "floating-point": {**state, first: state[first].long()},
    }
    for match, wrong in bad.items():
        wrong = {k: v + 1 if v.is_floating_point() else v for k, v in wrong.items()}  # loadable values differ
        with pytest.raises(ValueError, match=match):
            load_adapter_state(split.tail, wrong)
        assert all(torch.equal(v, before[k]) for k, v in adapter_state(split.tail).items())
    load_adapter_state(split.tail, {k: v + 1 for k, v in state.items()})
    assert all(torch.equal(v, state[k] + 1) for k, v in adapter_state(split.tail).items())
    assert adapter_state(split.tail)[first] is not adapter_state(split.tail)[first]  # copies, not views


def test_the_real_parties_train_only_the_adapters():
    # Prepare: a LoRA split; each party's optimizer takes only what trains.
    split = LoraSpec(r=4).apply(split_model(tiny_model("glm")))
    server_id = Identity.generate()
    server = SplitServer(split.trunk, identity=server_id, optimizer=only_trainable(adamw))
    client = SplitClient(split.head, split.tail, client_id="hospital-a", transport=InProcessTransport(server),
                         server_fingerprint=server_id.fingerprint, optimizer=only_trainable(adamw))
    server.enroll("hospital-a", client.identity.public_bytes)
    client.connect()
    before = dict(zip(PARTS, _snapshot(split.head, split.trunk, split.tail)))
    # Execute
    losses = [client.train_step(ids, attention_mask=mask) for ids, mask in batches(3)]
    # Assert: every adapter moved on both sides and nothing else did; optimizers hold adapters only.
    assert all(torch.isfinite(torch.tensor(losses)))
    for part in PARTS:
        assert _changed(before[part], getattr(split, part)) == {k for k in before[part] if is_adapter(k)}, part
    client_params = [p for g in client.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in client_params} == {id(p) for p in trainable_parameters(split.head, split.tail)}
    assert server.optimizer is not None
    assert sum(p.numel() for g in server.optimizer.param_groups for p in g["params"]) == \
        trainable_summary(split)["trunk"].trainable
    with pytest.raises(ValueError, match="every parameter handed to the optimizer is frozen"):
        only_trainable(adamw)(split.head.embed_tokens.parameters())


def test_a_federation_averages_the_client_adapters_only():
    fed = Federation(split_model(tiny_model("glm")), ["a", "b"], peft=LoraSpec(r=2),
                     optimizer=only_trainable(adamw), aggregate="server")
    before = {cid: _snapshot(c.head, c.tail) for cid, c in fed.clients.items()}
    data = {cid: batches(2, seed=i) for i, cid in enumerate(fed.clients)}
    fed.train_round(data, local_steps=2)
    a, b = fed.clients["a"], fed.clients["b"]
    for cid, client in fed.clients.items():
        for snap, module in zip(before[cid], (client.head, client.tail)):
            assert _changed(snap, module) == {k for k in snap if is_adapter(k)}
    for mine, theirs in ((a.head, b.head), (a.tail, b.tail)):  # the same average on every client
        assert all(torch.equal(v, adapter_state(theirs)[k]) for k, v in adapter_state(mine).items())


def test_modules_to_save_train_whole_beside_the_adapters_and_are_averaged():
    split = LoraSpec(r=2, modules_to_save=("embed_tokens",)).apply(split_model(tiny_model("glm")))
    trains = {f"{part}.{n}" for part in PARTS for n, p in getattr(split, part).named_parameters() if p.requires_grad}
    assert "head.embed_tokens.weight" in trains
    assert all(is_adapter(n) for n in trains - {"head.embed_tokens.weight"})  # nothing else whole
    assert trainable_summary(split)["head"].trainable > split.head.embed_tokens.weight.numel()
    with pytest.raises(ValueError, match="modules_to_save names 'embedding'.*embed_tokens"):
        LoraSpec(modules_to_save=("embedding",)).apply(split_model(tiny_model("glm")))
    # In a federation the saved module is averaged like the adapters: every client ends with the same table.
    fed = Federation(split_model(tiny_model("glm")), ["a", "b"], peft=LoraSpec(r=2, modules_to_save=("embed_tokens",)),
                     optimizer=only_trainable(adamw), aggregate="server")
    before = fed.clients["a"].head.embed_tokens.weight.detach().clone()
    fed.train_round({cid: batches(2, seed=i) for i, cid in enumerate(fed.clients)}, local_steps=2)
    a, b = (fed.clients[c].head.embed_tokens.weight for c in ("a", "b"))
    assert not torch.equal(a, before) and torch.equal(a, b)
