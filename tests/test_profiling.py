"""PhaseTimer measures what it says: every phase after a round, within the wall time, and leaves no trace."""

from __future__ import annotations

import pytest
import torch

from flglm_kit.client import SplitClient
from flglm_kit.exercises import small_federation
from flglm_kit.models import tiny_model
from flglm_kit.profiling import PHASES, PhaseTimer, hardware_name, median_ci
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import ClientBatching, Sequential, ServerHierarchical


def batch(k: int) -> tuple[torch.Tensor]:
    return (torch.randint(3, 100, (1 + k % 2, 8), generator=torch.Generator().manual_seed(k)),)


def timed_round(scheduler, k=3, rounds=1):
    fed = small_federation(tiny_model(seed=0), num_clients=k, scheduler=scheduler)
    clients = list(fed.clients.values())
    with PhaseTimer(fed.server, clients) as timer:
        for _ in range(rounds):
            run_round([(c, batch(i)) for i, c in enumerate(clients)])
    return fed, timer


def test_every_phase_is_measured_and_the_phases_fit_in_the_wall_time():
    _, timer = timed_round(ClientBatching())
    totals = timer.totals()
    assert all(totals[p] > 0 for p in PHASES)
    assert sum(totals[p] for p in PHASES) <= timer.wall
    assert sum(totals.values()) == pytest.approx(timer.wall)
    assert "server compute" in timer.table() and "wall" in timer.table()


def test_pieces_never_overlap_nested_calls_count_once():
    _, timer = timed_round(Sequential())
    pieces = sorted(timer.pieces, key=lambda p: p.start)
    assert all(a.end <= b.start + 1e-12 for a, b in zip(pieces, pieces[1:]))
    whats = {p.what for p in pieces}
    assert {"client seal", "client open", "server seal", "server open + check", "trunk forward",
            "trunk backward + step", "input block forward", "output / input block"} <= whats


def test_leaving_the_block_restores_every_method_even_after_an_error():
    fed = small_federation(tiny_model(seed=0), num_clients=2, scheduler=ServerHierarchical(2))
    clients = list(fed.clients.values())
    objects = [*clients, *(c.channel for c in clients), fed.server, *fed.server.computes, fed.server.scheduler]
    before = [set(vars(o)) for o in objects]  # attribute names: the round changes values (step counters)
    with pytest.raises(KeyError), PhaseTimer(fed.server, clients):
        run_round([(c, batch(i)) for i, c in enumerate(clients)])
        raise KeyError("boom")
    assert [set(vars(o)) for o in objects] == before
    assert clients[0].begin_train_step.__func__ is SplitClient.begin_train_step
    assert not {"submit", "reply", "forward_train", "backward", "average", "seal", "open"} & set().union(*before)


def test_a_timer_is_used_once():
    fed = small_federation(tiny_model(seed=0), num_clients=1)
    timer = PhaseTimer(fed.server, list(fed.clients.values()))
    with timer, pytest.raises(RuntimeError, match="already in use"):
        timer.__enter__()


def test_the_parallel_replay_shows_who_waits_for_whom():
    _, batched = timed_round(ClientBatching())
    forwards = [p for p in batched.timeline().pieces if p.what == "trunk forward"]
    assert [len(p.clients) for p in forwards] == [3]  # one trunk pass for three clients
    _, seq = timed_round(Sequential())
    replay = seq.timeline()
    assert replay.makespan <= seq.wall  # parallel parties cannot be slower than taking turns
    assert set(replay.lanes) == {"client-0", "client-1", "client-2", "server"}
    assert all(replay.waiting(lane) >= 0 for lane in replay.lanes)
    # Sequential: a client's trunk forward never starts before the previous client's backward ended.
    server = [p for p in replay.pieces if p.lane == "server"]
    assert [p.what for p in server] == ["trunk forward", "trunk backward + step"] * 3
    assert all(a.end <= b.start + 1e-12 for a, b in zip(server, server[1:]))


def test_averaging_waits_for_every_replica():
    _, timer = timed_round(ServerHierarchical(3, sync_every=1))
    replay = timer.timeline()
    (avg,) = [p for p in replay.pieces if p.what == "average replicas"]
    replicas = [p for p in replay.pieces if p.lane.startswith("sub-server") and p.start < avg.start]
    assert {p.lane for p in replicas} == {"sub-server 0", "sub-server 1", "sub-server 2"}
    assert all(p.end <= avg.start + 1e-12 for p in replicas)
    breakdown = replay.breakdown(["client-0", "client-1", "client-2"])
    assert set(breakdown) == {*PHASES, "waiting"} and breakdown["waiting"] > 0


def test_median_ci_uses_order_statistics():
    ci = median_ci(range(1, 12))  # n = 11: [x_(2), x_(10)] (1-based) covers 98.8 %; [x_(3), x_(9)] only 93 %
    assert (ci.median, ci.low, ci.high, ci.n) == (6.0, 2.0, 10.0, 11)
    assert 0.95 <= ci.coverage < 0.99
    few = median_ci([3.0, 1.0, 2.0])
    assert (few.low, few.high) == (1.0, 3.0) and few.coverage < 0.95  # says what it really covers
    assert median_ci([1.0, 2.0]).median == 1.5
    with pytest.raises(ValueError):
        median_ci([])


def test_hardware_is_named():
    assert hardware_name("cpu").strip() and "cores" in hardware_name("cpu")


def test_the_figures_draw_with_labelled_axes():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flglm_kit.figures import draw_swimlanes, plot_throughput

    _, timer = timed_round(ClientBatching())
    ax = draw_swimlanes(timer.timeline(), title="one round")
    assert ax.get_xlabel() == "time (ms)" and len(ax.get_yticklabels()) == 4
    ci = median_ci([0.1, 0.2, 0.3, 0.2, 0.25, 0.15])
    fig = plot_throughput({"sequential": {2: ci}}, {"sequential": {2: median_ci([1.0])}},
                          modeled={"sequential": {2: median_ci([1.0])}}, title="test")
    assert [a.get_ylabel() for a in fig.axes] == ["rounds per second (1/s)", "speed-up over sequential (×)"]
    plt.close("all")
