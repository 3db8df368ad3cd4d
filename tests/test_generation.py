"""Generation through the split with key/value caches: token for token what the whole model's
``generate(do_sample=False)`` gives, in one process and over the wire; the server's sessions are
bounded, checked and isolated per client."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import make_parties

from flglm_kit.client import ServerError, SplitClient
from flglm_kit.generation import greedy_generate, reference_generate
from flglm_kit.models import tiny_model
from flglm_kit.prefix import PrefixSpec
from flglm_kit.scheduling import ClientBatching, Sequential
from flglm_kit.split import PartCache, Spans, split_model

NEW = 8


def _prompt(batch: int = 2, seq_len: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 512, (batch, seq_len), generator=torch.Generator().manual_seed(seed))


def _left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    ids = _prompt(3, 7)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :5] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.fixture(scope="module")
def glm() -> torch.nn.Module:
    return tiny_model("glm")


# -- in one process: each part's own cache ------------------------------------------------------
@pytest.mark.parametrize("family, options", [("glm", {}), ("llama", {}), ("qwen3", {}),
                                             ("mistral", {"sliding_window": 4})])
def test_split_with_caches_equals_whole_generate(family: str, options: dict[str, Any]) -> None:
    model = tiny_model(family, **options)
    ids, mask = _left_padded()
    expected = reference_generate(model, ids, attention_mask=mask, max_new_tokens=NEW)
    got = greedy_generate(split_model(model), ids, attention_mask=mask, max_new_tokens=NEW)
    assert torch.equal(got, expected)  # left padding, and (mistral) a window shorter than the text


def test_without_cache_equals_whole_generate_without_cache(glm: torch.nn.Module) -> None:
    ids = _prompt()
    expected = reference_generate(glm, ids, max_new_tokens=NEW, use_cache=False)
    assert torch.equal(greedy_generate(split_model(glm), ids, max_new_tokens=NEW, use_cache=False), expected)


def _cached_logits(split: Any, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """(B, T, V) logits of ``ids`` fed through the split with caches: the prompt, then one position at a time."""
    caches = [part.new_cache(ids.shape[0]) for part in (split.head, split.trunk, split.tail)]
    chunks = [ids[:, :prompt_len]] + list(ids[:, prompt_len:].split(1, dim=1))
    out = []
    with torch.no_grad():
        for chunk in chunks:
            spans = Spans.full(*chunk.shape)
            hidden = split.trunk(split.head(chunk, spans, cache=caches[0]), spans, cache=caches[1])
            out.append(split.tail(hidden, spans, cache=caches[2]).logits)  # (B, t, V)
    return torch.cat(out, dim=1)


def test_cached_logits_equal_the_whole_model_and_a_wrong_offset_breaks_them(glm: torch.nn.Module,
                                                                              monkeypatch: Any) -> None:
    ids = _prompt(2, 12)
    with torch.no_grad():
        expected = glm(ids).logits  # (B, T, V)
    split = split_model(glm)
    torch.testing.assert_close(_cached_logits(split, ids, 5), expected, atol=1e-5, rtol=0)
    right = PartCache.next_position_ids
    # Off by one after the prompt (a shift of every position would not show: rotary sees only differences).
    monkeypatch.setattr(PartCache, "next_position_ids", lambda self, spans: right(self, spans) + (self.past_len > 0))
    assert (_cached_logits(split, ids, 5) - expected).abs().max() > 1e-4


def test_a_cache_holds_only_its_own_blocks(glm: torch.nn.Module) -> None:
    split = split_model(glm)
    cache = split.trunk.new_cache(2)
    split.trunk(torch.randn(2, 5, 64), Spans.full(2, 5), cache=cache)
    filled = [i for i, layer in enumerate(cache.kv.layers) if getattr(layer, "keys", None) is not None
              and layer.keys.numel() > 0]
    assert filled == [1, 2] and cache.past_len == 5
    assert cache.nbytes() == 2 * 2 * (2 * 2 * 5 * 16) * 4  # layers x (K, V) x (B, kv_heads, T, head_dim) x float32


def test_a_deep_prefix_generates_the_same_with_and_without_caches(glm: torch.nn.Module) -> None:
    split = PrefixSpec(length=3, init_std=0.5).apply(split_model(glm))
    ids = _prompt()
    cached = greedy_generate(split, ids, max_new_tokens=NEW)
    assert torch.equal(cached, greedy_generate(split, ids, max_new_tokens=NEW, use_cache=False))
    assert not torch.equal(cached, reference_generate(glm, ids, max_new_tokens=NEW))  # the prefix matters


# -- over the wire -----------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler", [Sequential, lambda: ClientBatching(clients=2)], ids=["sequential", "batching"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_client_generate_equals_whole_generate(glm: torch.nn.Module, scheduler: Any, use_cache: bool) -> None:
    parties = make_parties(glm, scheduler=scheduler())
    ids = _prompt()
    got = parties.clients[0].generate(ids, max_new_tokens=NEW, use_cache=use_cache)
    assert torch.equal(got, reference_generate(glm, ids, max_new_tokens=NEW))
    assert len(parties.server.computes[0].sessions) == 0  # the last request ended the session


def test_client_generate_left_padded_and_naive_layout(glm: torch.nn.Module) -> None:
    ids, mask = _left_padded()
    expected = reference_generate(glm, ids, attention_mask=mask, max_new_tokens=NEW)
    for tail_on_server in (False, True):
        client = make_parties(glm, tail_on_server=tail_on_server).clients[0]
        assert torch.equal(client.generate(ids, attention_mask=mask, max_new_tokens=NEW), expected)
    with pytest.raises(ValueError, match="left only"):
        client.generate(ids.flip(1), attention_mask=mask.flip(1))
    with pytest.raises(ValueError, match="unpadded"):
        client.generate(ids, attention_mask=mask, use_cache=False)


def test_the_shipped_tiny_glm_generates_the_same_through_the_split() -> None:
    from flglm_kit.pretrained import load_pretrained

    tokenizer, model = load_pretrained(device="cpu")
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer("The council said on Friday")["input_ids"]]])
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
    client = make_parties(model).clients[0]
    for use_cache in (True, False):
        got = client.generate(ids, max_new_tokens=24, eos_token_id=eos, pad_token_id=pad, use_cache=use_cache)
        assert torch.equal(got, expected)


def test_a_prefixed_federation_generates_as_the_prefixed_split(glm: torch.nn.Module) -> None:
    parties = make_parties(glm)
    spec = PrefixSpec(length=2, init_std=0.5)
    spec.apply_part(parties.server.trunk, generator=torch.Generator().manual_seed(1))
    client = parties.clients[0]
    for part in (client.head, client.tail):
        assert part is not None
        spec.apply_part(part, generator=torch.Generator().manual_seed(1))
    whole = split_model(glm)
    whole.head.prefix, whole.trunk.prefix = client.head.prefix, parties.server.trunk.prefix
    whole.tail.prefix = client.tail.prefix if client.tail is not None else None
    ids = _prompt()
    expected = greedy_generate(whole, ids, max_new_tokens=NEW)
    assert torch.equal(client.generate(ids, max_new_tokens=NEW), expected)
    assert torch.equal(client.generate(ids, max_new_tokens=NEW, use_cache=False), expected)


def test_bytes_per_token_are_constant_with_caches(glm: torch.nn.Module) -> None:
    sizes: dict[bool, list[int]] = {True: [], False: []}
    for use_cache in (True, False):
        parties = make_parties(glm)
        parties.transport.add_tap(lambda record, u=use_cache: sizes[u].append(record.nbytes)
                                  if record.direction == "client->server" else None)
        parties.clients[0].generate(_prompt(), max_new_tokens=NEW, use_cache=use_cache)
    cached, plain = sizes[True], sizes[False]
    # One position per token after the prompt: constant but for the digits of the step and position numbers.
    assert max(cached[1:]) - min(cached[1:]) <= 8 and cached[1] < cached[0]
    assert plain == sorted(plain) and plain[-1] > plain[0]  # the whole sequence, growing


# -- the server's sessions: checked, bounded, isolated -------------------------------------------
def _open_session(client: SplitClient, ids: torch.Tensor) -> Any:
    decoding = client._start_decoding(ids.shape[0])
    client._decoding_step(decoding, ids, Spans.full(*ids.shape), end=False)
    return decoding


def _request(client: SplitClient, ids: torch.Tensor, **meta: Any) -> None:
    client.step += 1
    msg = client._activations_message(client.head(ids, Spans.full(*ids.shape)), Spans.full(*ids.shape),
                                      mode="generate")
    msg.meta.update(meta)
    client._exchange(msg, "trunk_output")


@pytest.mark.parametrize("meta, error", [
    ({"session": "bad name!", "position": 0}, "meta 'session'"),
    ({"session": "s", "position": -1}, "meta 'position'"),
    ({"session": "s", "position": 1.5}, "meta 'position'"),
    ({"session": "s", "position": 0, "end": "yes"}, "meta 'end'"),
    ({"session": "s", "position": 0, "prefix_len": 3}, "prefix_len"),
    ({"session": "OWN", "position": 5}, "holds 6 positions"),  # mallory's own session, out of order
    ({"session": "gen-1", "position": 6}, "no generation session 'gen-1' for 'mallory'"),  # alice's id
    ({"session": "nope", "position": 2}, "no generation session"),
])
def test_malformed_generation_requests_are_refused_and_others_go_on(glm: torch.nn.Module, meta: dict[str, Any],
                                                                    error: str) -> None:
    parties = make_parties(glm, client_ids=("alice", "mallory"))
    alice, mallory = parties.clients
    ids = _prompt()
    sessions = parties.server.computes[0].sessions
    decoding = _open_session(alice, ids)
    if meta["session"] == "OWN":
        meta = {**meta, "session": _open_session(mallory, ids).session}
    with pytest.raises(ServerError, match=error):
        _request(mallory, ids, **meta)
    assert sessions.of("alice") == [decoding.session]
    assert torch.equal(alice.generate(ids, max_new_tokens=NEW), reference_generate(glm, ids, max_new_tokens=NEW))


def test_sessions_are_bounded_per_client_in_all_and_in_tokens(glm: torch.nn.Module) -> None:
    from flglm_kit.compute import GenerationSessions, SessionLimits

    parties = make_parties(glm, client_ids=("a", "b"))
    a, b = parties.clients
    compute = parties.server.computes[0]
    compute.sessions = GenerationSessions(SessionLimits(max_sessions_per_client=2, max_sessions=3, max_tokens=10),
                                          max_tokens=256)
    ids = _prompt(1, 4)
    first = [_open_session(a, ids).session for _ in range(3)]
    assert compute.sessions.of("a") == first[1:] and compute.sessions.evicted == 1  # the oldest went
    _open_session(b, ids)
    with pytest.raises(ServerError, match="max_sessions=3"):
        b.generate(ids, max_new_tokens=2)
    compute.sessions.end("a", first[1])
    with pytest.raises(ServerError, match="max_tokens=10"):
        b.generate(ids, max_new_tokens=8)  # 4 + 7 positions
    assert len(b.generate(ids, max_new_tokens=7)[0]) == 11


def test_a_session_is_void_once_the_weights_move(glm: torch.nn.Module) -> None:
    parties = make_parties(glm, client_ids=("a", "b"))
    a, b = parties.clients
    ids = _prompt()
    decoding = _open_session(a, ids)
    b.train_step(ids)
    with pytest.raises(ServerError, match="weights moved"):
        a._decoding_step(decoding, ids[:, :1], Spans.full(2, 1), end=False)
