"""Federation: FedAvg of the client blocks in both modes, the group key, drop-outs, checkpoints, ownership."""

from __future__ import annotations

import copy

import pytest
import torch

from flglm_kit.aggregation import Aggregator
from flglm_kit.checkpoint import CheckpointError
from flglm_kit.client import SplitClient
from flglm_kit.crypto import ChannelError, GroupCipher, new_group_key
from flglm_kit.fedavg import BlockLayout, weighted_average
from flglm_kit.federation import Federation
from flglm_kit.models import tiny_model
from flglm_kit.split import split_model
from flglm_kit.transport import InProcessTransport
from flglm_kit.wire import KINDS, Message

IDS = ("a", "b", "c")


def adamw(params):
    return torch.optim.AdamW(params, lr=3e-3)


@pytest.fixture(scope="module")
def split():
    return split_model(tiny_model("glm", seed=3))


def data(round_: int, *, sizes=(2, 3, 1), steps: int = 2, ids=IDS):
    """Each client's batches for one round; different batch sizes, so FedAvg weights matter."""
    out = {}
    for i, cid in enumerate(ids):
        g = torch.Generator().manual_seed(1000 * round_ + i)
        out[cid] = [torch.randint(3, 40, (sizes[i % len(sizes)], 10), generator=g) for _ in range(steps)]
    return out


def blocks(fed: Federation, cid: str) -> torch.Tensor:
    return fed.averagers[cid].layout.flatten(fed.averagers[cid].parts) if fed.averagers else \
        BlockLayout.of({"head": fed.clients[cid].head, "tail": fed.clients[cid].tail}).flatten(
            {"head": fed.clients[cid].head, "tail": fed.clients[cid].tail})


def test_fedavg_is_the_sample_weighted_mean_of_the_clients_blocks(split):
    alone = Federation(split, IDS, aggregate=None, optimizer=adamw)
    fed = Federation(split, IDS, aggregate="server", optimizer=adamw)
    r_alone, r_fed = alone.train_round(data(1), local_steps=2), fed.train_round(data(1), local_steps=2)
    assert r_alone.losses == r_fed.losses  # the same local steps before averaging
    expected = weighted_average([blocks(alone, c) for c in IDS], [r_alone.samples[c] for c in IDS])
    assert r_fed.samples == {"a": 4, "b": 6, "c": 2}
    for cid in IDS:
        assert torch.equal(blocks(fed, cid), expected)
    # not the plain mean: the weights are the samples
    assert not torch.allclose(expected, torch.stack([blocks(alone, c) for c in IDS]).mean(0))
    assert r_fed.averaged == IDS and r_fed.update_bytes > 2 * len(IDS) * 4 * fed.layout.numel


def test_both_modes_train_identically_and_only_the_server_mode_shows_the_server_the_blocks(split):
    runs = {}
    for mode in ("server", "clients"):
        fed = Federation(split, IDS, aggregate=mode, optimizer=adamw, record_server_view=True)
        runs[mode] = ([fed.train_round(data(r), local_steps=2).losses for r in range(1, 4)], fed)
    assert runs["server"][0] == runs["clients"][0]  # same bits: the clients average in the server's order
    server_fed, clients_fed = runs["server"][1], runs["clients"][1]
    view = server_fed.server_view()
    assert view is not None and torch.equal(view["head.embed_tokens.weight"],
                                            server_fed.clients["a"].head.embed_tokens.weight)
    assert clients_fed.server_view() is None
    updates = [m for m in clients_fed.seen if m.kind == "client_update"]
    assert updates and all(set(m.tensors) == {"sealed"} and m.tensors["sealed"].dtype == torch.uint8 for m in updates)
    secret = blocks(clients_fed, "a").numpy().tobytes()[4096:4160]  # 16 weights, as they lie in memory
    assert all(secret not in m.tensors["sealed"].numpy().tobytes() for m in updates)
    plain = [m for m in server_fed.seen if m.kind == "client_update"]
    assert plain and all(set(m.tensors) == {"update"} for m in plain)


