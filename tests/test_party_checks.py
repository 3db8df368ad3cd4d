"""The parties' guard rails: bad batches stop at the client, internals stay on the server, taps
record what arrived, modes follow each request, memory stays bounded, and the layers stay apart."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys

import pytest
import torch

import flglm_kit.server as server_module
from flglm_kit.client import ServerError, SplitClient
from flglm_kit.crypto import Identity, peek_header
from flglm_kit.models import tiny_model
from flglm_kit.server import SplitServer
from flglm_kit.split import Spans, split_model
from flglm_kit.transport import InProcessTransport

from conftest import adamw, batches, make_parties

TOL = 1e-5


def _weights(*modules):
    return [p.detach().clone() for m in modules if m is not None for p in m.parameters()]


def _unchanged(before, *modules):
    return all(torch.equal(a, b) for a, b in zip(before, _weights(*modules)))


# -- bad batches stop at the client ------------------------------------------------------------

BAD_BATCHES = {
    "all padding": (dict(input_ids=torch.zeros(2, 6, dtype=torch.long), attention_mask=torch.zeros(2, 6)),
                    "no supervised token"),
    "every label ignored": (dict(input_ids=torch.full((2, 6), 5), labels=torch.full((2, 6), -100)),
                            "no supervised token"),
    "id past the vocabulary": (dict(input_ids=torch.tensor([[5, 512, 7]])), "outside this model's vocabulary"),
    "negative id": (dict(input_ids=torch.tensor([[5, -1, 7]])), "outside this model's vocabulary"),
    "float ids": (dict(input_ids=torch.tensor([[5.0, 6.0]])), "integer token ids"),
    "empty batch": (dict(input_ids=torch.zeros(0, 4, dtype=torch.long)), "non-empty"),
    "one dimension": (dict(input_ids=torch.tensor([5, 6, 7])), "ids\\[None\\]"),
    "mask shape": (dict(input_ids=torch.full((2, 6), 5), attention_mask=torch.ones(2, 5)), "attention_mask must have"),
    "mask values": (dict(input_ids=torch.full((1, 3), 5), attention_mask=torch.tensor([[1, 2, 1]])), "0 and 1"),
    "label shape": (dict(input_ids=torch.full((2, 6), 5), labels=torch.full((2, 5), 5)), "labels must have"),
    "label past the vocabulary": (dict(input_ids=torch.full((1, 3), 5), labels=torch.tensor([[5, 9999, 5]])),
                                  "labels must be token ids"),
    "float labels": (dict(input_ids=torch.full((1, 3), 5), labels=torch.full((1, 3), 5.0)), "labels must hold"),
}


@pytest.mark.parametrize("case", BAD_BATCHES, ids=list(BAD_BATCHES))
def test_a_bad_batch_is_refused_by_the_client_and_nothing_moves(case):
    # Prepare
    kwargs, message = BAD_BATCHES[case]
    split, server, transport, (client,) = make_parties(tiny_model("glm", seed=1))
    before = _weights(client.head, client.tail, server.trunk)
    frames, step = len(transport.ledger), client.step
    # Execute / Assert: a ValueError that says what is wrong, and nothing sent or stepped
    with pytest.raises(ValueError, match=message):
        client.train_step(**kwargs)
    assert len(transport.ledger) == frames and client.step == step
    assert _unchanged(before, client.head, client.tail, server.trunk)
    assert client.train_step(*batches(1)[0]) > 0  # the client still trains


def test_a_batch_without_supervised_tokens_is_refused_by_the_server_too():
    # The naive layout sends labels, so a client that skipped the check meets the server's.
    split, server, transport, (client,) = make_parties(tiny_model("glm", seed=2), head_layers=0, tail_layers=0,
                                                       tail_on_server=True)
    before = _weights(server.trunk, server.tail)
    ids = torch.full((1, 4), 5)
    msg = server_module.Message("activations", client.client_id, 1, tensors={
        "activations": client.head(ids, Spans.full(1, 4)).detach(), **Spans.full(1, 4).to_tensors(),
        "labels": torch.full((1, 4), -100)}, meta={"mode": "train"})
    reply = client.channel.open(transport.request(client.channel.seal(msg)))
    assert reply.kind == "error" and "no supervised token" in reply.meta["error"]
    assert _unchanged(before, server.trunk, server.tail)


def test_noise_rel_must_be_a_finite_non_negative_number():
    split, server, transport, (client,) = make_parties(tiny_model("glm", seed=3))
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match="noise_rel must be a finite number"):
            type(client)(copy.deepcopy(split.head), copy.deepcopy(split.tail), client_id="b", transport=transport,
                         server_fingerprint=server.identity.fingerprint, noise_rel=bad)


# -- what a tap captures, and what a client is told --------------------------------------------

def test_taps_keep_what_arrived_without_gradient_or_graph():
    parties = make_parties(tiny_model("glm", seed=4))
    (client,) = parties.clients
    ids, mask = batches(1)[0]
    expected = client.head(ids, Spans.from_attention_mask(mask)).detach().clone()  # before the step moves it
    client.train_step(ids, mask)
    (msg,) = [m for m in parties.seen if m.kind == "activations"]
    acts = msg.tensors["activations"]
    assert not acts.requires_grad and acts.grad is None and acts.grad_fn is None
    assert all(t.grad is None and t.grad_fn is None and not t.requires_grad
               for m in parties.seen for t in m.tensors.values())
    assert torch.equal(acts, expected)  # what the client sent, bit for bit


def test_a_failure_inside_the_server_sends_a_request_id_not_internals(caplog, monkeypatch):
    split, server, transport, (client,) = make_parties(tiny_model("glm", seed=5))

    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (8x64 and 128x64) in trunk.layers.1")

    monkeypatch.setattr(server.trunk, "forward", broken)
    with caplog.at_level(logging.ERROR, logger="flglm_kit.server"), pytest.raises(ServerError) as err:
        client.train_step(*batches(1)[0])
    text = str(err.value)
    assert "request " in text and "mat1" not in text and "shape" not in text and "trunk.layers" not in text
    request_id = text.split("request ")[1].split(")")[0]
    assert any(request_id in r.getMessage() and "mat1" in str(r.exc_info[1]) for r in caplog.records)
    monkeypatch.undo()
    assert client.train_step(*batches(1)[0]) > 0  # and the server goes on serving


# -- train and evaluation modes ----------------------------------------------------------------

def test_each_request_sets_train_or_eval_mode_on_both_parties():
    # A checkpoint with dropout must train with it and evaluate without it.
    model = tiny_model("glm", seed=6, attention_dropout=0.5)
    reference = copy.deepcopy(model).eval()
    split, server, transport, (client,) = make_parties(model)
    modes = []
    for module, name in ((client.head, "head"), (server.trunk, "trunk"), (client.tail, "tail")):
        module.register_forward_pre_hook(lambda m, args, name=name: modes.append((name, m.training)))
    ids, mask = batches(1, seed=7)[0]
    client.train_step(ids, mask)
    assert modes == [("head", True), ("trunk", True), ("tail", True)]
    modes.clear()
    first, second = client.forward(ids, mask), client.forward(ids, mask)
    assert modes == [("head", False), ("trunk", False), ("tail", False)] * 2
    assert torch.equal(first, second)  # no dropout when evaluating
    # The split in eval mode is the whole model in eval mode, weights as trained.
    state = {split.original_name(p, n): v for p, m in (("head", client.head), ("trunk", server.trunk),
                                                           ("tail", client.tail)) for n, v in m.state_dict().items()}
    reference.load_state_dict(state, strict=False)
    real = mask.bool()
    assert torch.allclose(first[real], reference(ids, attention_mask=mask).logits[real], atol=TOL)


# -- bounded memory ----------------------------------------------------------------------------

def _wired_by_hand(model, client_ids, *, max_records):
    """make_parties wired by hand, for a ledger of ``max_records``: Federation takes no transport options."""
    split = split_model(model)
    server = SplitServer(split.trunk, identity=Identity.generate(), optimizer=adamw)
    transport = InProcessTransport(server, max_records=max_records)
    clients = []
    for cid in client_ids:
        head, tail = copy.deepcopy((split.head, split.tail))
        clients.append(SplitClient(head, tail, client_id=cid, transport=transport, optimizer=adamw,
                                   server_fingerprint=server.identity.fingerprint))
        server.enroll(cid, clients[-1].identity.public_bytes)
        clients[-1].connect()
    return server, transport, clients


def test_the_ledger_is_a_bounded_ring_and_byte_totals_count_everything():
    server, transport, (client,) = _wired_by_hand(tiny_model("glm", seed=8), ["hospital-a"], max_records=5)
    for ids, mask in batches(4):
        client.train_step(ids, mask)
    assert len(transport.ledger) == 5 and all(r.frame is None for r in transport.ledger)
    # 2 handshake frames + 4 frames per step, all counted although the ledger kept 5
    up = transport.bytes_sent()["client->server"]
    assert up > 4 * 2 * 64 * 4 and transport.bytes_sent("hospital-a") == transport.bytes_sent()


def test_the_servers_error_list_and_replay_memory_are_bounded(monkeypatch):
    monkeypatch.setattr(server_module, "HELLOS_REMEMBERED", 3)
    split, server, transport, (client,) = make_parties(tiny_model("glm", seed=9))
    for i in range(server_module.MAX_ERRORS + 50):
        transport.request(b"garbage %d" % i)
    assert len(server.errors) == server_module.MAX_ERRORS
    hellos = []
    transport.add_tap(lambda r: hellos.append(r.frame) if r.kind == "hello" else None)
    for _ in range(5):
        client.connect()
        assert client.train_step(*batches(1)[0]) > 0
    order, seen = server._seen_hellos["hospital-a"]
    assert len(order) == len(seen) == 3
    # The newest hellos are remembered and refused; the oldest are forgotten, and replaying one
    # opens a channel nobody can use, beside the live one: the client is not cut off.
    assert "replayed handshake" in _error_of(transport.request(hellos[-1]))
    assert peek_header(transport.request(hellos[0])).kind == "welcome"
    assert client.train_step(*batches(1)[0]) > 0
    assert len(server._fresh.get("hospital-a", ())) <= server_module.MAX_FRESH_CHANNELS


def _error_of(frame):
    from flglm_kit.crypto import open_plain
    return open_plain(frame).meta["error"]


def test_a_long_run_holds_memory_flat():
    # Eight clients, many steps: every per-step structure on the server and the wire stays bounded.
    server, transport, clients = _wired_by_hand(tiny_model("glm", seed=10, num_hidden_layers=3, hidden_size=32,
                                                           head_dim=8, intermediate_size=32),
                                                [f"c{i}" for i in range(8)], max_records=100)
    ids = torch.randint(3, 512, (1, 8))
    for _ in range(40):
        for client in clients:
            client.train_step(ids)
    assert len(transport.ledger) == 100
    assert len(server._expect) == 0 and len(server._queue) == 0 and not server.scheduler.runner.busy()
    assert all(len(box) == 0 for box in server._outbox.values())
    assert server.steps_done == 320


# -- layering ----------------------------------------------------------------------------------

def test_the_client_imports_neither_the_server_nor_the_transport_nor_the_attacks():
    code = ("import sys, flglm_kit.client; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('flglm_kit'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout.split()
    assert "flglm_kit.client" in out
    assert not [m for m in out if m.startswith(("flglm_kit.server", "flglm_kit.transport", "flglm_kit.attacks"))]


def test_the_transport_talks_to_any_frame_handler():
    # Not only a SplitServer: anything with submit / run_pending / outbox.
    from collections import deque

    class Echo:
        def __init__(self):
            self.boxes = {}

        def submit(self, frame):
            self.boxes.setdefault("?", deque()).append(frame[::-1])
            return None

        def run_pending(self):
            return 0

        def outbox(self, client_id):
            return self.boxes.setdefault(client_id, deque())

    assert InProcessTransport(Echo()).request(b"abc") == b"cba"


# -- parties built from different models or splits refuse each other ---------------------------

@pytest.mark.parametrize("other", [dict(model_seed=0, num_hidden_layers=5), dict(model_seed=0, head_layers=2),
                                   dict(model_seed=0, vocab_size=500)], ids=["layers", "cut", "vocab"])
def test_a_client_from_another_model_or_split_is_refused_at_connect_time(other):
    # Same hidden size everywhere: before the binding these pairs trained together silently.
    other = dict(other)
    head_layers = other.pop("head_layers", 1)
    other.pop("model_seed")
    parties = make_parties(tiny_model("glm", seed=0))  # a federation with one client; two more try to join
    wrong = split_model(tiny_model("glm", seed=0, **other), head_layers=head_layers, tail_layers=1)
    client = SplitClient(wrong.head, wrong.tail, client_id="x", transport=parties.transport,
                         server_fingerprint=parties.server.identity.fingerprint)
    parties.server.enroll("x", client.identity.public_bytes)
    with pytest.raises(ServerError, match="was built for model/split .* this server for"):
        client.connect()
    right = split_model(tiny_model("glm", seed=0))
    ok = SplitClient(right.head, right.tail, client_id="y", transport=parties.transport,
                     server_fingerprint=parties.server.identity.fingerprint)
    parties.server.enroll("y", ok.identity.public_bytes)
    ok.connect()  # the same model and split connect
    assert ok.train_step(torch.randint(3, 512, (1, 8))) > 0
