"""The exercise checkers are right: the reference answer passes, wrong schedulers fail, with reasons."""

from __future__ import annotations

import time

import pytest
import torch

from flglm_kit.exercises import check_scheduler, small_federation
from flglm_kit.models import tiny_model
from flglm_kit.scheduling import ClientBatching, Scheduler, Sequential, is_eval_forward, is_train_forward


class DeadlineBatching(Scheduler):
    """Reference answer to notebook 05's exercise 1: batch what has arrived once the oldest waited ``window_s``."""

    name = "deadline-batching"

    def __init__(self, window_s: float = 0.02) -> None:
        super().__init__()
        self.window_s = window_s
        self.open = None
        self.grads = {}

    def run(self) -> int:
        desk, compute = self.desk, self.computes[0]
        answered = 0
        while True:
            evals = desk.take(is_eval_forward)  # evaluation never waits: it moves no weight
            for reply in compute.forward_eval(evals) if evals else []:
                desk.reply(reply)
            answered += len(evals)
            if self.open is None and not self._start():
                return answered
            for m in desk.take(lambda m: m.kind == "output_grads" and m.client_id in self.open.members):
                self.grads[m.client_id] = m
            if len(self.grads) < len(self.open.members):
                return answered
            given = {cid: (m.tensors["output_grads"], int(m.meta["tokens"])) for cid, m in self.grads.items()}
            for reply in compute.backward(self.open, given):
                desk.reply(reply)
            answered += len(self.grads)
            self.open, self.grads = None, {}

    def _start(self) -> bool:
        desk = self.desk
        oldest = desk.arrival_of(is_train_forward)
        if oldest is None or self.clock() - oldest < self.window_s:
            return False
        firsts = {}
        for m in desk.peek(is_train_forward):
            firsts.setdefault(m.client_id, m)  # one step per client: its earliest
        chosen = set(map(id, firsts.values()))
        msgs = desk.take(lambda m: id(m) in chosen)
        self.open, replies = self.computes[0].forward_train(msgs)
        for reply in replies:
            desk.reply(reply, awaits_grads=True)
        return True

    def next_deadline(self):
        oldest = self.desk.arrival_of(is_train_forward)
        return None if self.open is not None or oldest is None else oldest + self.window_s


class DropsTheLast(ClientBatching):
    """Wrong: refuses the last-arriving client of every batch."""

    def run(self) -> int:
        queued = self.desk.peek(is_train_forward)
        if len(queued) > 1:
            last = queued[-1]
            self.desk.take(lambda m: m is last)
            self.desk.refuse(last.client_id, last.step, "not today")
        return super().run()


class IgnoresEvaluation(ClientBatching):
    """Wrong: trains like client-batching but never answers an evaluation request."""

    def _run_evals(self, compute, accept=lambda m: True) -> int:
        return 0

    def next_deadline(self):
        return time.monotonic() + 0.01  # and keeps promising to


class Silent(Scheduler):
    """Wrong: answers nothing, while promising a deadline (would hang a round for ever)."""

    def run(self) -> int:
        return 0

    def next_deadline(self):
        return time.monotonic() + 0.01


class Broken(Scheduler):
    def run(self) -> int:
        raise ZeroDivisionError("oops")


class NotYet(Scheduler):
    def run(self) -> int:
        raise NotImplementedError


def test_the_reference_answer_passes(capsys):
    assert check_scheduler(DeadlineBatching) is True
    out = capsys.readouterr().out
    assert "[FAIL]" not in out and out.count("[OK]") == 6 and "well done" in out


def test_client_batching_itself_passes_quietly(capsys):
    assert check_scheduler(lambda: ClientBatching(clients=None), verbose=False) is True
    assert capsys.readouterr().out == ""


def test_stepping_the_optimizer_per_client_fails(capsys):
    assert check_scheduler(Sequential) is False
    out = capsys.readouterr().out
    assert "[FAIL] one optimizer step per round" in out
    assert "[FAIL] each client's losses equal client-batching's" in out


def test_dropping_a_client_fails(capsys):
    assert check_scheduler(DropsTheLast) is False
    assert "client step(s) failed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, says", [
    (IgnoresEvaluation, "[FAIL] an evaluation request was not answered"),
    (Silent, "did not finish within"),
    (Broken, "ZeroDivisionError: oops"),
    (NotYet, "not written yet"),
    (lambda: "a string", "needs a Scheduler"),
])
def test_other_wrong_answers_fail_with_a_reason(wrong, says, capsys):
    start = time.monotonic()
    assert check_scheduler(wrong, time_limit_s=1.0) is False
    assert says in capsys.readouterr().out
    assert time.monotonic() - start < 30


def test_waiting_for_absent_clients_fails():
    # ClientBatching(clients=3) waits up to its deadline for a third client that is not coming.
    assert check_scheduler(lambda: ClientBatching(clients=3, deadline_s=60), time_limit_s=0.5, verbose=False) is False


def test_small_federation_gives_each_client_its_own_blocks_and_leaves_the_model_alone():
    model = tiny_model(seed=1)
    before = [p.detach().clone() for p in model.parameters()]
    fed = small_federation(model, num_clients=2, scheduler=ClientBatching())
    a, b = fed.clients.values()
    assert a.head is not b.head and a.channel is not None and b.channel is not None
    a.train_step(torch.randint(3, 100, (1, 8)))
    assert all(torch.equal(x, y) for x, y in zip(before, model.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.head.parameters(), b.head.parameters()))


def test_check_fedavg_passes_the_weighted_mean_and_fails_the_plain_one(capsys):
    from flglm_kit.exercises import check_fedavg

    def weighted(states, samples):
        total = sum(samples.values())
        names = next(iter(states.values()))
        return {n: sum(states[c][n] * (samples[c] / total) for c in states) for n in names}

    def plain(states, samples):
        names = next(iter(states.values()))
        return {n: sum(states[c][n] for c in states) / len(states) for n in names}

    def in_place(states, samples):
        out = weighted(states, samples)
        for st in states.values():
            for t in st.values():
                t.zero_()
        return out

    def unwritten(states, samples):
        raise NotImplementedError

    assert check_fedavg(weighted, verbose=False) is True
    assert check_fedavg(plain, verbose=False) is False
    assert check_fedavg(in_place, verbose=False) is False
    assert check_fedavg(unwritten) is False
    assert "not written yet" in capsys.readouterr().out
