"""The dashboard: its headless run, its settings' checks, Stop and resume, and the widgets' wiring.

Everything runs without a frontend: the widgets are built and their buttons pressed with
``.click()``; the browser itself is exercised by ``scripts/browser_test.py``.
"""

from __future__ import annotations

import math
import threading

import pytest
import torch

from flglm_kit.dashboard_run import Settings, SettingsError, run
from flglm_kit.federation import Federation
from flglm_kit.pretrained import load_pretrained
from flglm_kit.run_history import History
from flglm_kit.split import split_model

#: a tiny run: 2 clients, few samples, a short inverter
TINY = dict(num_clients=2, samples=32, batch=2, eval_size=4, inverter_steps=5, device="cpu")


@pytest.fixture(scope="module")
def glm():
    tokenizer, model = load_pretrained(device="cpu")  # the shipped tiny GLM, offline
    return tokenizer, model


def tiny(**overrides) -> Settings:
    return Settings(**{**TINY, **overrides})


def _run(glm, settings, **kwargs) -> History:
    tokenizer, model = glm
    return run(settings, model=model, tokenizer=tokenizer, **kwargs)


# -- the headless run ----------------------------------------------------------------------------
def test_a_headless_run_records_every_step_panel_and_reading(glm):
    history = _run(glm, tiny(steps=4, average_every=2, eval_every=2))
    assert [r.step for r in history.steps] == [1, 2, 3, 4] and [r.round for r in history.steps] == [1, 1, 2, 2]
    assert history.clients == ["client-0", "client-1"] and not history.stopped
    for r in history.steps:
        assert all(math.isfinite(v) and v > 0 for v in r.losses.values()) and r.baseline_loss > 0
        assert r.wire_bytes > 0 and r.update_bytes > 0 and r.server_bytes > 0
        assert set(r.phase_seconds) >= {"client compute", "wire and cipher", "server compute"}
    assert [c.step for c in history.validation] == [0, 2, 4]
    assert all(0 <= c.federated <= 1 and 0 <= c.baseline <= 1 for c in history.validation)
    assert [p.step for p in history.privacy] == [2, 4] and all(p.tokens > 0 for p in history.privacy)
    # the server's view is not the prior's: the inverter reads far more than the prior-only guess
    assert history.privacy[-1].recovered > history.privacy[-1].prior


def test_a_run_learns(glm):
    history = _run(glm, tiny(steps=6, average_every=1, privacy=False, eval_every=6, lr=3e-3))
    first, last = history.steps[0].mean_loss, history.steps[-1].mean_loss
    assert last < first - 1.0, (first, last)  # triage answers are learned in a few steps
    assert history.steps[-1].baseline_loss < history.steps[0].baseline_loss - 1.0


def test_bytes_follow_the_settings(glm):
    full = _run(glm, tiny(steps=1, privacy=False, baseline=False))
    lora = _run(glm, tiny(steps=1, privacy=False, baseline=False, peft="lora"))
    alone = _run(glm, tiny(steps=1, privacy=False, baseline=False, aggregate="none"))
    assert lora.steps[0].update_bytes < full.steps[0].update_bytes / 10  # LoRA averages a sliver of the blocks
    assert alone.steps[0].update_bytes == 0 and alone.steps[0].wire_bytes > 0


def test_noise_lowers_what_the_meter_reads(glm):
    clean = _run(glm, tiny(steps=1, baseline=False, inverter_steps=30))
    noisy = _run(glm, tiny(steps=1, baseline=False, inverter_steps=30, noise_rel=3.0))
    assert noisy.privacy[0].recovered < clean.privacy[0].recovered - 0.1


def test_the_history_round_trips_and_plots(glm, tmp_path):
    history = _run(glm, tiny(steps=2, average_every=1))
    again = History.from_json(history.to_json())
    assert again == history
    fig = history.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert "training loss" in titles and any("privacy" in t for t in titles) and len(fig.axes) == 6
    loss_ax = fig.axes[titles.index("training loss")]
    assert {line.get_label() for line in loss_ax.get_lines()} == {"client-0", "client-1", "centralized"}