def test_the_group_key_packages_and_updates_resist_tampering_and_replay(split):
    fed = Federation(split, IDS, aggregate="clients", optimizer=adamw)
    ciphers = {cid: fed.averagers[cid].cipher for cid in IDS}
    assert all(c is not None for c in ciphers.values())
    blob = ciphers["a"].seal(b"w" * 64, sender="a", round_=1, layout="x")
    assert ciphers["c"].open(blob, sender="a", round_=1, layout="x") == b"w" * 64  # every member has the key
    tampered = bytearray(blob)
    tampered[20] ^= 1
    for bad, kwargs in ((bytes(tampered), dict(sender="a", round_=1)), (blob, dict(sender="b", round_=1)),
                        (blob, dict(sender="a", round_=2))):
        with pytest.raises(ChannelError):
            ciphers["b"].open(bad, layout="x", **kwargs)
    outsider = GroupCipher(new_group_key(), group_id=fed.group_id)
    with pytest.raises(ChannelError):
        outsider.open(blob, sender="a", round_=1, layout="x")


def test_bad_updates_get_an_error_and_the_round_goes_on(split):
    fed = Federation(split, IDS, aggregate="server", optimizer=adamw)
    fed.train_round(data(1), local_steps=1)
    server, transport = fed.server, fed.transport
    server.open_aggregation(2, list(IDS), sealed=False)
    a = fed.clients["a"]
    numel, digest = fed.layout.numel, fed.layout.digest
    good = {"round": 2, "samples": 2, "layout": digest}
    bad_cases = {
        "wrong round": ({"update": torch.zeros(numel)}, {**good, "round": 7}),
        "no samples": ({"update": torch.zeros(numel)}, {"round": 2, "layout": digest}),
        "NaN": ({"update": torch.full((numel,), float("nan"))}, good),
        "wrong size": ({"update": torch.zeros(numel - 1)}, good),
        "wrong dtype": ({"update": torch.zeros(numel, dtype=torch.float16)}, good),
        "sealed in a plain round": ({"sealed": torch.zeros(40, dtype=torch.uint8)}, good),
        "bad layout": ({"update": torch.zeros(numel)}, {**good, "layout": "zz"}),
        "relay to nobody": ({"sealed": torch.zeros(4, dtype=torch.uint8)}, {"purpose": "group_key", "to": "nobody"}),
    }
    first = Message("client_update", "a", 2, tensors={"update": torch.zeros(numel)}, meta=good)
    transport.post(a._seal(first))
    assert transport.collect("a") == []  # taken: waits for the others
    for name, (tensors, meta) in bad_cases.items():
        before = server.rejections
        transport.post(a._seal(Message("client_update", "a", 2, tensors=tensors, meta=meta)))
        assert server.rejections == before + 1, name
        reply = transport.collect("a")
        assert len(reply) == 1 and b"client_update" not in reply[0][:8], name
    # the round still completes for the honest clients; a's first update counts
    for cid in ("b", "c"):
        transport.post(fed.clients[cid]._seal(Message("client_update", cid, 2, tensors={"update": torch.ones(numel)},
                                                      meta=good)))
    replies = {cid: transport.collect(cid) for cid in IDS}
    assert all(len(r) == 1 for r in replies.values())
    assert torch.allclose(server.aggregator.last_average, torch.full((numel,), 2 / 3))
    assert server.aggregator.finished[-1][1:] == (IDS, ())


def test_a_client_that_drops_out_is_named_and_rejoins_from_the_average(split):
    for mode in ("server", "clients"):
        fed = Federation(split, IDS, aggregate=mode, optimizer=adamw)
        r1 = fed.train_round(data(1), local_steps=2, drop_after={"b": 1, "c": 2})
        assert r1.averaged == ("a",) and set(r1.absent) == {"b", "c"}
        assert "after 1 of 2" in r1.absent["b"] and "before sending" in r1.absent["c"]
        r2 = fed.train_round(data(2), local_steps=2)
        assert r2.averaged == ("a",) and r2.absent["b"].startswith("offline")
        fed.rejoin("b")
        assert torch.equal(blocks(fed, "b"), blocks(fed, "a")), mode
        r3 = fed.train_round(data(3), local_steps=2)
        assert r3.averaged == ("a", "b") and "c" in r3.absent


