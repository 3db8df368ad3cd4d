"""The dashboard's training run, headless: settings in, a :class:`~flglm_kit.run_history.History` out.

::

    history = run(Settings(num_clients=3, scheduler="client-batching", steps=6))
    history.final_loss, history.privacy[-1].recovered
    history.plot(); plt.show()

:class:`flglm_kit.widgets.Dashboard` calls the same :func:`run` from a background thread; this
module imports no widget, so it runs (and is tested) without a frontend. One run:

1. checks the settings (:meth:`Settings.problems` names every bad one in a sentence);
2. splits the task's training examples over the clients (IID, Dirichlet(α) over labels, or one
   client per hospital site) and builds a :class:`~flglm_kit.federation.Federation`;
3. trains for ``steps`` steps, averaging every ``average_every`` steps, and beside it a
   **centralized baseline**: one model, one step per step on the union of that step's client
   batches (the same samples, the same method and learning rate);
4. after each round records losses, bytes, time per phase, server memory and the **privacy
   meter**: the learned inverter of notebook 03 (trained here on public text through the public
   input block, noise-aware when σ > 0) on the activations the server received in the round's
   last step, next to the prior-only baseline on the same tokens.

A stop (``stop.set()``) is honoured between steps: the round in progress ends at the current
step, its clients average what they have, and the state is saved (:meth:`Federation.save`, the
baseline and the history) so that ``run(settings, resume_from=history.checkpoint)`` goes on
with the same losses as a run that never stopped.

THREAT MODEL of the meter: the honest-but-curious server. ATTACKER'S KNOWLEDGE: the public
pretrained input block, public text, the noise level; not the clients' fine-tuned weights.

Introduced in notebook 06 (the dashboard).
"""

from __future__ import annotations

import copy
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from flglm_kit.checkpoint import load_state, save_state
from flglm_kit.dashboard_settings import Settings, SettingsError
from flglm_kit.data import (Example, collate, dirichlet_partition, encode_example, iid_partition, load_clinic_notes,
                            load_superglue, site_partition, special_ids)
from flglm_kit.federation import Federation, FedRound
from flglm_kit.finetune import evaluate_choices
from flglm_kit.losses import next_token_loss
from flglm_kit.metrics import mean_label_nll
from flglm_kit.privacy_meter import PrivacyMeter, public_token_batches
from flglm_kit.profiling import PhaseTimer
from flglm_kit.run_history import Checkpoint, History, PrivacyReading, StepRecord
from flglm_kit.scheduling import ClientBatching, Scheduler, Sequential, ServerHierarchical
from flglm_kit.split import SplitModel, split_model
from flglm_kit.transport import FrameRecord

__all__ = ["Settings", "SettingsError", "run"]

Encoded = dict[str, list[int]]


# -- data ---------------------------------------------------------------------------------------
def _examples(task: str, split: str) -> list[Example]:
    if task == "cb":
        return load_superglue("cb", split)
    return load_clinic_notes(split, task="triage" if task == "triage" else "summary")


def _shards(settings: Settings, train: list[Example]) -> dict[str, list[Example]]:
    """Client id -> its training examples (``settings.samples`` drawn first, seeded)."""
    rng = random.Random(settings.seed)
    pool = rng.sample(train, min(settings.samples, len(train)))
    if settings.partition == "site":
        sites = [str(ex.meta["site"]) for ex in pool]
        return {name: [pool[i] for i in part] for name, part in zip(sorted(set(sites)), site_partition(sites))}
    if settings.partition == "dirichlet":
        parts = dirichlet_partition([ex.answer for ex in pool], settings.num_clients, alpha=settings.alpha,
                                    seed=settings.seed)
    else:
        parts = iid_partition(len(pool), settings.num_clients, seed=settings.seed)
    return {f"client-{k}": [pool[i] for i in part] for k, part in enumerate(parts)}


def _stream(encoded: list[Encoded], batch: int, seed: int) -> Iterator[list[Encoded]]:
    """Endless shuffled batches of encoded examples (a new order each pass, from ``seed``)."""
    rng = random.Random(seed)
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        if len(order) < batch:  # a shard smaller than one batch: use it whole
            yield [encoded[i] for i in order]
            continue
        for start in range(0, len(order) - batch + 1, batch):
            yield [encoded[i] for i in order[start:start + batch]]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


# -- one run ------------------------------------------------------------------------------------
def _scheduler(settings: Settings) -> Scheduler:
    if settings.scheduler == "client-batching":
        return ClientBatching()
    if settings.scheduler == "server-hierarchical":
        return ServerHierarchical(settings.sub_servers, sync_every=settings.average_every)
    return Sequential()


