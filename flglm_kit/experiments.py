"""The comparison the mission promises: centralized, federated and local-only training on one budget.

Three arms, each trained from the same pretrained checkpoint with the same parameter-efficient
method and learning rate, on the same budget (the same samples, in the same number of updates
of the same size), then scored on the same pooled test set (every site's test data):

* **centralized**: one model sees all the clients' data pooled: ``rounds x local_steps`` steps,
  each on the union of the batches the clients take in that federated step (``clients x batch``
  examples, the same examples in the same order as the federated arms), so that the arms differ
  only in how they train, not in what they see. (On the clinic triage task this matters: batches
  drawn uniformly from the pooled notes train much worse than site-stratified ones, section 5 of
  notebook 06);
* **federated**: the FL-GLM layout through :class:`~flglm_kit.federation.Federation`: each client
  takes ``local_steps`` steps of ``batch`` on its own shard per round, then FedAvg of the client
  blocks weighted by samples; the server's trunk is shared and client-batching steps it once on
  all the clients' batches together (:class:`~flglm_kit.scheduling.ClientBatching`);
* **fedadam**: the same federation with FedOpt's adaptive outer step (Reddi et al. 2021): each
  client takes one local SGD step (lr 1), and every client applies AdamW to the pseudo-gradient
  ``start - average``, which is then the clients' sample-weighted mean gradient: centralized
  AdamW on the pooled batch, up to how the loss weighs tokens (one local step per round only);
* **local-only**: each site trains alone on its own shard, as many steps of as many examples as
  centralized, and is scored on everyone's test data; the arm's score is the mean over sites.

Introduced in notebook 06.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from flglm_kit.client import SplitClient
from flglm_kit.data import (Example, collate, dirichlet_partition, encode_example, load_clinic_notes, load_superglue,
                            site_partition, special_ids)
from flglm_kit.federation import Federation, PeftMethod
from flglm_kit.finetune import evaluate_choices, generate_answers
from flglm_kit.losses import next_token_loss
from flglm_kit.metrics import rouge
from flglm_kit.scheduling import ClientBatching
from flglm_kit.split import SplitModel, split_model
from flglm_kit.stats import Interval, mean_interval

__all__ = ["Budget", "Setup", "RunScore", "Comparison", "run_arm", "compare", "ARMS", "peft_method",
           "split_generate_answers", "rouge_l_per_example", "task_setup", "MAX_LEN", "save_runs", "load_comparison",
           "comparison_variants", "copy_model"]

ARMS = ("centralized", "federated", "fedadam", "local-only")


@dataclass(frozen=True)
class Budget:
    """How much each arm trains: ``rounds x local_steps`` steps of ``batch`` examples per federated client
    (centralized and each local-only model: as many steps, each of ``clients x batch`` examples)."""

    rounds: int
    local_steps: int
    batch: int

    @property
    def steps(self) -> int:
        return self.rounds * self.local_steps


@dataclass
class Setup:
    """A task split across clients: each client's training shard, the pooled test set, and an
    optional pooled validation set (for choosing a learning rate without looking at the test set)."""

    task: str  # for :func:`flglm_kit.data.classification_choices`
    shards: dict[str, list[Example]]
    test: list[Example]
    max_len: int = 128
    name: str = ""
    validation: list[Example] = field(default_factory=list)


@dataclass(frozen=True)
class RunScore:
    """One trained model's accuracy on the pooled test set."""

    arm: str
    method: str
    seed: int
    accuracy: float
    n: int
    seconds: float
    site: str | None = None  # local-only: which site trained it
    samples: int = 0  # training examples it saw (federated: all clients together)
    lr: float | None = None  # its learning rate (None: not recorded, in rows written before it was)
    validation: float | None = None  # accuracy on the setup's validation set (None: it had none)


