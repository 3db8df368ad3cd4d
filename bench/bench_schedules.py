"""Schedules against the physical limit of batching: the server's time and the whole round, per round of K clients.

One JSON line per result. The kit's shipped tiny GLM, split 1 | trunk | 1; K clients, batch 1 each,
one training step per client per round (FedSEA-LLaMA's setting: batch 1, length 128, and length 32).
For each K every configuration runs on the same token ids, interleaved round by round (the order
reversed every other repetition), so machine noise hits them alike; medians come from one run.

Configurations (rows ``config``):

- ``sequential``, ``client_batching``, ``hierarchical_M2`` / ``_M4`` (in process),
  ``hierarchical_M2_processes`` / ``_M4_processes`` (process-backed sub-servers, when the kit has
  them; skipped where K < M): a server with that scheduler and K connected, encrypted clients; one
  round per repetition. ``client_blocks``: ``per_client`` (``flglm_kit.rounds.run_round``: each
  client runs its own input and output blocks) or ``batched`` (``run_round_batched``: the K clients'
  blocks in one vmapped call, when the kit has it). Server-hierarchical syncs every 8 optimizer
  steps (AdamW moments local).
- ``centralized``: the unsplit model, one AdamW step on a batch of K samples (the round's tokens).
- ``ideal_trunk`` / ``ideal_model``: K forward+backward+AdamW steps at batch 1 over one such step at
  batch K, through the bare trunk (random activations and output gradients) and through the whole
  model. The ratio is the most any batching can save on this machine.

Measures, per round: ``server`` = wall time inside ``server.run_pending`` (the scheduler, the trunk's
forward, backward and optimizer step, averaging, sealing the replies; opening and checking the
frames in ``server.submit`` is ``desk``); ``round`` = wall time of the whole simulated round (all
clients' blocks, encryption, the server). Speed-ups are over ``sequential`` with per-client blocks
at the same K and length; ``fraction_of_ideal`` divides the server speed-up by ``ideal_trunk`` and the
round speed-up by ``ideal_model``. Targets use medians, except server-hierarchical, which uses means
(they include the periodic averaging). The last line lists the targets and whether each was met.

    python bench/bench_schedules.py             # K 1 2 4 8 (and 64 on a GPU), lengths 128 32, 2+8 reps
    python bench/bench_schedules.py --quick     # smoke run: K 1 2, length 32, 1+2 repetitions
    python bench/bench_schedules.py --clients 8 --seq-lens 128 --reps 20 --device cpu
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import pkgutil
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

import flglm_kit
from flglm_kit.device import get_device, set_seed
from flglm_kit.pretrained import load_pretrained
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import ClientBatching, Sequential, ServerHierarchical
from flglm_kit.split import Spans, split_model

# The tests' wiring (split, server, K connected clients), as bench/bench_memory.py uses it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_parties

BENCH = "schedules"
LR = 1e-4  # small: weights barely move over the run, so every repetition costs the same
SYNC_EVERY = 8
Work = list[tuple[Any, tuple[torch.Tensor, ...]]]  # [(client, (input_ids,)), ...] as run_round takes it
Row = dict[str, Any]  # one JSON line
TARGETS = {  # from the issue; "ideal" is measured in the same run
    "client_batching_server_fraction_of_ideal_trunk_at_8": 0.9,
    "client_batching_batched_blocks_round_fraction_of_ideal_model_at_8": 0.8,
    "hierarchical_M2_processes_server_speedup_at_8": 1.3,
    "gpu_client_batching_server_speedup_at_8": 6.0,
    "gpu_64_clients_tokens_per_s_over_centralized": 0.8,
}


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def adamw(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=LR)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- features that may or may not be in the kit yet -----------------------------------------------

def processes_supported() -> str | None:
    """``None`` if ``ServerHierarchical(..., processes=True, optimizer_spec=...)`` exists, else why not."""
    if {"processes", "optimizer_spec"} <= set(inspect.signature(ServerHierarchical).parameters):
        return None
    return "ServerHierarchical has no 'processes' option in this tree (process-backed sub-servers not merged yet)"


def find_batched_round() -> tuple[Callable[[Work], Any] | None, str]:
    """A function ``work -> anything`` that runs a round with the K clients' blocks batched, or why there is none.

    Looks for ``run_round_batched(work)`` (``work`` as for ``run_round``) or a ``ClientBank(clients)``
    with ``run_round(batches)`` in any top-level module of the kit (by reading sources first).
    """
    import importlib

    root = Path(flglm_kit.__file__).parent
    for info in pkgutil.iter_modules([str(root)]):
        path = root / f"{info.name}.py"
        text = path.read_text() if path.exists() else ""
        if "def run_round_batched" in text:
            fn = importlib.import_module(f"flglm_kit.{info.name}").run_round_batched
            return fn, f"flglm_kit.{info.name}.run_round_batched"
        if "class ClientBank" in text:
            bank_cls = importlib.import_module(f"flglm_kit.{info.name}").ClientBank
            if not hasattr(bank_cls, "run_round"):
                return None, (f"flglm_kit.{info.name}.ClientBank has no run_round(batches); "
                              "this bench does not know its interface: adapt find_batched_round")
            banks: dict[tuple[int, ...], Any] = {}

            def via_bank(work: Work, cls: Any = bank_cls, banks: dict[tuple[int, ...], Any] = banks) -> Any:
                key = tuple(id(c) for c, _ in work)
                if key not in banks:
                    banks[key] = cls([c for c, _ in work])
                return banks[key].run_round([b for _, b in work])

            return via_bank, f"flglm_kit.{info.name}.ClientBank(clients).run_round(batches)"
    return None, "no batched client blocks in this tree (no run_round_batched or ClientBank under flglm_kit/)"


# -- what runs once per repetition ----------------------------------------------------------------

@dataclass
class Timed:
    """One configuration's samples (seconds) per measure, or why it has none."""

    name: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, measure: str, seconds: float) -> None:
        self.samples.setdefault(measure, []).append(seconds)

    def median(self, measure: str) -> float | None:
        s = self.samples.get(measure)
        return statistics.median(s) if s else None

    def mean(self, measure: str) -> float | None:
        s = self.samples.get(measure)
        return statistics.fmean(s) if s else None


