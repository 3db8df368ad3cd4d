"""Sub-servers in their own processes compute what replicas in one process compute (float32, CPU, 1e-5).

One process group serves the whole file (starting it costs ~20 s on a 2-core CPU): the
module-scoped fixture trains the same model twice, in-process and with ``processes=True``,
and the tests below read both runs; the last ones close the workers and check that none is left.
"""

from __future__ import annotations


import pytest
import torch

from flglm_kit.compute import ComputeError
from flglm_kit.models import tiny_model
from flglm_kit.optim import default_optimizer
from flglm_kit.replicas import SubServerError
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import ServerHierarchical
from flglm_kit.split import split_model
from flglm_kit.wire import Message

from conftest import make_parties
from test_scheduling import client_batches

TOL = 1e-5
ROUNDS = 6  # sync_every=2: three syncs, the last after the last round
CLIENTS = ["a", "b", "c", "d"]
SPEC = ("SGD", {"lr": 0.1, "momentum": 0.9})


def sgd_momentum(params):
    # SGD (not Adam, see test_scheduling.sgd) with momentum, so that moments="average" has a moment to average.
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _train(processes: bool):
    scheduler = ServerHierarchical(2, sync_every=2, moments="average", processes=processes,
                                   optimizer_spec=SPEC if processes else None)
    parties = make_parties(tiny_model("glm", seed=21), client_ids=CLIENTS, optimizer=sgd_momentum,
                           scheduler=scheduler)
    losses = []
    for step in range(ROUNDS):
        result = run_round([(c, client_batches(k, step)) for k, c in enumerate(parties.clients)])
        assert not result.dropped, result.dropped
        losses.append(result.losses)
    return parties, losses


@pytest.fixture(scope="module")
def runs():
    here, here_losses = _train(processes=False)
    there, there_losses = _train(processes=True)
    try:
        yield {"here": (here, here_losses), "there": (there, there_losses)}
    finally:
        there.server.close()


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _replica_weights(compute) -> dict[str, torch.Tensor]:
    return {f"trunk.{n}": p.detach().clone() for n, p in compute.trunk.named_parameters()}


@pytest.mark.slow
def test_in_process_and_multi_process_replicas_give_the_same_losses_and_weights(runs):
    here, here_losses = runs["here"]
    there, there_losses = runs["there"]
    for step, (got, want) in enumerate(zip(there_losses, here_losses)):
        assert max(abs(got[c] - want[c]) for c in CLIENTS) < TOL, step
    assert there.server.scheduler.syncs == here.server.scheduler.syncs == ROUNDS // 2
    assert there.server.steps_done == here.server.steps_done
    for r in range(2):  # each worker's weights, fetched over its pipe now
        assert _max_diff(there.server.computes[r].state_dict(), _replica_weights(here.server.computes[r])) < TOL, r
    # The server's trunk in the main process is the first replica's copy, refreshed at each sync.
    assert _max_diff(_replica_weights(there.server.computes[0]), _replica_weights(here.server.computes[0])) < TOL
    assert _max_diff(there.server.state_dict(), here.server.state_dict()) < TOL


@pytest.mark.slow
def test_evaluation_runs_on_the_clients_sub_server(runs):
    ids, mask = client_batches(1, 99)
    got = runs["there"][0].clients[1].forward(ids, mask)
    want = runs["here"][0].clients[1].forward(ids, mask)
    assert torch.allclose(got, want, atol=TOL, rtol=0)


@pytest.mark.slow
def test_a_stale_backward_in_a_worker_gets_the_computes_own_error(runs):
    there = runs["there"][0]
    request = next(m for m in there.seen if m.kind == "activations" and m.client_id == "a")
    compute = there.server.computes[0]
    first, _ = compute.forward_train([request])
    second, replies = compute.forward_train([Message("activations", "x", 1, tensors=request.tensors)])
    assert first is not None and second is not None and first.version == second.version == compute.version
    grads = torch.ones_like(replies[0].tensors["hidden"])
    compute.backward(second, {"x": (grads, 4)})  # the weights move
    with pytest.raises(ComputeError, match="weights moved since this step's forward"):
        compute.backward(first, {"a": (grads, 4)})
    assert compute.version == second.version + 1


@pytest.mark.slow
def test_close_stops_every_worker_and_keeps_the_first_replicas_weights(runs):
    there = runs["there"][0]
    group = there.server.scheduler.group
    final = there.server.computes[0].state_dict()
    there.server.close()
    assert all(p.popen.poll() is not None for p in group._procs), group.pids
    assert not group.dir.exists()
    there.server.close()  # idempotent
    assert _max_diff(there.server.state_dict(), final) == 0.0
    with pytest.raises(SubServerError, match="closed"):
        there.server.computes[1].state_dict()


# -- refused before any process starts --------------------------------------------------------------

def _server_with(scheduler: ServerHierarchical, optimizer) -> None:
    make_parties(tiny_model("glm", seed=22), optimizer=optimizer, scheduler=scheduler)  # refused before any client


def test_a_custom_optimizer_needs_a_spec_that_makes_the_same_optimizer():
    scheduler = ServerHierarchical(2, processes=True)
    with pytest.raises(ValueError, match="cannot cross to a sub-server process without pickle"):
        _server_with(scheduler, sgd_momentum)
    with pytest.raises(ValueError, match="does not make the optimizer the server's factory makes"):
        _server_with(ServerHierarchical(2, processes=True, optimizer_spec=("SGD", {"lr": 0.1})), sgd_momentum)
    with pytest.raises(ValueError, match="not a torch.optim optimizer"):
        _server_with(ServerHierarchical(2, processes=True, optimizer_spec=("os.system", {})), sgd_momentum)
    assert scheduler.group is None  # nothing was started


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has the GPUs")
def test_more_gpu_sub_servers_than_gpus_is_refused():
    trunk = split_model(tiny_model("glm", seed=23)).trunk
    with pytest.raises(ValueError, match="NCCL refuses two ranks on one GPU"):
        ServerHierarchical(2, processes=True).make_computes(trunk, tail=None, optimizer=default_optimizer,
                                                            device=torch.device("cuda"))