@dataclass
class Comparison:
    """Every run of a comparison, and its summary with 95 % intervals over seeds."""

    setup_name: str
    budget: Budget
    runs: list[RunScore] = field(default_factory=list)

    def arm(self, arm: str, method: str) -> Interval:
        """Mean accuracy over seeds (local-only: each seed's mean over sites) with its 95 % t-interval."""
        per_seed: dict[int, list[float]] = {}
        for r in self.runs:
            if r.arm == arm and r.method == method:
                per_seed.setdefault(r.seed, []).append(r.accuracy)
        if not per_seed:
            raise KeyError(f"no run of arm {arm!r} with method {method!r}")
        return mean_interval([sum(v) / len(v) for _, v in sorted(per_seed.items())])

    def gap(self, arm_a: str, arm_b: str, method: str) -> Interval:
        """``arm_a - arm_b``, paired by seed, with its 95 % t-interval.

        Raises:
            KeyError: the two arms share no seed for ``method`` (there is nothing to pair).
        """
        a, b = self._by_seed(arm_a, method), self._by_seed(arm_b, method)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            raise KeyError(f"arms {arm_a!r} (seeds {sorted(a)}) and {arm_b!r} (seeds {sorted(b)}) share no seed "
                           f"with method {method!r}: a paired gap needs runs of both on the same seed")
        return mean_interval([a[s] - b[s] for s in seeds])

    def validation_by_lr(self, arm: str, method: str) -> dict[float, float]:
        """Mean validation accuracy (over seeds; local-only: over sites too) of each learning rate tried.

        Choose the learning rate of an arm with it, then report that arm's *test* accuracy: the
        choice never sees the test set.

        Raises:
            KeyError: no run of that arm and method has both a learning rate and a validation score.
        """
        scores: dict[float, list[float]] = {}
        for r in self.runs:
            if r.arm == arm and r.method == method and r.lr is not None and r.validation is not None:
                scores.setdefault(r.lr, []).append(r.validation)
        if not scores:
            raise KeyError(f"no run of arm {arm!r} with method {method!r} has a learning rate and a validation score")
        return {lr: sum(v) / len(v) for lr, v in sorted(scores.items())}

    def validation_text(self, arm: str, method: str) -> str:
        """Each learning rate tried and its mean validation accuracy, e.g. ``"0.001 47.0 %, 0.003 52.4 %"``."""
        return ", ".join(f"{lr:g} {100 * v:.1f} %" for lr, v in self.validation_by_lr(arm, method).items())

    def best_rates(self, method: str, arms: Sequence[str]) -> dict[str, float]:
        """Each arm's learning rate with the best mean validation accuracy (:meth:`validation_by_lr`).

        Over every seed in the comparison: to choose on seed 0 only, ask ``of_seeds([0]).best_rates(...)``.
        """
        chosen = {}
        for arm in arms:
            by_lr = self.validation_by_lr(arm, method)
            chosen[arm] = max(by_lr, key=by_lr.__getitem__)
        return chosen

    def of_seeds(self, seeds: Iterable[int]) -> Comparison:
        """The runs of these seeds only (e.g. the seeds a choice was allowed to see)."""
        keep = set(seeds)
        return Comparison(self.setup_name, self.budget, [r for r in self.runs if r.seed in keep])

    def at_lr(self, lrs: Mapping[str, float]) -> Comparison:
        """The runs of each arm in ``lrs`` at that arm's learning rate (e.g. the one validation chose)."""
        return Comparison(self.setup_name, self.budget, [r for r in self.runs if r.arm in lrs and r.lr == lrs[r.arm]])

    def _paired(self, arm_a: str, arm_b: str, method: str) -> bool:
        return bool(set(self._by_seed(arm_a, method)) & set(self._by_seed(arm_b, method)))

    def _by_seed(self, arm: str, method: str) -> dict[int, float]:
        out: dict[int, list[float]] = {}
        for r in self.runs:
            if r.arm == arm and r.method == method:
                out.setdefault(r.seed, []).append(r.accuracy)
        return {s: sum(v) / len(v) for s, v in out.items()}

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.runs))

    def table(self) -> str:
        """One row per method and arm: its number of seeds, accuracy in % with its interval, and its gaps to
        centralized and local-only."""
        arms = [a for a in ARMS if any(r.arm == a for r in self.runs)]
        rows = [f"{'method':8} {'arm':12} {'seeds':>5} {'accuracy (%)':>28} {'- centralized (pts)':>24} "
                f"{'- local-only (pts)':>24}"]
        for m in self.methods:
            mine = [a for a in arms if any(r.arm == a and r.method == m for r in self.runs)]
            for a in mine:
                gaps = [self.gap(a, other, m) if other in mine and other != a and self._paired(a, other, m) else None
                        for other in ("centralized", "local-only")]
                rows.append(f"{m:8} {a:12} {len(self._by_seed(a, m)):>5} {self.arm(a, m).pct():>28}" + "".join(
                    _gap_text(g).rjust(25) for g in gaps))
        n = {r.n for r in self.runs}
        seeds = sorted({r.seed for r in self.runs})
        rows.append(f"accuracy on {'/'.join(map(str, sorted(n)))} pooled test examples; seeds {seeds} (each row: "
                    "how many it has); 95 % t-intervals over seeds (gaps over the seeds both arms have)")
        return "\n".join(rows)