# -- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, words", [
    (tiny(num_clients=8, samples=4), "8 clients cannot each hold a sample of 4"),
    (tiny(head_layers=3, tail_layers=3), "leaves the server's trunk empty"),
    (tiny(noise_rel=-0.5), "noise σ must be 0 or more"),
    (tiny(lr=0.0), "learning rate must be a positive number"),
    (tiny(partition="site", task="cb"), "CB has none"),
    (tiny(partition="site", num_clients=3), "set clients to 4"),
    (tiny(aggregate="clients", secure=False), "needs per-client keys"),
    (tiny(scheduler="server-hierarchical", sub_servers=3), "a sub-server would serve nobody"),
    (tiny(scheduler="round-robin"), "scheduler must be one of"),
    (tiny(steps=0), "steps must be a whole number of at least 1"),
    (tiny(device="tpu"), "not available here"),
])
def test_bad_settings_are_refused_with_a_sentence(glm, settings, words):
    with pytest.raises(SettingsError) as refused:
        _run(glm, settings)
    assert any(words in p for p in refused.value.problems), refused.value.problems


def test_good_settings_have_no_problems():
    assert Settings().problems(num_layers=6, sites=4) == []
    assert tiny(partition="site", num_clients=4).problems(num_layers=6, sites=4) == []


# -- Stop and resume ------------------------------------------------------------------------------
def _stop_after(n: int, stop: threading.Event):
    def on_update(history: History) -> None:
        if len(history.steps) >= n:
            stop.set()
    return on_update


def test_stop_then_resume_gives_the_losses_of_a_run_that_never_stopped(glm, tmp_path):
    settings = tiny(steps=4, average_every=2, privacy=False, eval_every=4)
    straight = _run(glm, settings)
    stop = threading.Event()
    stopped = _run(glm, settings, stop=stop, on_update=_stop_after(2, stop), checkpoint_dir=tmp_path)
    assert stopped.stopped and len(stopped.steps) == 2 and stopped.checkpoint == str(tmp_path)
    assert "stopped after step 2 of 4" in stopped.message
    resumed = _run(glm, settings, resume_from=stopped.checkpoint)
    assert not resumed.stopped and len(resumed.steps) == 4
    assert [r.losses for r in resumed.steps] == [r.losses for r in straight.steps]
    assert resumed.baseline_losses() == straight.baseline_losses()


def test_a_stop_mid_round_averages_what_was_trained_and_resumes(glm, tmp_path):
    tokenizer, model = glm
    settings = tiny(steps=6, average_every=3, privacy=False, baseline=False, eval_every=6)

    class StopDuringFirstRound(threading.Event):
        """Reads as set from its second question on: the run asks before the round, then between its steps."""

        asked = 0

        def is_set(self) -> bool:
            self.asked += 1
            return self.asked >= 2

    stop = StopDuringFirstRound()
    stopped = _run(glm, settings, stop=stop, checkpoint_dir=tmp_path)
    assert stopped.stopped and len(stopped.steps) == 1 and stopped.steps[-1].update_bytes > 0
    fed = Federation.resume(tmp_path / "federation", split_model(model), aggregate="server")
    heads = [fed.averagers[c].layout.flatten(fed.averagers[c].parts) for c in sorted(fed.clients)]
    assert torch.equal(heads[0], heads[1])  # the clients averaged before the state was saved
    assert fed.round == 1
    resumed = _run(glm, settings, resume_from=tmp_path)
    assert len(resumed.steps) == 6 and resumed.steps[-1].round == 1 + math.ceil((6 - len(stopped.steps)) / 3)


def test_a_stopped_hierarchical_run_says_it_was_not_saved(glm):
    stop = threading.Event()
    settings = tiny(steps=3, average_every=1, privacy=False, baseline=False, scheduler="server-hierarchical")
    stopped = _run(glm, settings, stop=stop, on_update=_stop_after(1, stop))
    assert stopped.stopped and len(stopped.steps) == 1
    assert stopped.checkpoint is None and "not saved" in stopped.message


def test_resume_refuses_other_settings(glm, tmp_path):
    stop = threading.Event()
    stopped = _run(glm, tiny(steps=3, average_every=1, privacy=False), stop=stop, on_update=_stop_after(1, stop),
                   checkpoint_dir=tmp_path)
    with pytest.raises(SettingsError, match="other settings"):
        _run(glm, tiny(steps=3, average_every=1, privacy=False, num_clients=3), resume_from=stopped.checkpoint)


