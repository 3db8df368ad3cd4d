"""Find every Llama-layout ``*ForCausalLM`` transformers ships, and write the README's list of them.

::

    python scripts/supported_families.py          # check every family, rewrite README.md's section
    python scripts/supported_families.py --print  # print the section instead

For each ``*ForCausalLM`` name in ``transformers`` this builds a tiny random model from its config
class (4 blocks, hidden size 32, sliding windows of 4 tokens, non-trivial multipliers and
soft-caps, so that every option that changes the computation is exercised) and keeps those whose
model has the Llama layout. ``tests/test_families.py`` uses the same discovery to prove, for each,
split == whole or a refusal, and checks that README.md holds what :func:`render` writes. Before
writing, this script runs that check itself.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- families:start -->", "<!-- families:end -->"
LAYOUT = ("model.embed_tokens", "model.layers", "model.norm", "lm_head")
NUM_LAYERS = 4
SLIDING_WINDOW = 4  # shorter than the test's sequences (12 tokens)
MAX_PARAMS = 2_000_000

#: config fields set, where the config class has them, to make a tiny model that still exercises
#: every option that changes the computation: windows shorter than the sequence, multipliers and
#: soft-caps away from 1 and off, MoE and MLA at toy sizes, weights large enough for O(1) logits.
TINY: dict[str, Any] = dict(
    vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=NUM_LAYERS, num_layers=NUM_LAYERS,
    num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
    sliding_window=SLIDING_WINDOW, sliding_window_size=SLIDING_WINDOW, use_sliding_window=True, max_window_layers=2,
    keep_window_size=6, moe_intermediate_size=16, expert_ffn_hidden_size=16, ffn_hidden_size=64,
    shared_expert_intermediate_size=16, shared_experts_intermediate_size=16, n_routed_experts=4, num_experts=4,
    num_local_experts=4, num_experts_per_tok=2, top_k_experts=2, moe_topk=2, n_shared_experts=1, zero_expert_num=1,
    first_k_dense_replace=1, n_group=1, topk_group=1,
    kv_lora_rank=8, q_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, qk_head_dim=8,
    index_topk=4, index_head_dim=8, index_n_heads=2, hidden_size_per_layer_input=8, vocab_size_per_layer_input=128,
    linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4,
    swa_num_attention_heads=4, swa_num_key_value_heads=2, swa_head_dim=8,
    embedding_multiplier=2.0, logits_scaling=4.0, residual_multiplier=0.5, attention_multiplier=0.3,
    logit_scale=0.5, mup_enabled=True, final_logit_softcapping=3.0, attn_logit_softcapping=5.0,
    initializer_range=0.2, tie_word_embeddings=False,
)


@dataclass
class Found:
    """One ``*ForCausalLM`` class of transformers and what discovery made of it."""

    name: str
    layout: bool = False  # its model has model.embed_tokens, model.layers, model.norm and lm_head
    model: Any = None  # a tiny random instance, when one could be built and runs
    meta: Any = None  # an instance on the meta device (no weights): enough to check a refusal
    note: str = ""  # why there is no tiny instance


def _layer_types(default: list[str], n: int) -> list[str]:
    kinds = list(dict.fromkeys(default))  # each layer type the family has, cycled over n blocks
    return [kinds[i % len(kinds)] for i in range(n)]


def tiny_config(config_cls: Any, **extra: Any) -> Any:
    """A tiny config of ``config_cls`` with :data:`TINY`'s fields, eager attention."""
    defaults = config_cls().to_dict()
    fields = {k: v for k, v in TINY.items() if k in defaults}
    if "qk_rope_head_dim" in defaults:  # multi-head latent attention: the rotary part is the head
        fields["head_dim"] = fields["qk_rope_head_dim"]
    fields.update(extra)
    vocab = fields.get("vocab_size", 128)
    for key, value in defaults.items():
        if key.endswith("_token_id") and isinstance(value, int) and value >= vocab:
            fields[key] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}.get(key, 0)
        elif key.endswith("_token_id") and isinstance(value, list):
            fields[key] = [2]
    if isinstance(defaults.get("layer_types"), list) and defaults["layer_types"]:
        fields["layer_types"] = _layer_types(defaults["layer_types"], NUM_LAYERS)
    config = config_cls(**fields)
    config._attn_implementation = "eager"
    return config