class ServerClock:
    """Sums the wall time spent inside one server's ``run_pending`` and ``submit`` (instance wrappers)."""

    def __init__(self, server: Any, device: torch.device) -> None:
        self.server_s = self.desk_s = 0.0
        run_pending, submit = server.run_pending, server.submit

        def timed_run_pending() -> int:
            start = time.perf_counter()
            try:
                return run_pending()
            finally:
                sync(device)
                self.server_s += time.perf_counter() - start

        def timed_submit(frame: bytes) -> Any:
            start = time.perf_counter()
            try:
                return submit(frame)
            finally:
                self.desk_s += time.perf_counter() - start

        server.run_pending, server.submit = timed_run_pending, timed_submit

    def reset(self) -> None:
        self.server_s = self.desk_s = 0.0


class Schedule:
    """A server with a scheduler and K connected clients; one round per call."""

    def __init__(self, name: str, model: torch.nn.Module, scheduler: Any, k: int, device: torch.device,
                 batched: Callable[[Work], Any] | None) -> None:
        self.name, self.device, self.batched = name, device, batched
        self.parties = make_parties(copy.deepcopy(model), client_ids=[f"c{i}" for i in range(k)], optimizer=adamw,
                                    server_options={"scheduler": scheduler, "device": device}, device=device)
        self.parties.server._taps.clear()  # make_parties keeps every decrypted message for the tests
        self.clock = ServerClock(self.parties.server, device)

    def round(self, ids: torch.Tensor, timed: Timed, *, batched: bool) -> None:
        """One round: client k trains on row k of ``ids`` (K, T)."""
        work: Work = [(client, (ids[k:k + 1],)) for k, client in enumerate(self.parties.clients)]
        self.clock.reset()
        sync(self.device)
        start = time.perf_counter()
        runner = self.batched if batched else run_round
        assert runner is not None
        result = runner(work)
        sync(self.device)
        elapsed = time.perf_counter() - start
        dropped = getattr(result, "dropped", None)
        if dropped:
            raise RuntimeError(f"{self.name}: clients dropped in a round: {dropped}")
        timed.add("round", elapsed)
        timed.add("server", self.clock.server_s)
        timed.add("desk", self.clock.desk_s)
        client_seconds = getattr(result, "client_seconds", None)  # the batched path says how long its blocks took
        if client_seconds:
            timed.add("client_blocks", sum(client_seconds.values()))
            timed.info["largest_client_call"] = max(len(g) for g in getattr(result, "groups", [()]))

    def facts(self) -> dict[str, Any]:
        """What the scheduler did over the whole run (syncs; the workers' start-up time)."""
        scheduler = self.parties.server.scheduler
        out: dict[str, Any] = {}
        if hasattr(scheduler, "syncs"):
            out["syncs_in_run"] = scheduler.syncs
        group = getattr(scheduler, "group", None)
        if group is not None:
            out["workers_start_s"] = round(group.start_seconds, 2)
            out["last_sync_ms"] = ms(group.last_sync_seconds)
        return out

    def close(self) -> None:
        for obj in (self.parties.server.scheduler, self.parties.server):
            for verb in ("close", "shutdown"):
                fn = getattr(obj, verb, None)
                if callable(fn):
                    fn()
                    return