def _server_bytes(fed: Federation) -> int:
    """Bytes of what the server holds: every trunk replica's weights and gradients, and its optimizer state."""
    total = 0
    for compute in fed.server.computes:
        for p in compute.trunk.parameters():
            total += p.numel() * p.element_size() * (2 if p.grad is not None else 1)
        if compute.optimizer is not None:
            for state in compute.optimizer.state.values():
                total += sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    return total


class _Gate:
    """Decides once per local step whether it runs: every client's stream asks, the first asks the stop flag."""

    def __init__(self, stop: threading.Event, on_step: Callable[[], None]) -> None:
        self.stop, self.on_step = stop, on_step
        self.open: dict[int, bool] = {}

    def allows(self, index: int) -> bool:
        if index not in self.open:
            self.open[index] = index == 0 or not self.stop.is_set()  # the round's first step was decided before
            if self.open[index]:
                self.on_step()
        return self.open[index]


class _Run:
    """The parties, the data streams, the baseline and the meter of one run (see the module docstring)."""

    def __init__(self, settings: Settings, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                 history: History) -> None:
        self.settings, self.tokenizer, self.history = settings, tokenizer, history
        self.device = torch.device(settings.device)
        self.pad = special_ids(tokenizer).pad
        train = _examples(settings.task, "train")
        sites = len({ex.meta.get("site") for ex in train}) if settings.partition == "site" else None
        config: Any = model.config  # a transformers model's
        settings.check(num_layers=int(config.num_hidden_layers), sites=sites)
        shards = _shards(settings, train)
        self.max_len = settings.max_len
        encoded = {c: [encode_example(ex, tokenizer, max_len=self.max_len) for ex in v] for c, v in shards.items()}
        self.streams = {c: _stream(e, settings.batch, settings.seed * 1000 + k)
                        for k, (c, e) in enumerate(sorted(encoded.items()))}
        self.val = _examples(settings.task, "validation")[:settings.eval_size]
        torch.manual_seed(settings.seed)
        split = split_model(model, head_layers=settings.head_layers, tail_layers=settings.tail_layers)
        lr = settings.lr
        aggregate = None if settings.aggregate == "none" else settings.aggregate
        self.fed = Federation(split, sorted(shards), secure=settings.secure, scheduler=_scheduler(settings),
                              peft=settings.peft_spec(), aggregate=aggregate,  # type: ignore[arg-type]
                              optimizer=lambda ps: torch.optim.AdamW([p for p in ps if p.requires_grad], lr=lr),
                              record_server_view=settings.privacy,
                              client_options={"noise_rel": settings.noise_rel, "noise_seed": settings.seed})
        self.bytes = {"train": 0, "update": 0}
        self.fed.transport.add_tap(self._count)
        self.baseline: SplitModel | None = None
        if settings.baseline:
            self.baseline = copy.deepcopy(split)
            spec = settings.peft_spec()
            if spec is not None:
                spec.apply(self.baseline)
            self.baseline_opt = torch.optim.AdamW([p for p in self.baseline.parameters() if p.requires_grad], lr=lr)
        self.meter = _meter(settings, model, tokenizer) if settings.privacy else None

    def _count(self, record: FrameRecord) -> None:
        self.bytes["update" if record.kind == "client_update" else "train"] += record.nbytes

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        self.fed.save(folder / "federation")
        if self.baseline is not None:
            save_state(folder / "baseline", weights=self.baseline.state_dict(), optimizer=self.baseline_opt)
        self.history.save(folder / "history.json")

    def load(self, folder: Path, split_of: Callable[[], SplitModel]) -> None:
        old = self.fed
        kwargs = {"secure": old.secure, "scheduler": _scheduler(self.settings), "peft": self.settings.peft_spec(),
                  "aggregate": old.aggregate, "optimizer": old._optimizer, "record_server_view": self.settings.privacy,
                  "client_options": old._client_options}
        old.close()
        self.fed = Federation.resume(folder / "federation", split_of(), **kwargs)
        self.fed.transport.add_tap(self._count)
        if self.baseline is not None:
            weights, _ = load_state(folder / "baseline", optimizer=self.baseline_opt, device=self.device)
            self.baseline.load_state_dict(weights)
        for _ in range(len(self.history.steps)):  # the data streams go on where they were
            for stream in self.streams.values():
                next(stream)

    # -- one round --------------------------------------------------------------------------
    def round(self, local_steps: int, stop: threading.Event) -> int:
        """One round of up to ``local_steps`` steps; records it; returns the steps it took."""
        given: dict[str, list[list[Encoded]]] = {c: [] for c in self.streams}
        marks: list[int] = []
        gate = _Gate(stop, lambda: marks.append(self.bytes["train"]))

        def feed(cid: str) -> Iterator[dict[str, torch.Tensor]]:
            for i in range(local_steps):
                if not gate.allows(i):
                    return
                items = next(self.streams[cid])
                given[cid].append(items)
                yield _to(collate(items, pad_id=self.pad), self.device)

        update_before = self.bytes["update"]
        clients = list(self.fed.clients.values())
        with PhaseTimer(self.fed.server, clients) as timer:
            result = self.fed.train_round({c: feed(c) for c in self.streams}, local_steps=local_steps)
        marks.append(self.bytes["train"])
        taken = max((len(v) for v in result.losses.values()), default=0)
        self._record(result, given, marks, timer, taken, self.bytes["update"] - update_before)
        return taken

    def _baseline_step(self, items: list[Encoded]) -> float | None:
        if self.baseline is None:
            return None
        batch = _to(collate(items, pad_id=self.pad), self.device)
        self.baseline.train()
        loss = next_token_loss(self.baseline(batch["input_ids"], batch["attention_mask"]).logits, batch["labels"])
        self.baseline_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.baseline_opt.step()
        return float(loss.detach())

    def _record(self, result: FedRound, given: dict[str, list[list[Encoded]]], marks: list[int], timer: PhaseTimer,
                taken: int, update_bytes: int) -> None:
        totals = timer.totals()
        server = _server_bytes(self.fed)
        device = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else None
        for i in range(taken):
            union = [item for c in sorted(given) if i < len(given[c]) for item in given[c][i]]
            self.history.steps.append(StepRecord(
                step=len(self.history.steps) + 1, round=self.fed.round,
                losses={c: v[i] for c, v in sorted(result.losses.items()) if i < len(v)},
                baseline_loss=self._baseline_step(union), wire_bytes=marks[i + 1] - marks[i],
                update_bytes=update_bytes / taken, phase_seconds={p: s / taken for p, s in totals.items()},
                server_bytes=server, device_bytes=device))
        if self.meter is not None and taken:
            last = {c: collate(v[-1], pad_id=self.pad) for c, v in given.items() if v}
            reading = self.meter.measure(self.fed.seen, last)
            if reading is not None:
                self.history.privacy.append(PrivacyReading(len(self.history.steps), *reading))
            self.fed.seen.clear()

    # -- validation -------------------------------------------------------------------------
    def federated_model(self) -> SplitModel:
        """Client 0's blocks around the server's trunk: the model the federation trained, scored here
        outside the protocol (an experimenter's view; nothing crosses the wire for it)."""
        first = self.fed.clients[sorted(self.fed.clients)[0]]
        assert first.tail is not None
        return SplitModel(first.head, self.fed.server.trunk, first.tail, tail_on_server=False)

    def score(self, model: SplitModel) -> float:
        model.eval()
        if self.settings.task == "summary":
            enc = [encode_example(ex, self.tokenizer, max_len=self.max_len) for ex in self.val]
            batches = [collate(enc[i:i + 16], pad_id=self.pad) for i in range(0, len(enc), 16)]
            return mean_label_nll(model, batches, device=self.device)
        return evaluate_choices(model, self.tokenizer, self.val, self.settings.task, max_len=self.max_len,
                                device=self.device)

    def validate(self) -> None:
        base = self.score(self.baseline) if self.baseline is not None else None
        self.history.validation.append(Checkpoint(len(self.history.steps), self.score(self.federated_model()), base))


