"""The exercise checkers are right: the reference answer passes, wrong schedulers fail, with reasons."""

from __future__ import annotations

import time

import pytest
import torch

from flglm_kit.exercises import check_scheduler, small_federation
from flglm_kit.models import tiny_model
from flglm_kit.scheduling import ClientBatching, Scheduler, Sequential, is_eval_forward, is_train_forward
from flglm_kit.split import split_model


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
    # only Silent must run out of time; the others get room for a loaded machine
    assert check_scheduler(wrong, time_limit_s=1.0 if wrong is Silent else 10.0) is False
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


# -- notebooks 00-04: each checker passes its reference answer (notebooks/solutions) and fails a wrong one --

def _verdicts(check, right, wrong, *args):
    """(reference answer passes, wrong answer passes, no answer passes)."""
    return check(right, *args), check(wrong, *args), check(None, *args)


def test_checkers_of_notebook_00(capsys):
    from flglm_kit.exercises import check_parameter_count, check_vocab_size

    model = tiny_model("glm", seed=0)
    right = sum(p.numel() for p in tiny_model("glm", num_hidden_layers=8).parameters())
    assert _verdicts(check_parameter_count, right, sum(p.numel() for p in model.parameters())) == (True, False, False)
    assert _verdicts(check_vocab_size, model.config.vocab_size, 10, model) == (True, False, False)
    out = capsys.readouterr().out
    assert out.count("[OK]") == 2 and out.count("[FAIL]") == 2 and out.count("not answered yet") == 2
    assert str(right) not in out  # the checker never prints the answer


def test_checkers_of_notebook_01(capsys):
    from flglm_kit.exercises import check_activation_bytes, check_server_compute_share

    model = tiny_model("glm", seed=0, num_hidden_layers=6)
    flops = split_model(model, head_layers=2, tail_layers=1).flops_per_token(32)
    right = round(100 * flops["trunk"] / sum(flops.values()), 1)
    at_one = split_model(model, head_layers=1, tail_layers=1).flops_per_token(32)
    wrong = round(100 * at_one["trunk"] / sum(at_one.values()), 1)  # the share before the change
    assert abs(right - wrong) > 0.1
    assert _verdicts(check_server_compute_share, right, wrong, model) == (True, False, False)
    assert _verdicts(check_activation_bytes, lambda b, t, h: 4 * b * t * h, lambda b, t, h: b * t * h) == (
        True, False, False)
    assert check_activation_bytes(lambda b, t: 0) is False  # a wrong signature is a friendly [FAIL]
    assert "TypeError" in capsys.readouterr().out


def test_checkers_of_notebook_02_label_fraction_and_bag_threshold():
    from flglm_kit.attacks import bag_of_words
    from flglm_kit.exercises import check_bag_threshold, check_label_fraction

    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    batch = {"attention_mask": mask, "labels": torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, -100, -100]])}
    assert _verdicts(check_label_fraction, 4 / 7, 1.0, batch) == (True, False, False)

    # an AdamW-like update: rows of the batch's tokens move by ~1e-3, every other row by ~1e-5 (weight decay)
    ids = torch.tensor([[3, 4, 5, 6]])
    g = torch.Generator().manual_seed(0)
    update = 1e-5 * torch.randn(50, 8, generator=g)
    update[[3, 4, 5, 6]] = 1e-3 * torch.sign(torch.randn(4, 8, generator=g))
    assert len(bag_of_words(update)) == 50  # without a threshold every row counts
    assert _verdicts(check_bag_threshold, 1e-4, 1e-7, update, ids, torch.ones_like(ids)) == (True, False, False)
    sparse = torch.zeros(50, 8)
    sparse[[3, 4, 5, 6]] = 1.0
    assert check_bag_threshold(1e-4, sparse, ids, torch.ones_like(ids), verbose=False) is False  # the SGD update


def test_checker_of_notebook_02_nearest_neighbour_after_one_block():
    from flglm_kit.attacks import activations_of, nearest_neighbour_inversion, token_recovery_rate
    from flglm_kit.exercises import check_nn_one_block
    from flglm_kit.federation import Federation

    model = tiny_model("glm", seed=0)
    ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    fed = Federation(split_model(model, head_layers=1, tail_layers=1), ["me"], aggregate=None,
                     record_server_view=True)
    fed.clients["me"].train_step(ids, mask)
    guess = nearest_neighbour_inversion(activations_of(fed.seen)[0].tensor, model.get_input_embeddings().weight)
    right = token_recovery_rate(guess, ids, mask)
    assert _verdicts(check_nn_one_block, right, right + 0.5, model, ids, mask) == (True, False, False)


def test_checkers_of_notebook_03():
    from flglm_kit.exercises import check_smallest_sigma, check_weakest_entity_type

    rates = {0.0: 0.84, 0.3: 0.83, 1.0: 0.64, 3.0: 0.15}
    assert _verdicts(check_smallest_sigma, 3.0, 1.0, rates) == (True, False, False)
    assert check_smallest_sigma("none", {0.0: 0.8, 1.0: 0.5}, verbose=False) is True
    texts = ["ada byrne born 1950-01-01 in leeds", "tom lee in york"]
    entities = [[{"type": "name", "text": "Ada Byrne"}, {"type": "dob", "text": "1950-01-01"},
                 {"type": "city", "text": "Hull"}],
                [{"type": "name", "text": "Tom Lee"}, {"type": "city", "text": "Bath"}]]
    assert _verdicts(check_weakest_entity_type, "city", "name", texts, entities) == (True, False, False)


def test_checkers_of_notebook_04():
    from types import SimpleNamespace as R

    from flglm_kit.exercises import check_encryption_overhead, check_header_tamper, check_traffic_analysis

    plain = [R(step=1, nbytes=100, client_id="a", kind=k) for k in ("activations", "trunk_output")]
    sealed = [R(step=1, nbytes=116, client_id="a", kind=k) for k in ("activations", "trunk_output")]
    assert _verdicts(check_encryption_overhead, 32, 16, plain, sealed) == (True, False, False)
    good = "authentication failed: the frame was modified in transit or sealed under another key"
    assert _verdicts(check_header_tamper, good, "unknown step") == (True, False, False)
    ledger = [R(step=s, client_id=c, kind="activations", nbytes=1) for s, c in ((1, "a"), (1, "c"), (2, "c"))]
    assert _verdicts(check_traffic_analysis, 2, 3, ledger, "c") == (True, False, False)


def test_checker_of_notebook_05_profile():
    from flglm_kit.exercises import check_largest_phase

    phases = {"client compute": 0.2, "wire and cipher": 0.01, "server compute": 0.5, "other": 0.1}
    assert _verdicts(check_largest_phase, "server compute", "client compute", phases) == (True, False, False)