def train_step_fn(module: torch.nn.Module, *, trunk: bool, hidden_size: int, device: torch.device
                  ) -> Callable[[torch.Tensor], None]:
    """One forward+backward+AdamW step at whatever batch it is given: the bare trunk or the whole model."""
    opt = adamw(module.parameters())
    module.train()

    def step(ids: torch.Tensor) -> None:  # ids: (B, T)
        b, t = ids.shape
        opt.zero_grad(set_to_none=True)
        if trunk:
            g = torch.Generator(device=device).manual_seed(int(ids[0, 0]))
            acts = torch.randn(b, t, hidden_size, device=device, generator=g).requires_grad_(True)  # (B, T, H)
            hidden = module(acts, Spans.full(b, t, device=device))  # (B, T, H)
            hidden.backward(torch.randn(b, t, hidden_size, device=device, generator=g) / (b * t))
        else:
            module(input_ids=ids, labels=ids).loss.backward()
        opt.step()

    return step


# -- one K ---------------------------------------------------------------------------------------

def build(model: torch.nn.Module, k: int, device: torch.device, sub_servers: list[int],
          batched: Callable[[Work], Any] | None, batched_why: str) -> tuple[dict[str, Schedule], dict[str, Timed]]:
    """The schedules for K clients and an empty ``Timed`` per row (skipped ones say why)."""
    # name -> (make the scheduler, or why not)
    schedulers: dict[str, Callable[[], Any] | str] = {"sequential": Sequential, "client_batching": ClientBatching}
    for m in sub_servers:
        schedulers[f"hierarchical_M{m}"] = partial(ServerHierarchical, m, sync_every=SYNC_EVERY)
    # newer kits only (checked here); the workers build the same AdamW the factory makes
    in_processes: dict[str, Any] = {"processes": True, "optimizer_spec": ("AdamW", {"lr": LR})}
    for m in sub_servers:  # workers take ~20 s to start: none that would sit idle
        idle = f"fewer clients ({k}) than sub-server processes ({m}): some workers would idle" if k < m else None
        schedulers[f"hierarchical_M{m}_processes"] = processes_supported() or idle or partial(
            ServerHierarchical, m, sync_every=SYNC_EVERY, **in_processes)
    schedules, rows = {}, {}
    for name, make in schedulers.items():
        skipped = make if isinstance(make, str) else None
        if not isinstance(make, str):
            try:
                log(f"  K={k}: building {name}")
                schedules[name] = Schedule(name, model, make(), k, device, batched)
            except Exception as err:  # noqa: BLE001 - a failing feature is a skipped row, not a crash
                skipped = f"failed to build: {type(err).__name__}: {err}"
        for blocks in ("per_client", "batched"):
            rows[f"{name}/{blocks}"] = Timed(name, info={"client_blocks": blocks}, skipped=skipped or (
                batched_why if blocks == "batched" and batched is None else None))
    for name in ("centralized", "trunk_batch1", "trunk_batchK", "model_batch1"):
        rows[name] = Timed(name)
    return schedules, rows


