"""Fuzzing the schedulers: honest clients interleave complete steps while hostile frames arrive.

Under each scheduler, three honest clients train together with :func:`run_round`; between
their messages an attacker who controls the wire posts hostile frames: random bytes, flipped
bits in captured honest frames, replays, frames re-headed for another client, and messages that
mallory (enrolled, with valid keys) seals herself but that the server must refuse. The claim:
no exception escapes, every hostile frame gets an error reply, no honest step fails, and the
honest clients' losses and the trunk's weights equal a run with no attacker.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest
import torch

from flglm_kit.client import ServerError
from flglm_kit.crypto import ClientHandshake, Identity, peek_header
from flglm_kit.models import tiny_model
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import ClientBatching, Sequential, ServerHierarchical
from flglm_kit.wire import Message

from conftest import make_parties

ROUNDS = 12
HOSTILE_PER_ROUND = 30
TOL = 1e-5
HONEST = ("a", "b", "c")

SCHEDULERS: dict[str, Callable[[], object]] = {
    "sequential": Sequential,
    "client-batching": ClientBatching,
    "server-hierarchical": lambda: ServerHierarchical(2, sync_every=2),
}


def batch(k: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * k + step)
    ids = torch.randint(3, 40, (2, 8 + 2 * k), generator=g)
    return ids, torch.ones_like(ids)


class Attacker:
    """Controls the wire (captures frames) and holds mallory's valid keys."""

    def __init__(self, parties, rng: random.Random) -> None:
        self.parties, self.rng = parties, rng
        self.captured: list[bytes] = []
        self.sent = 0
        parties.transport.add_tap(lambda r: self.captured.append(r.frame) if r.frame and
                                  r.direction == "client->server" and r.client_id in HONEST else None)
        identity = Identity.generate()
        parties.server.enroll("mallory", identity.public_bytes)
        handshake = ClientHandshake("mallory", identity, parties.server_identity.fingerprint,
                                    **({"binding": parties.server.binding} if parties.server.binding else {}))
        self.mallory = handshake.finish(parties.transport.request(handshake.hello()))
        self.mallory_step = 0

    def frame(self) -> bytes:
        rng = self.rng
        kind = rng.choice(["random", "flip", "replay", "reheaded", "mallory bad", "mallory grads"])
        if kind == "random" or not self.captured:
            return rng.randbytes(rng.randint(0, 200))
        if kind in ("flip", "replay", "reheaded"):
            frame = bytearray(rng.choice(self.captured[-40:]))
            if kind == "flip":
                i = rng.randrange(len(frame))
                frame[i] ^= 1 << rng.randrange(8)
            elif kind == "reheaded":  # claim another honest client's id (same length: a, b, c)
                frame[8] = ord(rng.choice(HONEST))
            return bytes(frame)
        self.mallory_step += 1
        if kind == "mallory bad":  # authenticated, but the wrong hidden size
            tensors = {"activations": torch.zeros(1, 4, 7), "starts": torch.zeros(1, dtype=torch.long),
                       "lengths": torch.full((1,), 4)}
            return self.mallory.seal(Message("activations", "mallory", self.mallory_step, tensors=tensors))
        return self.mallory.seal(Message("output_grads", "mallory", self.mallory_step,  # she has no open step
                                         tensors={"output_grads": torch.zeros(1, 4, 64)}, meta={"tokens": 3}))

    def strike(self, n: int) -> None:
        for _ in range(n):
            reply = self.parties.transport.request(self.frame())
            assert peek_header(reply).kind == "error", "a hostile frame got a non-error reply"
            self.sent += 1


@pytest.mark.slow
@pytest.mark.parametrize("name", SCHEDULERS, ids=list(SCHEDULERS))
def test_honest_clients_interleave_while_hostile_frames_arrive(name):
    model = tiny_model("glm", seed=21)
    runs = {}
    for attacked in (False, True):
        parties = make_parties(copy.deepcopy(model), client_ids=HONEST, scheduler=SCHEDULERS[name]())
        attacker = Attacker(parties, random.Random(7)) if attacked else None
        losses = []
        for step in range(ROUNDS):
            work = [(c, batch(k, step)) for k, c in enumerate(parties.clients)]
            if attacker is not None:  # hostile frames while the round's steps are in flight
                steps = [c.begin_train_step(*b) for c, b in work]
                for s in steps:
                    parties.transport.post(s.pop_frame(), run=False)  # they arrive together, as in run_round
                attacker.strike(HOSTILE_PER_ROUND // 2)
                failures = _finish(parties, steps, attacker)
            else:
                failures = run_round(work).dropped
            assert not failures, failures  # no honest step failed
            losses.append([s_loss for s_loss in _losses_of(parties)])
        runs[attacked] = (losses, [p.detach().clone() for p in parties.server.trunk.parameters()], attacker)
    (clean, clean_w, _), (attacked_losses, attacked_w, attacker) = runs[False], runs[True]
    assert attacker.sent >= ROUNDS * HOSTILE_PER_ROUND // 2
    assert all(abs(x - y) < TOL for a, b in zip(clean, attacked_losses) for x, y in zip(a, b))
    assert all(torch.allclose(x, y, atol=TOL, rtol=0) for x, y in zip(clean_w, attacked_w))


def _losses_of(parties):
    return [c._in_flight.loss for c in parties.clients]


def _finish(parties, steps, attacker) -> dict[str, str]:
    """Drive the begun steps to the end, striking between messages; return failures by client."""
    failures: dict[str, str] = {}
    transport = parties.transport
    while not all(s.done for s in steps):
        progressed = False
        for s in steps:
            for reply in transport.collect(s.client_id):
                progressed = True
                try:
                    s.deliver(reply)
                except ServerError as err:
                    failures[s.client_id] = str(err)
                frame = s.pop_frame()
                if frame is not None:
                    transport.post(frame, run=False)
        attacker.strike(1)
        parties.server.run_pending()
        assert progressed or parties.server.next_deadline() is not None, "the round stalled"
    return failures