def _gap_text(g: Interval | None) -> str:
    if g is None:
        return ""
    if g.degenerate:
        return f"{100 * g.estimate:+6.1f} [n = 1]"
    return f"{100 * g.estimate:+6.1f} [{100 * g.low:+.1f}, {100 * g.high:+.1f}]"


#: tokens per example: triage notes keep their symptoms and vital signs; CB fits whole.
MAX_LEN = {"triage": 160, "cb": 128}


def task_setup(task: str, *, eval_size: int = 300, num_clients: int = 4, alpha: float = 0.3,
               seed: int = 0, validation_size: int = 0) -> Setup:
    """The comparison's non-IID tasks, split across clients.

    ``"triage"``: clinic triage, one client per hospital site (each site its own case mix).
    ``"cb"``: CommitmentBank (SuperGLUE schema, three labels), split over ``num_clients`` by a
    Dirichlet(``alpha``) draw over labels (each client at least 32 examples). The test set is the
    first ``eval_size`` examples of the task's test split, pooled over every site; the validation
    set the first ``validation_size`` of its validation split (none by default), disjoint from both.
    """
    load: Callable[[str], list[Example]]
    if task == "triage":
        load = functools.partial(load_clinic_notes, task="triage")
        train = load("train")
        parts = site_partition([ex.meta["site"] for ex in train])
        names = sorted({str(ex.meta["site"]) for ex in train})
    elif task == "cb":
        load = functools.partial(load_superglue, "cb")
        train = load("train")
        parts = dirichlet_partition([ex.answer for ex in train], num_clients, alpha=alpha, seed=seed, min_size=32)
        names = [f"client-{k}" for k in range(num_clients)]
    else:
        raise ValueError(f"task must be 'triage' or 'cb', not {task!r}")
    shards = {n: [train[i] for i in part] for n, part in zip(names, parts)}
    validation = load("validation")[:validation_size] if validation_size > 0 else []
    return Setup(task, shards, list(load("test")[:eval_size]), max_len=MAX_LEN[task], name=task,
                 validation=list(validation))


def peft_method(name: str, **options: Any) -> PeftMethod | None:
    """``"full"`` (None), ``"lora"`` or ``"prefix"``, built with ``options``."""
    if name == "full":
        return None
    if name == "lora":
        from flglm_kit.lora import LoraSpec
        lora: PeftMethod = LoraSpec(**options)
        return lora
    if name == "prefix":
        from flglm_kit.prefix import PrefixSpec
        prefix: PeftMethod = PrefixSpec(**options)
        return prefix
    raise ValueError(f"method must be 'full', 'lora' or 'prefix', not {name!r}")


