"""Exact before fast: each scheduler computes what it claims (float32, CPU, within 1e-5)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from flglm_kit.client import ServerError
from flglm_kit.compute import ComputeError, TrunkCompute
from flglm_kit.losses import next_token_loss
from flglm_kit.models import tiny_model
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import ClientBatching, Sequential, ServerHierarchical
from flglm_kit.split import Spans, split_model

from conftest import make_parties

TOL = 1e-5
STEPS = 10


def sgd(params):
    # SGD, not Adam, where weights are compared: a key projection's bias has zero gradient in exact
    # arithmetic (softmax ignores a shift shared by all keys), and Adam scales that float noise
    # up to full-size steps, so two exact computations summed in another order drift apart.
    return torch.optim.SGD(params, lr=0.1)


def frozen(params):
    return torch.optim.SGD(params, lr=0.0)


def client_batches(k: int, step: int, *, sizes=(1, 2, 3, 2), lengths=(8, 12, 16, 10)):
    """Client k's batch at ``step``: its own batch size and length, right padding inside."""
    g = torch.Generator().manual_seed(1000 * k + step)
    b, t = sizes[k % len(sizes)], lengths[k % len(lengths)]
    ids = torch.randint(3, 40, (b, t), generator=g)
    keep = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < keep[:, None]).long()  # (b, t)
    return ids.masked_fill(mask == 0, 0), mask


def trunk_weights(server):
    return [p.detach().clone() for p in server.trunk.parameters()]


def assert_close_lists(a, b, what):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=TOL, rtol=0), what


# -- Sequential ----------------------------------------------------------------------------------

def test_sequential_interleaved_clients_get_the_losses_they_would_get_alone():
    # Prepare: the same model twice; three clients whose steps are all in flight together.
    model = tiny_model("glm", seed=1)
    ids = ["a", "b", "c"]
    together = make_parties(copy.deepcopy(model), client_ids=ids, scheduler=Sequential())
    alone = make_parties(copy.deepcopy(model), client_ids=ids)
    # Execute: interleaved rounds vs one client after another in arrival order.
    got, want = {c: [] for c in ids}, {c: [] for c in ids}
    for step in range(STEPS):
        result = run_round([(c, client_batches(k, step)) for k, c in enumerate(together.clients)])
        assert not result.dropped
        for c in ids:
            got[c].append(result.losses[c])
        for k, c in enumerate(alone.clients):
            want[c.client_id].append(c.train_step(*client_batches(k, step)))
    # Assert
    for c in ids:
        assert max(abs(x - y) for x, y in zip(got[c], want[c])) < TOL, c
    assert_close_lists(trunk_weights(together.server), trunk_weights(alone.server), "trunk")


def test_a_second_client_waits_for_an_open_step_and_never_fails():
    parties = make_parties(tiny_model("glm", seed=2), client_ids=["a", "b"])
    a, b = parties.clients
    transport = parties.transport
    step_a = a.begin_train_step(*client_batches(0, 0))
    transport.post(step_a.pop_frame())  # a's forward runs: its step is open
    step_b = b.begin_train_step(*client_batches(1, 0))
    transport.post(step_b.pop_frame())  # b's forward waits in the queue
    assert transport.collect("b") == []
    step_a.deliver(transport.collect("a")[0])
    transport.post(step_a.pop_frame())  # a's output grads: backward, step; then b's forward runs
    step_a.deliver(transport.collect("a")[0])
    assert step_a.done
    step_b.deliver(transport.collect("b")[0])
    transport.post(step_b.pop_frame())
    step_b.deliver(transport.collect("b")[0])
    assert step_b.done and step_b.error is None and parties.server.steps_done == 2


# -- ClientBatching ------------------------------------------------------------------------------

def _union(batches):
    """Pad every client's (ids, mask) to the longest and stack: the union batch of the round."""
    t = max(ids.shape[1] for ids, _ in batches)
    ids = torch.cat([F.pad(i, (0, t - i.shape[1])) for i, _ in batches])
    mask = torch.cat([F.pad(m, (0, t - m.shape[1])) for _, m in batches])
    return ids, mask