def test_a_resumed_run_gives_the_same_losses(split, tmp_path):
    for mode in ("server", "clients"):
        fed = Federation(split, IDS, aggregate=mode, optimizer=adamw)
        fed.train_round(data(1), local_steps=2)
        fed.save(tmp_path / mode)
        straight = [fed.train_round(data(r), local_steps=2).losses for r in (2, 3)]
        fed.close()
        again = Federation.resume(tmp_path / mode, split, optimizer=adamw)
        assert again.round == 1
        assert [again.train_round(data(r), local_steps=2).losses for r in (2, 3)] == straight, mode
        again.close()
    assert sorted(p.name for p in (tmp_path / "server").iterdir()) == ["clients", "federation.json", "server"]
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))


def test_resume_refuses_a_wrong_folder_or_another_split(split, tmp_path):
    with pytest.raises(CheckpointError, match="federation.json"):
        Federation.resume(tmp_path / "nothing", split)
    fed = Federation(split, ("a",), aggregate="server")
    fed.train_round({"a": [torch.randint(3, 40, (2, 8))]})
    fed.save(tmp_path / "run")
    other = split_model(tiny_model("glm", seed=3), head_layers=2, tail_layers=1)
    with pytest.raises(CheckpointError, match="another model, split"):
        Federation.resume(tmp_path / "run", other)
    (tmp_path / "run" / "clients" / "a" / "optimizer.json").unlink()
    with pytest.raises(CheckpointError, match="optimizer.json"):
        Federation.resume(tmp_path / "run", split)


def test_a_client_refuses_blocks_another_live_client_trains(split):
    fed = Federation(split, ("a",), aggregate=None)
    a = fed.clients["a"]
    with pytest.raises(ValueError, match="already trained by the live client 'a'"):
        SplitClient(a.head, a.tail, client_id="b", transport=fed.transport,
                    server_fingerprint=fed.server_identity.fingerprint)
    again = SplitClient(a.head, a.tail, client_id="a", transport=fed.transport,  # a notebook cell run twice
                        server_fingerprint=fed.server_identity.fingerprint)
    with pytest.raises(RuntimeError, match="replaced by a newer"):
        a.train_step(torch.randint(3, 40, (1, 6)))
    again.close()
    SplitClient(a.head, a.tail, client_id="b", transport=fed.transport,  # released: now it may
                server_fingerprint=fed.server_identity.fingerprint)
    head, tail = copy.deepcopy((a.head, a.tail))  # copies are never refused
    SplitClient(head, tail, client_id="c", transport=InProcessTransport(fed.server),
                server_fingerprint=fed.server_identity.fingerprint)


def test_the_update_kind_comes_last_on_the_wire():
    assert KINDS[:7] == ("hello", "welcome", "activations", "trunk_output", "output_grads", "activation_grads",
                         "error")
    assert KINDS[-1] == "client_update"


def test_aggregator_refuses_updates_outside_an_open_round():
    agg = Aggregator()
    msg = Message("client_update", "a", 1, tensors={"update": torch.zeros(2)},
                  meta={"round": 1, "samples": 1, "layout": "0" * 16})
    with pytest.raises(Exception, match="no aggregation round is open"):
        agg.receive(msg)
    agg.open_round(1, ["a", "b"], sealed=False)
    assert agg.receive(msg) == []
    with pytest.raises(Exception, match="already sent"):
        agg.receive(msg)
    replies, absent = agg.close_round()
    assert absent == ("b",) and [r.client_id for r in replies] == ["a"]