# -- the widgets ----------------------------------------------------------------------------------
def test_the_dashboard_runs_stops_and_resumes_from_its_buttons(glm):
    from flglm_kit.widgets import Dashboard
    tokenizer, model = glm
    dash = Dashboard(tiny(steps=30, average_every=1, eval_every=30), model=model, tokenizer=tokenizer, redraw_s=0.0)
    blank = dash.panels.value
    assert dash.stop_button.disabled and dash.resume_button.disabled
    seen = threading.Event()
    original = dash._on_update

    def on_update(history):
        original(history)
        if len(history.steps) >= 2:
            seen.set()

    dash._on_update = on_update
    dash.run_button.click()
    assert dash.running and dash.run_button.disabled and not dash.stop_button.disabled
    assert seen.wait(120), "no step within 120 s"
    dash.stop_button.click()
    history = dash.wait(120)
    assert history.stopped and 2 <= len(history.steps) < 30
    assert dash.panels.value != blank and dash.redraws >= 2
    assert dash.bar.n == len(history.steps) and "stopped after step" in dash.status.value
    assert not dash.resume_button.disabled and not dash.run_button.disabled
    dash.controls["steps"].value = len(history.steps) + 2  # resume, and finish soon
    dash.resume_button.click()
    final = dash.wait(120)
    assert len(final.steps) == len(history.steps) + 2 and not final.stopped and dash.bar.n == len(final.steps)
    assert final.steps[: len(history.steps)] == history.steps


def test_the_dashboard_refuses_bad_settings_in_words(glm):
    from flglm_kit.widgets import Dashboard
    tokenizer, model = glm
    dash = Dashboard(tiny(), model=model, tokenizer=tokenizer)
    dash.controls["noise_rel"].value = -1.0
    dash.controls["num_clients"].value = 99
    dash.run_button.click()
    assert not dash.running and dash.history is None
    assert "cannot run" in dash.status.value and "noise σ must be 0 or more" in dash.status.value
    assert "99 clients cannot each hold a sample" in dash.status.value and "Traceback" not in dash.status.value
    dash.controls["noise_rel"].value = 0.0
    dash.controls["num_clients"].value = 2
    dash.controls["head_layers"].value = 5  # the model has 6 blocks: 5 + 1 leaves the trunk empty
    dash.controls["steps"].value = 1
    dash.run_button.click()  # caught in the thread, where the model is known
    dash.wait(120)
    assert "trunk empty" in dash.status.value


def test_plaintext_warns_in_the_dashboard(glm):
    from flglm_kit.widgets import Dashboard
    dash = Dashboard(tiny(), model=glm[1], tokenizer=glm[0])
    assert "plaintext" not in dash.status.value
    dash.controls["secure"].value = False
    assert "plaintext channels" in dash.status.value and "anyone on the wire" in dash.status.value
    assert dash.current_settings().secure is False


def test_the_schedule_picker_redraws_for_each_choice():
    from flglm_kit.exercises import small_federation
    from flglm_kit.models import tiny_model
    from flglm_kit.profiling import PhaseTimer
    from flglm_kit.rounds import run_round
    from flglm_kit.scheduling import ClientBatching, Sequential
    from flglm_kit.widgets import SchedulePicker

    records = {}
    for name, make in (("sequential", Sequential), ("client-batching", ClientBatching)):
        for k in (2, 3):
            fed = small_federation(tiny_model(seed=0), num_clients=k, scheduler=make())
            clients = list(fed.clients.values())
            records[name, k] = []
            for _ in range(3):
                with PhaseTimer(fed.server, clients) as timer:
                    run_round([(c, (torch.randint(3, 100, (1, 8)),)) for c in clients])
                records[name, k].append(timer)
    picker = SchedulePicker(records)
    first = picker.picture.value
    assert "sequential, 2 clients" in picker.numbers.value
    picker.clients.value = 3
    picker.scheduler.value = "client-batching"
    assert picker.picture.value != first and "client-batching, 3 clients" in picker.numbers.value
    assert "× sequential" in picker.numbers.value