def test_client_batching_equals_centralized_training_on_the_union_batch():
    # Objective: token-weighted over the union, i.e. one big batch. The client blocks are frozen
    # (lr 0), so the centralized model and the split hold the same weights everywhere.
    model = tiny_model("glm", seed=3)
    reference = copy.deepcopy(model)
    k = 3
    parties = make_parties(model, client_ids=[f"c{i}" for i in range(k)], optimizer=frozen,
                           server_optimizer=sgd, scheduler=ClientBatching(clients=k))
    split = split_model(reference)
    trunk_names = {split.original_name("trunk", n) for n, _ in split.trunk.named_parameters()}
    params = [p for n, p in reference.named_parameters() if n in trunk_names]
    opt = sgd(params)
    for step in range(STEPS):
        batches = [client_batches(i, step) for i in range(k)]
        result = run_round(list(zip(parties.clients, batches)))
        ids, mask = _union(batches)
        logits = reference(input_ids=ids, attention_mask=mask).logits
        labels = ids.masked_fill(mask == 0, -100)
        rows = 0
        for i, (b_ids, _) in enumerate(batches):  # each client's own loss, from the union forward
            part = slice(rows, rows + b_ids.shape[0])
            own = next_token_loss(logits[part, : b_ids.shape[1]], labels[part, : b_ids.shape[1]])
            assert abs(result.losses[f"c{i}"] - float(own.detach())) < TOL, (step, i)
            rows += b_ids.shape[0]
        opt.zero_grad()
        next_token_loss(logits, labels).backward()
        opt.step()
    assert parties.server.steps_done == STEPS  # one optimizer step per round, not per client
    final = dict(reference.named_parameters())
    for name, p in parties.server.trunk.named_parameters():
        assert torch.allclose(p, final[split.original_name("trunk", name)], atol=TOL, rtol=0), name


def test_client_batching_gives_each_client_the_gradient_of_its_own_loss():
    # With trainable client blocks, each client's blocks follow its own mean loss while the trunk
    # follows the token-weighted union: checked against the same objective written out in one process.
    model = tiny_model("glm", seed=4)
    k = 3
    parties = make_parties(copy.deepcopy(model), client_ids=[f"c{i}" for i in range(k)], optimizer=sgd,
                           scheduler=ClientBatching())
    split = split_model(model)
    heads = [copy.deepcopy(split.head) for _ in range(k)]
    tails = [copy.deepcopy(split.tail) for _ in range(k)]
    client_opts = [sgd([*h.parameters(), *t.parameters()]) for h, t in zip(heads, tails)]
    trunk_opt = sgd(split.trunk.parameters())
    for step in range(STEPS):
        batches = [client_batches(i, step) for i in range(k)]
        result = run_round(list(zip(parties.clients, batches)))
        losses, tokens = [], []
        for i, (ids, mask) in enumerate(batches):
            spans = Spans.from_attention_mask(mask)
            labels = ids.masked_fill(mask == 0, -100)
            out = tails[i](split.trunk(heads[i](ids, spans), spans), spans, labels)
            losses.append(out.loss)
            tokens.append(int((labels[:, 1:] != -100).sum()))
            assert abs(result.losses[f"c{i}"] - float(out.loss.detach())) < TOL, (step, i)
        total = sum(tokens)
        # Each client's blocks get the gradient of its own mean loss; the trunk gets the gradient of
        # the token-weighted union. All gradients first, then the steps.
        owns = [[*heads[i].parameters(), *tails[i].parameters()] for i in range(k)]
        trunk = list(split.trunk.parameters())
        union = torch.stack([n / total * loss for n, loss in zip(tokens, losses)]).sum()
        grads = [torch.autograd.grad(losses[i], owns[i], retain_graph=True) for i in range(k)]
        grads.append(torch.autograd.grad(union, trunk))
        for params, gs in zip([*owns, trunk], grads):
            for p, g in zip(params, gs):
                p.grad = g
        for o in client_opts:
            o.step()
        trunk_opt.step()
    assert_close_lists(trunk_weights(parties.server), [p.detach() for p in split.trunk.parameters()], "trunk")
    for i, client in enumerate(parties.clients):
        assert_close_lists([p.detach() for p in client.head.parameters()],
                           [p.detach() for p in heads[i].parameters()], f"head {i}")
        assert_close_lists([p.detach() for p in client.tail.parameters()],
                           [p.detach() for p in tails[i].parameters()], f"tail {i}")


def test_client_batching_waits_for_k_clients_then_drops_a_straggler_after_the_deadline():
    now = [0.0]
    scheduler = ClientBatching(clients=3, deadline_s=10, clock=lambda: now[0])
    parties = make_parties(tiny_model("glm", seed=5), client_ids=["a", "b", "c"], scheduler=scheduler)
    t = parties.transport
    steps = [c.begin_train_step(*client_batches(i, 0)) for i, c in enumerate(parties.clients)]
    for s in steps[:2]:
        t.post(s.pop_frame())
    assert t.collect("a") == [] and t.collect("b") == []  # two of three: the batch waits
    t.post(steps[2].pop_frame())  # the third arrives: one trunk pass over all three
    for s in steps:
        s.deliver(t.collect(s.client_id)[0])
    for s in steps[:2]:  # c never sends its output gradients
        t.post(s.pop_frame())
    assert t.collect("a") == []  # a and b wait for c ...
    now[0] = 11.0  # ... until the deadline
    parties.server.run_pending()
    for s in steps[:2]:
        s.deliver(t.collect(s.client_id)[0])
        assert s.done and s.error is None
    (notice,) = t.collect("c")
    with pytest.raises(ServerError, match="dropped: no output gradients within 10 s"):
        steps[2].deliver(notice)
    assert parties.server.steps_done == 1 and scheduler.dropped[0][0] == "c"


