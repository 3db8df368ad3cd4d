"""The two parties over encrypted bytes: same training as centralized, nothing private leaves,
and bad input never hurts the server or the other clients."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from flglm_kit.audit import verbatim_leaks
from flglm_kit.client import ServerError, SplitClient
from flglm_kit.crypto import Identity, InsecureChannelWarning, peek_header
from flglm_kit.models import tiny_model
from flglm_kit.server import SplitServer
from flglm_kit.split import Spans, split_model
from flglm_kit.transport import InProcessTransport
from flglm_kit.wire import Message, encode

from conftest import adamw, batches, make_parties

TOL = 1e-5


def centralized_losses(model, data):
    opt = adamw(model.parameters())
    losses = []
    for ids, mask in data:
        out = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    return losses


@pytest.mark.parametrize("layout", [dict(), dict(head_layers=0, tail_layers=0, tail_on_server=True)],
                         ids=["fl-glm", "naive-tail-on-server"])
def test_split_training_equals_centralized(layout):
    # Prepare: one model, two identical copies.
    model = tiny_model("glm", seed=3)
    reference = copy.deepcopy(model)
    data = batches(20)
    split, server, transport, (client,) = make_parties(model, **layout)

    # Execute
    split_losses = [client.train_step(ids, mask) for ids, mask in data]
    central = centralized_losses(reference, data)

    # Assert: per-step losses and final weights agree.
    assert max(abs(a - b) for a, b in zip(split_losses, central)) < TOL
    assert central[-1] < central[0] - 0.5  # it did learn something, so the comparison means something
    final = dict(reference.named_parameters())
    parts = {"head": client.head, "trunk": server.trunk, "tail": server.tail if layout else client.tail}
    for part, module in parts.items():
        for name, p in module.named_parameters():
            assert torch.allclose(p, final[split.original_name(part, name)], atol=TOL, rtol=0), name


def _captured_run(**layout):
    model = tiny_model("glm", seed=4)
    split, server, transport, (client,) = make_parties(model, **layout)
    seen: list[Message] = []
    server.add_tap(seen.append)
    data = []
    for ids, mask in batches(3, seed=5):
        # The raw embeddings as they are at this step (training moves the table).
        data.append((ids, mask, client.head.embed_tokens(ids).detach()))
        client.train_step(ids, mask)
    return client, seen, transport, data


def _private_tensors_in(messages, data):
    """Names of tensors in ``messages`` that equal token ids, labels or raw embeddings."""
    hits = set()
    for ids, mask, embeddings in data:
        for leak in verbatim_leaks(messages, input_ids=ids, labels=ids.masked_fill(mask == 0, -100),
                                   embeddings=embeddings):
            hits.add(leak.split(".")[-1])
    return hits


def test_no_token_id_label_or_embedding_leaves_the_client():
    client, seen, transport, data = _captured_run()
    assert {m.kind for m in seen} == {"activations", "output_grads"}
    assert _private_tensors_in(seen, data) == set()
    # Only the per-sample spans are integers, one number per sample.
    for msg in seen:
        for name, t in msg.tensors.items():
            assert t.is_floating_point() or (name in ("starts", "lengths") and t.dim() == 1)
    # And the wire carries ciphertext only (after the handshake).
    assert all(r.encrypted for r in transport.ledger if r.kind not in ("hello", "welcome"))


def test_the_leak_check_catches_the_naive_layouts():
    # Positive controls: the same check must fire when the layout does leak.
    client, seen, _, data = _captured_run(head_layers=0)
    assert _private_tensors_in(seen, data) == {"activations"}  # raw embeddings
    client, seen, _, data = _captured_run(head_layers=0, tail_layers=0, tail_on_server=True)
    assert "labels" in _private_tensors_in(seen, data)


def test_eval_forward_matches_the_split_model():
    model = tiny_model("glm", seed=6)
    split, server, transport, (client,) = make_parties(model)
    ids, mask = batches(1, seed=7)[0]
    expected = split(ids, attention_mask=mask).logits
    got = client.forward(ids, mask)
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=TOL)
    assert server.steps_done == 0  # evaluation does not train


def _flip(frame: bytes, index: int) -> bytes:
    b = bytearray(frame)
    b[index] ^= 0x01
    return bytes(b)


def test_server_rejects_bad_input_and_keeps_serving():
    # Prepare: client A trains one honest step, then an attacker who controls the wire tampers
    # with and replays A's frames while client B trains. The reference run is the same without
    # the attacker.
    data = batches(6, seed=8)
    model = tiny_model("glm", seed=9)

    def honest_run(model):
        _, server, transport, (a, b) = make_parties(model, client_ids=("a", "b"))
        captured: list[bytes] = []
        transport.add_tap(lambda r: captured.append(r.frame)
                          if r.direction == "client->server" and r.client_id == "a" else None)
        a.train_step(*batches(1, seed=99)[0])
        return server, transport, b, captured[-1]

    _, _, ref_b, _ = honest_run(copy.deepcopy(model))
    reference = [ref_b.train_step(ids, mask) for ids, mask in data]
    server, transport, b, good_frame = honest_run(model)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureChannelWarning)
        from flglm_kit.crypto import PlaintextChannel
        zeros = {"activations": torch.zeros(1, 4, 64)}
        forged = PlaintextChannel("a").seal(Message("activations", "a", 99, tensors=zeros))
        stranger = PlaintextChannel("z").seal(Message("activations", "z", 1, tensors=zeros))
    hostile = {
        "garbage": b"\x00garbage",
        "empty": b"",
        "tampered": _flip(good_frame, len(good_frame) - 40),
        # A fresh sequence number gets the frame past the replay check, so the GCM tag decides.
        "tampered, fresh seq": _flip(_flip(good_frame, len(good_frame) - 40), 8 + len("a") + 8),
        "tampered header": _flip(good_frame, 12),
        "replayed": good_frame,
        "unknown client": stranger,
        "plaintext forgery": forged,
        "raw message": encode(Message("activations", "a", 1)),
    }
    # Execute: interleave B's honest steps with every hostile frame.
    losses_b = []
    for i, (ids, mask) in enumerate(data):
        for name, frame in list(hostile.items())[i::len(data)]:
            before = {k: v.clone() for k, v in server.state_dict().items()}
            reply = transport.request(frame)
            # Assert: an error reply, weights untouched.
            assert peek_header(reply).kind == "error", name
            assert all(torch.equal(before[k], v) for k, v in server.state_dict().items()), name
        losses_b.append(b.train_step(ids, mask))
    assert len(server.errors) == len(hostile)
    assert any("authentication failed" in text for _, text in server.errors)
    assert max(abs(x - y) for x, y in zip(losses_b, reference)) < TOL


def test_authenticated_but_invalid_requests_get_clear_errors():
    model = tiny_model("glm", seed=10)
    _, server, transport, (client,) = make_parties(model)
    channel = client.channel
    cases = {
        "wrong hidden size": (Message("activations", client.client_id, 1, tensors={
            "activations": torch.zeros(2, 4, 32), "starts": torch.zeros(2, dtype=torch.long),
            "lengths": torch.full((2,), 4)}), "activations must be"),
        "missing spans": (Message("activations", client.client_id, 2, tensors={
            "activations": torch.zeros(2, 4, 64)}), "needs a tensor 'starts'"),
        "NaN": (Message("activations", client.client_id, 3, tensors={
            "activations": torch.full((2, 4, 64), float("nan")), "starts": torch.zeros(2, dtype=torch.long),
            "lengths": torch.full((2,), 4)}), "NaN"),
        "span past the end": (Message("activations", client.client_id, 4, tensors={
            "activations": torch.zeros(2, 4, 64), "starts": torch.ones(2, dtype=torch.long),
            "lengths": torch.full((2,), 4)}), "runs past"),
        "grads with no forward": (Message("output_grads", client.client_id, 5, tensors={
            "output_grads": torch.zeros(2, 4, 64)}), "waits for nothing"),
        "server-only kind": (Message("trunk_output", client.client_id, 6), "does not accept"),
    }
    for name, (msg, expected) in cases.items():
        reply = channel.open(transport.request(channel.seal(msg)))
        assert reply.kind == "error", name
        assert expected in reply.meta["error"], (name, reply.meta["error"])
    # The client still trains afterwards.
    ids, mask = batches(1)[0]
    assert client.train_step(ids, mask) > 0


def test_client_errors_surface_the_servers_reason():
    model = tiny_model("glm", seed=11)
    split = split_model(model)
    server_id = Identity.generate()
    server = SplitServer(split.trunk, identity=server_id)
    client = SplitClient(split.head, split.tail, client_id="stranger", transport=InProcessTransport(server),
                         server_fingerprint=server_id.fingerprint)
    with pytest.raises(ServerError, match="unknown client 'stranger'"):
        client.connect()
    head, tail = copy.deepcopy((split.head, split.tail))  # a second live client needs its own blocks
    impostor = SplitClient(head, tail, client_id="x", transport=InProcessTransport(server),
                           server_fingerprint=Identity.generate().fingerprint)
    server.enroll("x", impostor.identity.public_bytes)
    with pytest.raises(Exception, match="fingerprint"):
        impostor.connect()


def test_a_replayed_handshake_cannot_cut_a_client_off():
    model = tiny_model("glm", seed=12)
    _, server, transport, _ = make_parties(model)  # a federation with one client; "a" joins it by hand
    split = split_model(tiny_model("glm", seed=12))
    client = SplitClient(split.head, split.tail, client_id="a", transport=transport,
                         server_fingerprint=server.identity.fingerprint, optimizer=adamw)
    server.enroll("a", client.identity.public_bytes)
    hellos: list[bytes] = []
    transport.add_tap(lambda r: hellos.append(r.frame) if r.kind == "hello" else None)
    client.connect()
    reply = transport.request(hellos[0])  # an eavesdropper replays the client's hello
    assert peek_header(reply).kind == "error"
    assert "replayed handshake" in server.errors[-1][1]
    assert client.train_step(*batches(1)[0]) > 0  # the real client's channel still works


def test_activation_noise_reaches_the_server_at_the_requested_level():
    model = tiny_model("glm", seed=13)
    split, server, transport, (client,) = make_parties(model, client_ids=("a",), noise_rel=0.5)
    seen: list[Message] = []
    server.add_tap(seen.append)
    ids, _ = batches(1)[0]
    clean = split.head(ids, Spans.full(*ids.shape)).detach()  # the client holds a copy of these weights
    client.forward(ids)
    received = seen[0].tensors["activations"]
    ratio = float((received - clean).pow(2).mean().sqrt() / clean.pow(2).mean().sqrt())
    assert 0.45 < ratio < 0.55
    with pytest.raises(ValueError, match="noise_rel"):
        SplitClient(split.head, split.tail, client_id="b", transport=transport,
                    server_fingerprint=server.identity.fingerprint, noise_rel=-1)