def _stream(examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, *, batch: int, max_len: int,
            seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled batches of ``examples`` (a new order each pass, from ``seed``)."""
    encoded = [encode_example(ex, tokenizer, max_len=max_len) for ex in examples]
    pad = special_ids(tokenizer).pad
    rng = random.Random(seed)
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for start in range(0, len(order) - batch + 1, batch):
            yield collate([encoded[i] for i in order[start:start + batch]], pad_id=pad)
        if len(order) < batch:  # a shard smaller than one batch: use it whole
            yield collate([encoded[i] for i in order], pad_id=pad)


def _union(batches: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batches stacked into one, padded to the longest."""
    seq_len = max(b["input_ids"].shape[1] for b in batches)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": -100}
    return {key: torch.cat([torch.nn.functional.pad(b[key], (0, seq_len - b[key].shape[1]), value=value)
                            for b in batches]) for key, value in fill.items()}


def _split(model_fn: Callable[[], torch.nn.Module], method: str, method_options: Mapping[str, Any]) -> SplitModel:
    split = split_model(model_fn())
    spec = peft_method(method, **method_options)
    if spec is not None:
        spec.apply(split)
    return split


def _train_alone(split: SplitModel, batches: Iterator[dict[str, torch.Tensor]], steps: int, lr: float) -> int:
    """``steps`` AdamW steps on ``batches``; returns the samples seen."""
    params = [p for p in split.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    split.train()
    samples = 0
    for batch in itertools.islice(batches, steps):
        samples += int(batch["input_ids"].shape[0])
        out = split(batch["input_ids"], batch["attention_mask"])
        loss = next_token_loss(out.logits, batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    split.eval()
    return samples


def run_arm(arm: str, setup: Setup, budget: Budget, *, method: str, seed: int,
            model_fn: Callable[[], torch.nn.Module], tokenizer: PreTrainedTokenizerBase, lr: float,
            method_options: Mapping[str, Any] | None = None) -> list[RunScore]:
    """Train and score one arm (local-only: one model per site); returns its scores."""
    options = dict(method_options or {})
    torch.manual_seed(seed)
    clients = sorted(setup.shards)

    def scored(model: torch.nn.Module, start: float, site: str | None, samples: int) -> RunScore:
        """The run's score on the test set (and on the validation set, when the setup has one); its
        seconds count training and scoring since ``start``."""
        test = evaluate_choices(model, tokenizer, setup.test, setup.task, max_len=setup.max_len)
        validation = (evaluate_choices(model, tokenizer, setup.validation, setup.task, max_len=setup.max_len)
                      if setup.validation else None)
        return RunScore(arm, method, seed, test, len(setup.test), time.perf_counter() - start, site, samples, lr,
                        validation)

    start = time.perf_counter()
    pooled_batch = budget.batch * len(clients)
    if arm == "centralized":
        split = _split(model_fn, method, options)
        per_client = [_stream(setup.shards[c], tokenizer, batch=budget.batch, max_len=setup.max_len,
                              seed=seed * 1000 + i) for i, c in enumerate(clients)]  # the federated arms' streams
        pad = special_ids(tokenizer).pad
        seen = _train_alone(split, (_union([next(s) for s in per_client], pad) for _ in itertools.count()),
                            budget.steps, lr)
        return [scored(split, start, None, seen)]
    if arm == "local-only":
        out = []
        for i, site in enumerate(clients):
            split = _split(model_fn, method, options)
            seen = _train_alone(split, _stream(setup.shards[site], tokenizer, batch=pooled_batch,
                                               max_len=setup.max_len, seed=seed * 1000 + i), budget.steps, lr)
            out.append(scored(split, start, site, seen))
            start = time.perf_counter()
        return out
    if arm in ("federated", "fedadam"):
        def adamw(ps: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
            return torch.optim.AdamW([p for p in ps if p.requires_grad], lr=lr)

        def sgd(ps: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
            return torch.optim.SGD([p for p in ps if p.requires_grad], lr=1.0)

        if arm == "fedadam" and budget.local_steps != 1:
            raise ValueError("the fedadam arm takes one local step per round (its local SGD step has lr 1, so "
                             f"the pseudo-gradient is the mean gradient); the budget has {budget.local_steps}")
        fed = Federation(_split(model_fn, method, options), clients, aggregate="server", copy_split=False,
                         scheduler=ClientBatching(), server_optimizer=adamw,
                         optimizer=adamw if arm == "federated" else sgd,
                         outer_optimizer=adamw if arm == "fedadam" else None)
        streams = {c: _stream(setup.shards[c], tokenizer, batch=budget.batch, max_len=setup.max_len,
                              seed=seed * 1000 + i) for i, c in enumerate(clients)}
        seen = 0
        for _ in range(budget.rounds):
            done = fed.train_round({c: itertools.islice(s, budget.local_steps) for c, s in streams.items()},
                                   local_steps=budget.local_steps)
            seen += sum(done.samples.values())
        first = fed.clients[clients[0]]
        assert first.tail is not None
        whole = SplitModel(first.head, fed.server.trunk, first.tail, tail_on_server=False).eval()
        result = scored(whole, start, None, seen)
        fed.close()
        return [result]
    raise ValueError(f"arm must be one of {ARMS}, not {arm!r}")


def compare(setup: Setup, budget: Budget, *, methods: Sequence[str], seeds: Sequence[int],
            model_fn: Callable[[], torch.nn.Module], tokenizer: PreTrainedTokenizerBase,
            lr: Mapping[str, float], method_options: Mapping[str, Mapping[str, Any]] | None = None,
            arms: Sequence[str] = ARMS, progress: Callable[[str], None] | None = None) -> Comparison:
    """Every arm x method x seed; returns a :class:`Comparison` (``.table()`` prints it)."""
    result = Comparison(setup.name or setup.task, budget)
    for method, seed, arm in itertools.product(methods, seeds, arms):
        runs = run_arm(arm, setup, budget, method=method, seed=seed, model_fn=model_fn, tokenizer=tokenizer,
                       lr=lr[method], method_options=(method_options or {}).get(method))
        result.runs += runs
        if progress is not None:
            acc = sum(r.accuracy for r in runs) / len(runs)
            progress(f"{method:6} seed {seed} {arm:11} accuracy {acc:.3f} ({sum(r.seconds for r in runs):.0f} s)")
    return result


def save_runs(comparison: Comparison, task: str, path: str | Path, *,
              options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Append ``comparison``'s runs to the JSON-lines file ``path``, one line each (see :func:`load_comparison`).

    ``options``: the ``method_options`` the runs were made with; each line keeps its method's, so
    that a file says which variant of a method it holds (LoRA with or without whole modules).
    """
    with Path(path).open("a") as out:
        for run in comparison.runs:
            line = {"task": task, "budget": asdict(comparison.budget), **asdict(run)}
            if options and run.method in options:
                line["options"] = dict(options[run.method])   # json writes its tuples as lists
            out.write(json.dumps(line) + "\n")


def load_comparison(path: str | Path, task: str, budget: Budget | None = None, *,
                    options: Mapping[str, Mapping[str, Any]] | None = None) -> Comparison:
    """The runs of ``task`` (and ``budget``: default, the file's first) in a file :func:`save_runs` wrote.

    ``options``: for a method whose runs in the file were made with more than one set of options
    (LoRA with and without whole modules, say), the set to load, as ``save_runs`` was given it.
    Runs of different variants never merge into one arm.

    Raises:
        FileNotFoundError: ``path`` does not exist (the text says how to make it).
        KeyError: the file holds no run of ``task`` with that budget (and those options).
        ValueError: a method's runs hold more than one set of options and ``options`` names none.
    """
    path = Path(path)
    lines = _rows(path, task)
    if budget is None and lines:
        budget = Budget(**lines[0]["budget"])
    lines = [r for r in lines if budget is not None and Budget(**r["budget"]) == budget]
    wanted = {m: json.loads(json.dumps(dict(o))) for m, o in (options or {}).items()}   # tuples as json lists
    lines = [r for r in lines if r["method"] not in wanted or r.get("options", {}) == wanted[r["method"]]]
    variants: dict[str, set[str]] = {}
    for r in lines:
        variants.setdefault(r["method"], set()).add(json.dumps(r.get("options", {}), sort_keys=True))
    for method, seen in variants.items():
        if len(seen) > 1:
            raise ValueError(f"{path} holds runs of {method!r} on {task!r} with {len(seen)} sets of options "
                             f"({'; '.join(sorted(seen))}); pick one with options={{{method!r}: {{...}}}}")
    runs = [RunScore(**{k: v for k, v in r.items() if k not in ("task", "budget", "options")}) for r in lines]
    if not runs:
        raise KeyError(f"{path} holds no run of task {task!r} with budget {budget}"
                       + (f" and options {wanted}" if wanted else ""))
    assert budget is not None
    return Comparison(task, budget, runs)


def comparison_variants(path: str | Path, task: str) -> list[tuple[Budget, str, dict[str, Any]]]:
    """Each distinct (budget, method, options) of ``task``'s runs in ``path``, in the order first written.

    A file that records how a recipe was chosen (ranks, budgets, learning rates on validation)
    holds many variants; load each with ``load_comparison(path, task, budget, options={method: options})``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    seen: dict[str, tuple[Budget, str, dict[str, Any]]] = {}
    for r in _rows(Path(path), task):
        key = json.dumps([r["budget"], r["method"], r.get("options", {})], sort_keys=True)
        seen.setdefault(key, (Budget(**r["budget"]), r["method"], r.get("options", {})))
    return list(seen.values())


def _rows(path: Path, task: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; make it with scripts/federated_comparison.py --out {path}")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in lines if r["task"] == task]


def copy_model(model: torch.nn.Module) -> Callable[[], torch.nn.Module]:
    """A ``model_fn`` that hands out fresh copies of ``model`` (the pretrained checkpoint each arm starts from)."""
    return lambda: copy.deepcopy(model)


class _ThroughSplit:
    """Looks like a model to :func:`~flglm_kit.finetune.generate_answers`; generates through ``client``."""

    def __init__(self, client: SplitClient) -> None:
        self.client = client

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.client.head.parameters()

    def generate(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                 eos_token_id: int, pad_token_id: int, **_: Any) -> torch.Tensor:
        return self.client.generate(input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                    eos_token_id=eos_token_id, pad_token_id=pad_token_id)


def split_generate_answers(client: SplitClient, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
                           max_len: int, max_new_tokens: int = 48, batch_size: int = 8) -> list[str]:
    """Greedy answers generated by ``client`` through the split (the server's trunk in the loop, with caches).

    The same left-padded batches as :func:`flglm_kit.finetune.generate_answers` gives
    ``model.generate``; each new token is one encrypted round trip per batch.
    """
    return generate_answers(_ThroughSplit(client), tokenizer, examples, max_len=max_len,
                            max_new_tokens=max_new_tokens, batch_size=batch_size)


def rouge_l_per_example(predictions: Sequence[str], references: Sequence[str]) -> Interval:
    """Mean ROUGE-L F1 over examples with its 95 % t-interval (n = examples)."""
    return mean_interval([rouge([p], [r])["rougeL"] for p, r in zip(predictions, references)])