def each_row(step: Callable[[torch.Tensor], None], ids: torch.Tensor) -> None:
    """K steps at batch 1: one per row of ids (K, T)."""
    for j in range(ids.shape[0]):
        step(ids[j:j + 1])


def repetition(i: int, ids: torch.Tensor, schedules: dict[str, Schedule], rows: dict[str, Timed],
               steppers: dict[str, Callable[[torch.Tensor], None]], device: torch.device, record: bool) -> None:
    """One round of every configuration on the same ids (K, T), in this repetition's order."""
    jobs: list[tuple[str, Callable[[Timed], None]]] = []
    for key, timed in rows.items():
        if timed.skipped:
            continue
        name, _, blocks = key.partition("/")
        if name in schedules:
            jobs.append((key, partial(schedules[name].round, ids, batched=blocks == "batched")))
    def stepped(fn: Callable[[], None]) -> Callable[[Timed], None]:
        def job(t: Timed) -> None:
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            t.add("step", time.perf_counter() - start)
        return job

    jobs.append(("centralized", stepped(lambda: steppers["model"](ids))))
    jobs.append(("model_batch1", stepped(lambda: each_row(steppers["model"], ids))))
    jobs.append(("trunk_batchK", stepped(lambda: steppers["trunk"](ids))))
    jobs.append(("trunk_batch1", stepped(lambda: each_row(steppers["trunk"], ids))))
    if i % 2:
        jobs.reverse()  # no configuration always first or last
    for key, job in jobs:
        scratch = rows[key] if record else Timed(key)
        try:
            job(scratch)
        except Exception as err:  # noqa: BLE001 - e.g. a batched path that refuses this schedule
            rows[key].skipped = f"failed: {type(err).__name__}: {err}"
            log(f"    {key}: {rows[key].skipped}")


# -- reporting -----------------------------------------------------------------------------------

def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 3)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 4)


def emit(record: Row) -> None:
    print(json.dumps(record), flush=True)


def report(k: int, t: int, rows: dict[str, Timed], common: Row) -> dict[str, Row]:
    """Print this (K, T)'s lines; return them by key for the targets."""
    base = dict(bench=BENCH, clients=k, seq_len=t, tokens_per_round=k * t, **common)
    out: dict[str, Row] = {}
    ideal_trunk = ratio(rows["trunk_batch1"].median("step"), rows["trunk_batchK"].median("step"))
    ideal_model = ratio(rows["model_batch1"].median("step"), rows["centralized"].median("step"))
    for name, a, b, ideal in (("ideal_trunk", "trunk_batch1", "trunk_batchK", ideal_trunk),
                              ("ideal_model", "model_batch1", "centralized", ideal_model)):
        out[name] = {**base, "config": name, "k_batch1_ms": ms(rows[a].median("step")),
                     "one_batchK_ms": ms(rows[b].median("step")), "ideal_speedup": ideal,
                     "measure": "forward+backward+AdamW step: K at batch 1 vs one at batch K (medians)"}
    c = rows["centralized"]
    out["centralized"] = {**base, "config": "centralized", "step_ms": ms(c.median("step")),
                          "step_ms_mean": ms(c.mean("step")),
                          "tokens_per_s": ratio(k * t, c.median("step")), "reps": len(c.samples.get("step", []))}
    seq = rows["sequential/per_client"]
    for key, timed in rows.items():
        if "/" not in key:
            continue
        row = {**base, "config": timed.name, **timed.info}
        if timed.skipped:
            out[key] = {**row, "skipped": timed.skipped}
            continue
        hier = timed.name.startswith("hierarchical")
        stat = "mean" if hier else "median"
        server, rnd = getattr(timed, stat)("server"), getattr(timed, stat)("round")
        s_seq, r_seq = getattr(seq, stat)("server"), getattr(seq, stat)("round")  # like with like
        sp_server, sp_round = ratio(s_seq, server), ratio(r_seq, rnd)
        out[key] = {**row, "server_ms": ms(timed.median("server")), "server_ms_mean": ms(timed.mean("server")),
                    "desk_ms": ms(timed.median("desk")),
                    "round_ms": ms(timed.median("round")), "round_ms_mean": ms(timed.mean("round")),
                    "tokens_per_s": ratio(k * t, rnd), "stat_for_ratios": stat,
                    "speedup_server_vs_sequential": sp_server, "speedup_round_vs_sequential": sp_round,
                    "server_fraction_of_ideal_trunk": ratio(sp_server, ideal_trunk),
                    "round_fraction_of_ideal_model": ratio(sp_round, ideal_model),
                    "tokens_per_s_over_centralized": ratio(ratio(k * t, rnd), out["centralized"]["tokens_per_s"]),
                    "reps": len(timed.samples.get("round", []))}
        if timed.samples.get("client_blocks"):
            out[key]["client_blocks_ms"] = ms(timed.median("client_blocks"))
    for record in out.values():
        emit(record)
    return out


