"""Every decoder family is either exact or refused (flglm_kit/families.py).

Walks every ``*ForCausalLM`` transformers ships whose model has the Llama layout, builds a tiny
random one from its config class (scripts/supported_families.py), and asserts, for each, split ==
whole within 1e-5 (logits on real tokens, loss, every gradient; right and left padding; sliding
windows shorter than the sequence) or a refusal that names the family.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
import transformers

from conftest import padded_batch

from flglm_kit.families import REFUSED, SUPPORTED
from flglm_kit.split import split_model

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("supported_families", ROOT / "scripts" / "supported_families.py")
assert _spec is not None and _spec.loader is not None
families = importlib.util.module_from_spec(_spec)
sys.modules["supported_families"] = families  # its dataclass looks itself up there
_spec.loader.exec_module(families)

TOL = 1e-5
B, T = 3, 12  # T > the tiny configs' sliding window (4)
FOUND = {f.name: f for f in families.discover() if f.layout}
MIN_LLAMA_LAYOUT = 100  # observed 104 with transformers 5.24: a broken discovery cannot pass


def _batch(padding: str, vocab: int):
    return padded_batch(padding, vocab, B, T)


def _assert_split_equals_whole(model, padding: str) -> None:
    split = split_model(model, head_layers=1, tail_layers=1)
    assert len(split.trunk.layers) > 0
    input_ids, mask, labels = _batch(padding, model.config.vocab_size)
    model.zero_grad()
    whole = model(input_ids=input_ids, attention_mask=mask, labels=labels)
    whole.loss.backward()
    parts = split(input_ids, attention_mask=mask, labels=labels)
    parts.loss.backward()
    real = mask.bool()
    # Logits of order 1, so that a missed scale or soft-cap shows far above the tolerance.
    assert whole.logits[real].std() > 0.05
    assert torch.allclose(parts.logits[real], whole.logits[real], atol=TOL, rtol=0)
    assert torch.allclose(parts.loss, whole.loss, atol=TOL, rtol=0)
    whole_params = dict(model.named_parameters())
    for part_name in ("head", "trunk", "tail"):
        for name, p in getattr(split, part_name).named_parameters():
            ref = whole_params[split.original_name(part_name, name)].grad
            assert (p.grad is None) == (ref is None), name
            if ref is not None:
                assert torch.allclose(p.grad, ref, atol=TOL, rtol=0), name


def test_discovery_finds_the_llama_layout_families():
    assert len(FOUND) >= MIN_LLAMA_LAYOUT, sorted(FOUND)
    assert {"LlamaForCausalLM", "MistralForCausalLM", "GlmForCausalLM", "Gemma2ForCausalLM"} <= set(FOUND)


def test_every_supported_and_refused_name_is_a_discovered_family():
    # A registry entry that names no class transformers ships is a typo or a stale entry.
    assert not (set(SUPPORTED) | set(REFUSED)) - set(FOUND)
    assert not set(SUPPORTED) & set(REFUSED)


@pytest.mark.parametrize("name", sorted(FOUND))
def test_family_is_exact_or_refused(name):
    found = FOUND[name]
    if name not in SUPPORTED:
        with pytest.raises((TypeError, ValueError), match=name):
            split_model(found.model if found.model is not None else found.meta, copy_weights=False)
        return
    assert found.model is not None, f"{name} is supported but no tiny model was tested: {found.note}"
    for padding in ("right", "left"):
        _assert_split_equals_whole(found.model, padding)


def test_mistral_sliding_window_shorter_than_the_sequence_is_reproduced():
    from flglm_kit.models import tiny_model

    model = tiny_model("mistral", sliding_window=4, attn_implementation="eager")
    _assert_split_equals_whole(model, "left")


def test_config_options_the_split_does_not_reproduce_are_refused():
    from flglm_kit.models import tiny_model

    with pytest.raises(ValueError, match="MixtralForCausalLM with output_router_logits=True"):
        split_model(families.tiny_model_of("MixtralForCausalLM", output_router_logits=True), copy_weights=False)
    with pytest.raises(ValueError, match="use_bidirectional_attention"):
        split_model(families.tiny_model_of("Gemma3ForCausalLM", use_bidirectional_attention=True),
                    copy_weights=False)
    # A subclass may change the forward: the same name is not enough.
    llama = tiny_model("llama")
    subclass = type("LlamaForCausalLM", (type(llama),), {})
    with pytest.raises(TypeError, match="LlamaForCausalLM: it is a class from"):
        split_model(subclass(llama.config))


def test_the_readme_lists_what_the_script_writes():
    text = (ROOT / "README.md").read_text()
    written_with = re.search(r"\(transformers ([^)]+)\)", families.readme_section(text) or "")
    if written_with and written_with.group(1) != transformers.__version__:
        pytest.skip(f"README's list was written with transformers {written_with.group(1)}, this is "
                    f"{transformers.__version__}: run python scripts/supported_families.py")
    assert families.readme_section(text) == families.render(families.discover()), (
        "README.md's family list is stale: run python scripts/supported_families.py")