_METERS: dict[tuple[Any, ...], PrivacyMeter] = {}


def _meter(settings: Settings, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> PrivacyMeter:
    """The privacy meter for this layout and noise level: trained once per model, reused by later runs."""
    key = (id(model), settings.head_layers, settings.noise_rel, settings.inverter_steps, settings.seed, settings.device)
    if key not in _METERS:
        public_block = split_model(model, head_layers=settings.head_layers, tail_layers=settings.tail_layers).head
        _METERS[key] = PrivacyMeter.train(public_block, public_token_batches(tokenizer), noise_rel=settings.noise_rel,
                                          steps=settings.inverter_steps, seed=settings.seed)
    return _METERS[key]


def _defaults(model: torch.nn.Module | None, tokenizer: PreTrainedTokenizerBase | None,
              device: torch.device) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    if model is not None and tokenizer is not None:
        return model.to(device), tokenizer
    from flglm_kit.pretrained import load_pretrained
    tok, glm = load_pretrained(device=device)
    return (model.to(device) if model is not None else glm), tokenizer or tok


def run(settings: Settings | None = None, *, stop: threading.Event | None = None,
        on_update: Callable[[History], None] | None = None, progress: Any = None,
        resume_from: str | Path | None = None, checkpoint_dir: str | Path | None = None,
        model: torch.nn.Module | None = None, tokenizer: PreTrainedTokenizerBase | None = None) -> History:
    """Train a federation with ``settings`` and return its :class:`~flglm_kit.run_history.History`.

    Args:
        settings: what to run (default: :meth:`Settings.default`, quick mode aware).
        stop: set it (from another thread) to stop between steps; the state is then saved.
        on_update: called with the history after setup and after every round (from the thread
            that runs; the dashboard redraws from it).
        progress: a tqdm bar to advance by each step, or ``True`` for a new ``tqdm.auto`` bar.
        resume_from: a folder a stopped run saved (``history.checkpoint``): go on from there.
            The settings must be the saved ones, except ``steps`` (the new total).
        checkpoint_dir: where a stopped or finished run saves its state (default: a new
            temporary folder when stopped, nothing when finished).
        model, tokenizer: the pretrained model to federate (default: the shipped tiny GLM).

    Returns:
        The history (``stopped``, ``checkpoint`` and ``message`` say how it ended).

    Raises:
        SettingsError: a bad setting, named in a sentence (the dashboard shows it as is).

    Introduced in notebook 06 (the dashboard).
    """
    settings = settings or Settings.default()
    history = History(settings=asdict(settings), metric="validation loss" if settings.task == "summary" else "accuracy")
    if resume_from is not None:
        saved = History.from_json((Path(resume_from) / "history.json").read_text())
        if replace(Settings(**saved.settings), steps=settings.steps) != settings:
            raise SettingsError(["the checkpoint was made with other settings; resume with the same ones "
                                 "(only steps may change)"])
        history = replace(saved, settings=asdict(settings), stopped=False, message="")
    settings.check()
    device = torch.device(settings.device)
    model, tokenizer = _defaults(model, tokenizer, device)
    stop = stop or threading.Event()
    t0 = time.perf_counter()
    state = _Run(settings, model, tokenizer, history)
    if resume_from is not None:
        state.load(Path(resume_from), lambda: split_model(model, head_layers=settings.head_layers,
                                                          tail_layers=settings.tail_layers))
    else:
        state.validate()
    history.setup_seconds += time.perf_counter() - t0
    bar = _bar(progress, settings.steps, len(history.steps))
    if on_update is not None:
        on_update(history)
    t1 = time.perf_counter() - history.seconds  # a resumed run's time goes on from the saved one
    try:
        next_eval = (len(history.steps) // settings.eval_every + 1) * settings.eval_every
        while len(history.steps) < settings.steps and not stop.is_set():
            taken = state.round(min(settings.average_every, settings.steps - len(history.steps)), stop)
            if bar is not None:
                bar.update(taken)
            if len(history.steps) >= next_eval or len(history.steps) >= settings.steps:
                state.validate()
                next_eval = (len(history.steps) // settings.eval_every + 1) * settings.eval_every
            history.seconds = time.perf_counter() - t1
            if on_update is not None:
                on_update(history)
        history.stopped = len(history.steps) < settings.steps
        if history.stopped and history.steps and (not history.validation
                                                  or history.validation[-1].step != len(history.steps)):
            state.validate()  # the metric where the run stopped
        if not history.stopped:
            history.message = f"done: {len(history.steps)} steps in {history.seconds:.1f} s"
        _save(state, history, checkpoint_dir)
    finally:
        state.fed.close()
    if on_update is not None:
        on_update(history)
    return history


def _save(state: _Run, history: History, checkpoint_dir: str | Path | None) -> None:
    if not history.stopped and checkpoint_dir is None:
        return
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else Path(tempfile.mkdtemp(prefix="flglm-dashboard-"))
    try:
        history.checkpoint = str(folder)
        state.save(folder)
    except NotImplementedError as err:  # a hierarchical server's replicas are not saved yet
        history.checkpoint = None
        history.message = f"stopped after step {len(history.steps)}; not saved: {err}"
        return
    if history.stopped:
        history.message = (f"stopped after step {len(history.steps)} of {history.settings['steps']}; "
                           f"saved to {folder} (resume_from= goes on)")


def _bar(progress: Any, total: int, done: int) -> Any:
    if progress is True:
        from tqdm.auto import tqdm
        return tqdm(total=total, initial=done, desc="federated steps")
    if progress and done:
        progress.update(done)  # a resumed run: the bar starts where the saved one stopped
    return progress or None

