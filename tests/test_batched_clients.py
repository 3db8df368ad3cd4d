"""Batched client blocks (one vmapped call for many simulated clients) give each client exactly
what separate clients give: losses, weights, optimizer state and the frames on the wire."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from flglm_kit.batched import run_round_batched
from flglm_kit.models import tiny_model
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import ClientBatching, Sequential

from conftest import make_parties

TOL = 1e-5
STEPS = 3
IDS = ["a", "b", "c", "d", "e"]


def sgd(params):
    # SGD, not Adam, where weights are compared (see tests/test_scheduling.py); momentum gives
    # each client an optimizer state to compare.
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def batch(k: int, step: int):
    """a, b: (2, 12) right-padded differently; c, d: (1, 16) without padding; e: a shape of its own."""
    g = torch.Generator().manual_seed(100 * k + step)
    shape, keep = [((2, 12), [12, 7]), ((2, 12), [9, 12]), ((1, 16), [16]), ((1, 16), [16]), ((1, 10), [10])][k]
    ids = torch.randint(3, 40, shape, generator=g)
    mask = (torch.arange(shape[1])[None, :] < torch.tensor(keep)[:, None]).long()  # (B, T)
    return ids.masked_fill(mask == 0, 0), mask


def parties(model, scheduler):
    p = make_parties(copy.deepcopy(model), client_ids=IDS, optimizer=sgd, scheduler=scheduler, keep_frames=True)
    for k, client in enumerate(p.clients):  # each client its own weights, as after local training
        g = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for param in [*client.head.parameters(), *client.tail.parameters()]:
                param.add_(0.02 * torch.randn(param.shape, generator=g))
    return p


def client_state(client):
    weights = [p.detach().clone() for p in [*client.head.parameters(), *client.tail.parameters()]]
    state = [s["momentum_buffer"].clone() for s in client.optimizer.state.values()]
    return weights, state


def wire(transport, cid):
    return [(r.direction, r.kind, r.step, r.seq, r.encrypted, r.nbytes) for r in transport.ledger if r.client_id == cid]


@pytest.fixture(autouse=True)
def _quiet_vmap_fallback():
    with warnings.catch_warnings():  # CPU sdpa has no vmap batching rule yet: torch loops over clients
        warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
        yield


@pytest.mark.parametrize("scheduler", [ClientBatching, Sequential])
def test_batched_clients_get_exactly_what_separate_clients_get(scheduler):
    # Prepare: the same five clients (each its own weights) twice.
    model = tiny_model("glm", seed=11)
    plain, batched = parties(model, scheduler()), parties(model, scheduler())
    # Execute
    got, want = [], []
    for step in range(STEPS):
        work = [batch(k, step) for k in range(len(IDS))]
        want.append(run_round(list(zip(plain.clients, work))))
        got.append(run_round_batched(list(zip(batched.clients, work))))
    # Assert: the clients ran as two batched calls and one alone, and nobody was dropped ...
    assert got[0].groups == [("a", "b"), ("c", "d"), ("e",)]
    assert all(not r.dropped and len(r.losses) == len(IDS) for r in got + want)
    # ... each client's losses, weights and optimizer state are those of the separate run ...
    loss_diff = max(abs(g.losses[c] - w.losses[c]) for g, w in zip(got, want) for c in IDS)
    assert loss_diff < TOL
    for mine, theirs in zip(batched.clients, plain.clients):
        assert mine.step == theirs.step == STEPS
        (w1, s1), (w2, s2) = client_state(mine), client_state(theirs)
        assert len(w1) == len(w2) and len(s1) == len(s2) == len(w1)
        assert max(float((x - y).abs().max()) for x, y in zip(w1 + s1, w2 + s2)) < TOL, mine.client_id
    assert not all(torch.equal(x, y) for x, y in zip(client_state(batched.clients[0])[0],
                                                      client_state(batched.clients[1])[0]))  # clients differ
    for x, y in zip(batched.server.trunk.parameters(), plain.server.trunk.parameters()):
        assert float((x - y).detach().abs().max()) < TOL
    # ... and the wire carries the same frames: each client's own, encrypted, in its own sequence.
    for cid in IDS:
        frames = wire(batched.transport, cid)
        assert frames == wire(plain.transport, cid)
        assert all(encrypted for _, kind, _, _, encrypted, _ in frames if kind not in ("hello", "welcome"))
        sent = [seq for direction, kind, _, seq, _, _ in frames if direction == "client->server" and kind != "hello"]
        assert sent == list(range(1, 2 * STEPS + 1))  # sealed by this client's channel, nobody else's


def test_a_malformed_batch_stops_the_round_before_anything_is_sent():
    p = parties(tiny_model("glm", seed=12), ClientBatching())
    frames = len(p.transport.ledger)
    work = [batch(k, 0) for k in range(len(IDS))]
    work[3] = (work[3][0].float(), work[3][1])
    with pytest.raises(ValueError, match="^d: input_ids must hold integer token ids"):
        run_round_batched(list(zip(p.clients, work)))
    assert len(p.transport.ledger) == frames and all(c.step == 0 for c in p.clients)
    with pytest.raises(ValueError, match="repeated"):
        run_round_batched([(p.clients[0], work[0]), (p.clients[0], work[0])])