def tiny_model_of(name: str, seed: int = 0, **extra: Any) -> Any:
    """A tiny random ``transformers.<name>`` with :data:`TINY`'s fields and ``extra``."""
    cls = getattr(transformers, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(tiny_config(cls.config_class, **extra)).float().eval()


def _has_layout(model: Any) -> bool:
    for path in LAYOUT:
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if obj is None:
            return False
    return True


def _inspect(name: str, seed: int) -> Found:
    found = Found(name)
    try:
        cls = getattr(transformers, name)
        config_cls = cls.config_class
    except Exception as e:  # noqa: BLE001 - a lazy import that needs an extra dependency
        found.note = f"not importable here ({type(e).__name__})"
        return found
    try:
        try:
            config = tiny_config(config_cls)
        except Exception:  # noqa: BLE001 - some families want as many key/value heads as heads
            config = tiny_config(config_cls, num_key_value_heads=TINY["num_attention_heads"])
    except Exception as e:  # noqa: BLE001
        config, found.note = None, f"no tiny config ({type(e).__name__})"
    try:
        with torch.device("meta"):
            found.meta = cls(config if config is not None else config_cls())
    except Exception as e:  # noqa: BLE001
        found.note = found.note or f"not buildable ({type(e).__name__})"
        return found
    found.layout = _has_layout(found.meta)
    if not found.layout or config is None:
        return found
    n_params = sum(p.numel() for p in found.meta.parameters())
    if n_params > MAX_PARAMS:
        found.note = f"tiny config still has {n_params:,} parameters"
        return found
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config).float().eval()
        model(input_ids=torch.randint(3, config.vocab_size, (1, 6)))  # the whole model runs
        found.model = model
    except Exception as e:  # noqa: BLE001
        found.note = f"tiny model does not run ({type(e).__name__})"
    return found


@functools.lru_cache(maxsize=1)
def discover(seed: int = 0) -> tuple[Found, ...]:
    """Every ``*ForCausalLM`` transformers ships, inspected (cached: tests and script share it)."""
    names = sorted(n for n in dir(transformers) if n.endswith("ForCausalLM") and not n.startswith("Auto"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.logging.set_verbosity_error()
        return tuple(_inspect(name, seed) for name in names)


def verdict(found: Found) -> str:
    """``""`` if ``split_model`` accepts the family, else the reason it gives for refusing it."""
    from flglm_kit.split import split_model

    model = found.model if found.model is not None else found.meta
    try:
        split_model(model, head_layers=1, tail_layers=1, copy_weights=False)
    except (TypeError, ValueError) as e:
        message = str(e)
        match = re.search(rf"support {found.name}: (.*?), so the split", message) or \
            re.search(r"(missing [\w., ]+?)\. Supported", message)
        return match.group(1) if match else message
    return ""


def render(found: tuple[Found, ...]) -> str:
    """The README section, markers included."""
    llama = [f for f in found if f.layout]
    exact = sorted(f.name for f in llama if not verdict(f))
    refused = {f.name: verdict(f) for f in llama if verdict(f)}
    named = {n: r for n, r in refused.items() if "not verified" not in r}
    unverified = sorted(n for n in refused if n not in named)
    lines = [
        START,
        "### Supported model families",
        "",
        f"Written by `python scripts/supported_families.py` (transformers {transformers.__version__}); "
        "`tests/test_families.py` checks this list. Of the "
        f"{len(found)} `*ForCausalLM` classes, {len(llama)} have the Llama layout. `split_model` "
        f"accepts the {len(exact)} that the test proves exact (logits, loss and gradients within "
        "1e-5, left and right padding, sliding windows shorter than the sequence) and refuses the "
        "others, naming what it does not reproduce.",
        "",
        "Exact: " + ", ".join(f"`{n.removesuffix('ForCausalLM')}`" for n in exact) + ".",
        "",
        "Refused:",
        "",
        "| family | what the split does not reproduce |",
        "|---|---|",
        *(f"| `{n.removesuffix('ForCausalLM')}` | {r} |" for n, r in sorted(named.items())),
        "| " + ", ".join(f"`{n.removesuffix('ForCausalLM')}`" for n in unverified)
        + " | not verified by the kit's test |",
        END,
    ]
    return "\n".join(lines)


def readme_section(text: str) -> str:
    """The section of ``text`` between the markers, markers included."""
    start, end = text.index(START), text.index(END) + len(END)
    return text[start:end]


def main(argv: list[str]) -> int:
    found = discover()
    section = render(found)
    if "--print" in argv:
        print(section)
        return 0
    import pytest

    status = pytest.main([str(ROOT / "tests" / "test_families.py"), "-q", "-p", "no:cacheprovider"])
    if status != 0:
        print("tests/test_families.py fails: README.md left as it is", file=sys.stderr)
        return int(status)
    text = README.read_text()
    README.write_text(text.replace(readme_section(text), section))
    print(f"README.md: {section.count('`') // 2} names written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