# -- ServerHierarchical --------------------------------------------------------------------------

def test_server_hierarchical_with_one_sub_server_equals_sequential():
    model = tiny_model("glm", seed=6)
    ids = ["a", "b", "c"]
    runs = {}
    for name, scheduler in (("seq", Sequential()), ("hier", ServerHierarchical(1, sync_every=1, batch=False))):
        parties = make_parties(copy.deepcopy(model), client_ids=ids, scheduler=scheduler)
        losses = [run_round([(c, client_batches(k, s)) for k, c in enumerate(parties.clients)]).losses
                  for s in range(STEPS)]
        runs[name] = (losses, trunk_weights(parties.server))
    for got, want in zip(runs["hier"][0], runs["seq"][0]):
        assert all(abs(got[c] - want[c]) < TOL for c in ids)
    assert_close_lists(runs["hier"][1], runs["seq"][1], "trunk")


def test_server_hierarchical_syncing_every_step_with_sgd_equals_client_batching():
    model = tiny_model("glm", seed=7)
    ids = ["a", "b", "c", "d"]
    runs = {}
    schedulers = (("batch", ClientBatching()), ("hier", ServerHierarchical(2, sync_every=1)))
    for name, scheduler in schedulers:
        parties = make_parties(copy.deepcopy(model), client_ids=ids, scheduler=scheduler, server_optimizer=sgd)
        losses = [run_round([(c, client_batches(k, s)) for k, c in enumerate(parties.clients)]).losses
                  for s in range(STEPS)]
        runs[name] = (losses, parties.server)
    for got, want in zip(runs["hier"][0], runs["batch"][0]):
        assert all(abs(got[c] - want[c]) < TOL for c in ids)
    hier = runs["hier"][1]
    assert hier.scheduler.syncs == STEPS
    for compute in hier.computes:  # every replica holds the averaged weights
        assert_close_lists([p.detach() for p in compute.trunk.parameters()], trunk_weights(runs["batch"][1]), "replica")


def test_server_hierarchical_replicas_drift_between_syncs_and_meet_at_each():
    parties = make_parties(tiny_model("glm", seed=8), client_ids=["a", "b"],
                           scheduler=ServerHierarchical(2, sync_every=3))
    scheduler = parties.server.scheduler
    for s in range(2):
        run_round([(c, client_batches(k, s)) for k, c in enumerate(parties.clients)])
    r0, r1 = (list(c.trunk.parameters()) for c in parties.server.computes)
    assert scheduler.syncs == 0 and not all(torch.equal(x, y) for x, y in zip(r0, r1))
    run_round([(c, client_batches(k, 2)) for k, c in enumerate(parties.clients)])
    assert scheduler.syncs == 1 and all(torch.equal(x, y) for x, y in zip(r0, r1))


# -- the compute's guard rails -------------------------------------------------------------------

def test_a_backward_after_the_weights_moved_gets_a_clear_error():
    split = split_model(tiny_model("glm", seed=9))
    compute = TrunkCompute(split.trunk)
    parties = make_parties(tiny_model("glm", seed=9))
    msg = [m for m in parties.seen if m.kind == "activations"] or None
    ids, mask = client_batches(0, 0)
    spans = Spans.from_attention_mask(mask)
    from flglm_kit.wire import Message
    acts = Message("activations", "a", 1, tensors={"activations": split.head(ids, spans).detach(),
                                                   **spans.to_tensors()})
    first, _ = compute.forward_train([acts])
    second, replies = compute.forward_train([Message("activations", "b", 1, tensors=acts.tensors)])
    compute.backward(second, {"b": (torch.ones_like(replies[0].tensors["hidden"]), 4)})
    with pytest.raises(ComputeError, match="weights moved since this step's forward"):
        compute.backward(first, {"a": (torch.ones_like(replies[0].tensors["hidden"]), 4)})
    assert msg is None or msg


def test_schedulers_refuse_bad_settings():
    with pytest.raises(ValueError, match="clients must be"):
        ClientBatching(clients=0)
    with pytest.raises(ValueError, match="deadline_s"):
        Sequential(deadline_s=0)
    with pytest.raises(ValueError, match="moments"):
        ServerHierarchical(2, moments="mean")