def targets(results: dict[tuple[int, int], dict[str, Row]], device: torch.device, common: Row) -> None:
    """The issue's targets at 8 clients (the longest length measured), met or not."""
    def get(k: int, key: str, field_: str) -> tuple[Any, int | None]:
        """The value at the longest length measured (128 before 32), or ``{"skipped": why}``, or ``None``."""
        why = None
        for t in sorted((t for kk, t in results if kk == k), reverse=True):
            row = results[(k, t)].get(key, {})
            if row.get(field_) is not None:
                return row[field_], t
            why = why or row.get("skipped")
        return ({"skipped": why} if why else None), None

    cb = "client_batching/batched"
    specs = [
        ("client_batching_server_fraction_of_ideal_trunk_at_8", 8, "client_batching/per_client",
         "server_fraction_of_ideal_trunk", None),
        ("client_batching_batched_blocks_round_fraction_of_ideal_model_at_8", 8, cb,
         "round_fraction_of_ideal_model", None),
        ("hierarchical_M2_processes_server_speedup_at_8", 8, "hierarchical_M2_processes/per_client",
         "speedup_server_vs_sequential", None),
        ("gpu_client_batching_server_speedup_at_8", 8, "client_batching/per_client",
         "speedup_server_vs_sequential", "cuda"),
        ("gpu_64_clients_tokens_per_s_over_centralized", 64, cb, "tokens_per_s_over_centralized", "cuda"),
    ]
    out = []
    for name, k, key, field_, needs in specs:
        value, t = get(k, key, field_)
        entry: dict[str, Any] = {"target": name, "threshold": TARGETS[name], "row": key, "field": field_,
                                 "clients": k, "seq_len": t, "value": None, "met": None}
        if isinstance(value, dict) or value is None:
            entry["note"] = (value or {}).get("skipped", f"not measured (K={k} not in this run)")
            if key == cb:  # no batched blocks: show, unjudged, how the per-client round fares
                entry["per_client_value"], _ = get(k, "client_batching/per_client", field_)
        else:
            entry["value"] = value
            if needs and device.type != needs:
                entry["note"] = f"a {needs} target; this run is on {device.type}: reported, not judged"
            else:
                entry["met"] = bool(value >= TARGETS[name])
        out.append(entry)
    emit({"bench": BENCH, "config": "targets", "targets": out, **common})