def test_peft_methods_average_only_what_trains_and_a_frozen_client_averages_nothing(split):
    from flglm_kit.lora import LoraSpec, is_adapter
    from flglm_kit.prefix import PrefixSpec

    lora = Federation(split, ("a", "b"), peft=LoraSpec(r=2), optimizer=adamw)
    assert lora.layout is not None and all(is_adapter(n) for n in lora.layout.names)
    prefix = Federation(split, ("a", "b"), peft=PrefixSpec(length=3), optimizer=adamw, aggregate="clients")
    assert prefix.layout is not None and set(prefix.layout.names) == {"head.prefix", "tail.prefix"}
    sizes = {}
    for name, fed in (("lora", lora), ("prefix", prefix)):
        before = {n: p.detach().clone() for n, p in fed.clients["a"].head.named_parameters()}
        r = fed.train_round(data(1, ids=("a", "b")), local_steps=1)
        moved = {n for n, p in fed.clients["a"].head.named_parameters() if not torch.equal(before[n], p)}
        assert moved and all(fed.clients["a"].head.get_parameter(n).requires_grad for n in moved), name
        assert torch.equal(blocks(fed, "a"), blocks(fed, "b"))
        sizes[name] = r.update_bytes
    frozen = Federation(split, ("a", "b"), peft=LoraSpec(r=2, parts=("trunk",)), optimizer=adamw)
    r = frozen.train_round(data(1, ids=("a", "b")), local_steps=1)
    assert frozen.layout is None and r.averaged == () and r.update_bytes == 0 and len(r.losses) == 2
    assert frozen.clients["a"].optimizer is None


def sgd1(params):
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=1.0)


def test_an_outer_adamw_over_one_sgd_step_is_adamw_on_the_clients_mean_gradient(split):
    # FedOpt: with one local step of SGD(lr=1), start - average is the sample-weighted mean gradient
    alone = Federation(split, IDS, aggregate=None, optimizer=sgd1, server_optimizer=adamw)  # one SGD step each
    fed = Federation(split, IDS, aggregate="server", optimizer=sgd1, server_optimizer=adamw, outer_optimizer=adamw)
    start = blocks(fed, "a").clone()
    r_alone = alone.train_round(data(1), local_steps=1)
    r_fed = fed.train_round(data(1), local_steps=1)
    assert r_alone.losses == r_fed.losses
    pseudo = start - weighted_average([blocks(alone, c) for c in IDS], [r_alone.samples[c] for c in IDS])
    expected = torch.nn.Parameter(start.clone())
    step = adamw([expected])
    expected.grad = pseudo
    step.step()
    for cid in IDS:
        assert torch.equal(blocks(fed, cid), expected.detach())
    assert not torch.allclose(blocks(fed, "a"), start - pseudo)  # not the plain average


def test_one_client_with_an_outer_adamw_trains_like_adamw_alone(split):
    plain = Federation(split, ("a",), aggregate=None, optimizer=adamw)
    fedopt = Federation(split, ("a",), aggregate="server", optimizer=sgd1, server_optimizer=adamw,
                        outer_optimizer=adamw)
    for r in range(1, 4):
        batch = {"a": data(r, ids=("a",), steps=1)["a"]}
        assert plain.train_round(batch).losses["a"] == pytest.approx(fedopt.train_round(batch).losses["a"], abs=1e-5)
    # start - (start - g) rounds a gradient much smaller than its weight, and AdamW divides by the
    # gradient's size: a few coordinates differ by a fraction of one step (lr = 3e-3), the rest agree
    diff = (blocks(plain, "a") - blocks(fedopt, "a")).abs()
    assert diff.max() < 1e-4 and (diff > 1e-6).float().mean() < 0.005


def test_outer_optimizer_same_bits_in_both_modes_resumes_and_refuses_a_rejoin(split, tmp_path):
    runs = {}
    for mode in ("server", "clients"):
        fed = Federation(split, IDS, aggregate=mode, optimizer=sgd1, server_optimizer=adamw, outer_optimizer=adamw)
        fed.train_round(data(1))
        fed.save(tmp_path / mode)
        runs[mode] = [fed.train_round(data(r)).losses for r in (2, 3)]
        again = Federation.resume(tmp_path / mode, split, optimizer=sgd1, server_optimizer=adamw,
                                  outer_optimizer=adamw)
        assert [again.train_round(data(r)).losses for r in (2, 3)] == runs[mode], mode
        fed.drop("b")
        with pytest.raises(NotImplementedError, match="outer_optimizer"):
            fed.rejoin("b")
        assert "b" in fed.offline
    assert runs["server"] == runs["clients"]