# -- main ----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: K 1 2, length 32, 1+2 repetitions")
    parser.add_argument("--clients", type=int, nargs="+", default=None,
                        help="K values (default 1 2 4 8, and 64 on a GPU)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=None, help="lengths (default 128 32)")
    parser.add_argument("--sub-servers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--reps", type=int, default=None,
                        help="measured repetitions per length (default 8: x 2 lengths = 16 rounds, 2 syncs)")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured repetitions first (default 2)")
    parser.add_argument("--device", default=None, help="default: flglm_kit.get_device()")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = get_device(args.device)
    quick = args.quick  # fills in only what was not given
    clients = args.clients or ([1, 2] if quick else [1, 2, 4, 8, 64] if device.type == "cuda" else [1, 2, 4, 8])
    args.seq_lens = args.seq_lens or ([32] if quick else [128, 32])
    args.reps = args.reps if args.reps is not None else 2 if quick else 8
    args.warmup = args.warmup if args.warmup is not None else 1 if quick else 2

    set_seed(args.seed)
    _, model = load_pretrained(device=device)  # the kit's shipped tiny GLM
    model.train()
    split = split_model(copy.deepcopy(model), head_layers=1, tail_layers=1)
    hidden_size = model.config.hidden_size
    steppers = {"trunk": train_step_fn(split.trunk, trunk=True, hidden_size=hidden_size, device=device),
                "model": train_step_fn(copy.deepcopy(model), trunk=False, hidden_size=hidden_size, device=device)}
    batched, batched_why = find_batched_round()
    common = {"device": str(device), "torch_threads": torch.get_num_threads(), "quick": args.quick}
    emit({"bench": BENCH, "config": "setup", **common, "model": "shipped tiny GLM (load_pretrained)",
          "params": sum(p.numel() for p in model.parameters()),
          "trunk_params": sum(p.numel() for p in split.trunk.parameters()),
          "layers": model.config.num_hidden_layers, "hidden_size": hidden_size, "split": "1 | trunk | 1",
          "clients": clients, "seq_lens": args.seq_lens, "batch_per_client": 1, "warmup": args.warmup,
          "reps": args.reps, "sync_every": SYNC_EVERY, "optimizer": f"AdamW lr {LR} (clients, server, centralized)",
          "batched_blocks": batched_why, "processes": processes_supported() or "ServerHierarchical(processes=True)",
          "server_ms": "wall time inside server.run_pending: scheduler, trunk forward/backward/AdamW, averaging, "
                       "sealing replies (CUDA synchronized at the end of each call)",
          "desk_ms": "wall time inside server.submit: opening and checking frames",
          "round_ms": "wall time of the whole simulated round (run_round, or the batched-blocks round)",
          "ideal": "K forward+backward+AdamW steps at batch 1 over one at batch K, bare trunk / whole model",
          "ratios": "speed-ups over sequential/per_client at the same K and length; medians, except "
                    "hierarchical rows (means against sequential's mean: they include the periodic averaging)"})
    log(f"bench_schedules on {device}: K {clients}, lengths {args.seq_lens}, {args.warmup}+{args.reps} reps; "
        f"batched client blocks: {batched_why}")
    started = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    vocab = model.config.vocab_size
    results: dict[tuple[int, int], dict[str, Row]] = {}
    for k in clients:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schedules, proto = build(model, k, device, args.sub_servers, batched, batched_why)
        rows = {t: copy.deepcopy(proto) for t in args.seq_lens}
        try:
            for i in range(args.warmup + args.reps):
                for t in args.seq_lens:
                    ids = torch.randint(4, vocab, (k, t), generator=g).to(device)  # (K, T): client k gets row k
                    repetition(i, ids, schedules, rows[t], steppers, device, record=i >= args.warmup)
                log(f"  K={k}: repetition {i + 1}/{args.warmup + args.reps} "
                    f"({time.perf_counter() - started:.0f} s so far)")
            for t in args.seq_lens:
                for timed in rows[t].values():
                    if timed.name in schedules:
                        timed.info.update(schedules[timed.name].facts())
        finally:
            for s in schedules.values():
                s.close()
        for t in args.seq_lens:
            results[(k, t)] = report(k, t, rows[t], common)
    targets(results, device, {**common, "seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
