"""Exercise checkers for the notebooks, and the small in-process federation they build.

Every checker takes the learner's answer first (``None``: "not answered yet"), computes the
right answer itself from what the notebook hands it, and prints one ``[OK]`` / ``[FAIL]`` line
with a hint, so a notebook never shows an answer. ``tests/test_exercises.py`` feeds each
checker its reference answer and a wrong one; hints and worked solutions are in
``notebooks/solutions/README.md``.

:func:`check_scheduler` runs a learner's :class:`~flglm_kit.scheduling.Scheduler` against the
reference semantics of :class:`~flglm_kit.scheduling.ClientBatching` and prints a friendly
``[OK]`` / ``[FAIL]`` report; :func:`small_federation` asks
:class:`~flglm_kit.federation.Federation` for a server and its clients (each with its own copy
of the client-side blocks, per-client keys).

Introduced in notebook 05 (checkers for notebooks 00-04 and 06 too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from flglm_kit.fedavg import weighted_average
from flglm_kit.federation import Federation
from flglm_kit.models import tiny_model
from flglm_kit.optim import OptimizerFactory, default_optimizer
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import ClientBatching, Scheduler
from flglm_kit.server import SplitServer
from flglm_kit.split import split_model

__all__ = ["small_federation", "check_scheduler", "check_fedavg", "check_parameter_count", "check_vocab_size",
           "check_server_compute_share", "check_activation_bytes", "check_label_fraction", "check_bag_threshold",
           "check_nn_one_block", "check_smallest_sigma", "check_weakest_entity_type", "check_encryption_overhead",
           "check_header_tamper", "check_traffic_analysis", "check_largest_phase"]

TOL = 1e-5


def small_federation(model: torch.nn.Module, *, num_clients: int = 3, client_ids: Sequence[str] | None = None,
                     scheduler: Scheduler | None = None, optimizer: OptimizerFactory = default_optimizer,
                     client_optimizer: OptimizerFactory | None = None, head_layers: int = 1,
                     tail_layers: int = 1) -> Federation:
    """A :class:`~flglm_kit.federation.Federation` of ``model`` without averaging, for the exercises.

    Args:
        model: the model to split; it is copied, so several federations can start from it.
        num_clients: how many clients (named ``client-0``, ``client-1``, ...), unless ``client_ids``.
        scheduler: the server's scheduler (default :class:`~flglm_kit.scheduling.Sequential`).
        optimizer: the server's optimizer factory; ``client_optimizer`` the clients'
            (default: the same as the server's).
        head_layers, tail_layers: the cut (FL-GLM: 1 and 1).

    Example:
        >>> fed = small_federation(tiny_model(seed=0), num_clients=2, scheduler=ClientBatching())
        >>> sorted(fed.clients), type(fed.server.scheduler).__name__
        (['client-0', 'client-1'], 'ClientBatching')

    Not called directly in a notebook: :func:`check_scheduler` (notebook 05's exercise) uses it.
    """
    ids = list(client_ids) if client_ids is not None else [f"client-{i}" for i in range(num_clients)]
    split = split_model(model, head_layers=head_layers, tail_layers=tail_layers)  # copies the weights
    return Federation(split, ids, scheduler=scheduler, aggregate=None, optimizer=client_optimizer or optimizer,
                      server_optimizer=optimizer, copy_split=False)


def _reporter(verbose: bool) -> tuple[Callable[[bool, str], bool], Callable[[], bool]]:
    """``report(ok, text)`` prints an ``[OK]``/``[FAIL]`` line; ``finish()`` the tally (True if all passed)."""
    lines: list[tuple[bool, str]] = []

    def report(ok: bool, text: str) -> bool:
        lines.append((ok, text))
        if verbose:
            print(f"[{'OK' if ok else 'FAIL'}] {text}")
        return ok

    def finish() -> bool:
        passed = all(ok for ok, _ in lines)
        if verbose:
            print(f"{sum(ok for ok, _ in lines)}/{len(lines)} checks passed" + (": well done!" if passed else ""))
        return passed

    return report, finish


# -- check_scheduler -----------------------------------------------------------------------------

def _sgd(params: Any) -> torch.optim.Optimizer:
    # SGD where weights are compared: Adam rescales float noise in zero-gradient biases to full steps.
    return torch.optim.SGD(params, lr=0.1)


def _batch(k: int, step: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``k``'s batch at ``step``: its own batch size and length, right padding inside."""
    g = torch.Generator().manual_seed(1000 * k + step)
    b, t = (1, 2, 3, 2)[k % 4], (8, 12, 16, 10)[k % 4]
    ids = torch.randint(3, vocab, (b, t), generator=g)
    keep = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = (torch.arange(t)[None, :] < keep[:, None]).long()  # (b, t)
    return ids.masked_fill(mask == 0, 0), mask


class _TimeUp(Exception):
    pass


def _guard(server: SplitServer, limit_s: float) -> Callable[[], None]:
    """Make ``server.run_pending`` raise once a round has run ``limit_s`` seconds; returns the round's reset."""
    started = [time.monotonic()]
    original = server.run_pending

    def run_pending() -> int:
        if time.monotonic() - started[0] > limit_s:
            raise _TimeUp(f"a round did not finish within {limit_s:g} s")
        return original()

    server.run_pending = run_pending  # type: ignore[method-assign]
    return lambda: started.__setitem__(0, time.monotonic())


def _make(make: Any) -> Scheduler:
    scheduler = make() if callable(make) else make
    if not isinstance(scheduler, Scheduler):
        raise TypeError(f"check_scheduler needs a Scheduler subclass (or a function that makes one); "
                        f"got {type(scheduler).__name__}")
    return scheduler


def check_scheduler(make: type[Scheduler] | Callable[[], Scheduler], *, rounds: int = 3, num_clients: int = 3,
                    time_limit_s: float = 10.0, seed: int = 0, verbose: bool = True) -> bool:
    """Check that a scheduler trains exactly like client-batching when the clients' requests arrive together.

    It builds two small federations from the same tiny model (plain SGD on both sides, clients
    of different batch sizes and lengths), one with your scheduler and one with
    :class:`~flglm_kit.scheduling.ClientBatching`, runs ``rounds`` rounds of every client
    together and one round of all clients but the last with :func:`~flglm_kit.rounds.run_round`,
    then asks each client for an evaluation forward. It checks that:

    * every client's step completes in every round (none refused or dropped, nothing raised);
    * each round takes one optimizer step over the union of the clients' batches;
    * each client's losses equal client-batching's, and so do the trunk's weights (within 1e-5);
    * nothing is left in the server's queue, and evaluation requests get the same logits.

    Args:
        make: your ``Scheduler`` subclass (called with no arguments), or a function that makes one.
        rounds: full rounds to run (then one round without the last client).
        num_clients: clients in each federation.
        time_limit_s: a round that takes longer fails (a scheduler that waits for ever).
        seed: the tiny model's seed.
        verbose: print one ``[OK]`` / ``[FAIL]`` line per check.

    Returns:
        ``True`` if every check passed.

    Example:
        >>> check_scheduler(ClientBatching, verbose=False)
        True

    Introduced in notebook 05.
    """
    report, finish = _reporter(verbose)
    try:
        scheduler = _make(make)
    except NotImplementedError:
        report(False, "your scheduler is not written yet")
        return finish()
    except Exception as err:  # noqa: BLE001 - a learner's mistake becomes a friendly line
        report(False, f"could not make your scheduler: {type(err).__name__}: {err}")
        return finish()
    model = tiny_model("glm", seed=seed)
    vocab = int(model.config.vocab_size)
    feds = {"yours": small_federation(model, num_clients=num_clients, scheduler=scheduler, optimizer=_sgd),
            "reference": small_federation(model, num_clients=num_clients, scheduler=ClientBatching(), optimizer=_sgd)}
    reset = _guard(feds["yours"].server, time_limit_s)
    plan = [list(range(num_clients))] * rounds + [list(range(num_clients - 1))]
    losses: dict[str, list[dict[str, float]]] = {"yours": [], "reference": []}
    for r, members in enumerate(plan):
        for name, fed in feds.items():
            reset()
            try:
                clients = list(fed.clients.values())
                result = run_round([(clients[k], _batch(k, r, vocab)) for k in members])
            except NotImplementedError:
                report(False, "your scheduler's run() is not written yet")
                return finish()
            except Exception as err:  # noqa: BLE001
                where = "" if name == "yours" else " (the reference!)"
                report(False, f"round {r + 1} with {len(members)} clients{where}: {type(err).__name__}: {err}")
                return finish()
            if result.dropped:
                cid, why = next(iter(result.dropped.items()))
                report(False, f"round {r + 1}: {len(result.dropped)} client step(s) failed, e.g. {cid}: {why}")
                return finish()
            losses[name].append(result.losses)
    absent = list(feds["yours"].clients)[-1]
    report(True, f"every client's step completed in {len(plan)} rounds (the last without {absent})")
    steps = feds["yours"].server.steps_done
    report(steps == len(plan), f"one optimizer step per round: {steps} steps in {len(plan)} rounds")
    gap = max(abs(y[c] - ref[c]) for y, ref in zip(losses["yours"], losses["reference"]) for c in ref)
    report(gap < TOL, f"each client's losses equal client-batching's (largest difference {gap:.1e}, tolerance {TOL:g})")
    mine, ref = (list(f.server.trunk.parameters()) for f in feds.values())
    wgap = max(float((a - b).detach().abs().max()) for a, b in zip(mine, ref))
    report(wgap < TOL, f"the trunk's weights equal client-batching's (largest difference {wgap:.1e})")
    left = feds["yours"].server.peek(lambda m: True)
    report(not left, "every request was answered" if not left else
           f"{len(left)} request(s) are still in the queue, e.g. {left[0].kind!r} from {left[0].client_id}")
    reset()
    try:
        ids, mask = _batch(0, 99, vocab)
        got = feds["yours"].clients["client-0"].forward(ids, mask)
        want = feds["reference"].clients["client-0"].forward(ids, mask)
        egap = float((got - want).abs().max())
        report(egap < TOL, f"an evaluation request gets the same logits (largest difference {egap:.1e})")
    except Exception as err:  # noqa: BLE001
        report(False, f"an evaluation request was not answered: {type(err).__name__}: {err}")
    return finish()


# -- check_fedavg --------------------------------------------------------------------------------

def check_fedavg(fn: Callable[[dict[str, dict[str, torch.Tensor]], dict[str, int]], dict[str, torch.Tensor]], *,
                 verbose: bool = True) -> bool:
    """Check a learner's FedAvg against :func:`flglm_kit.fedavg.weighted_average`.

    ``fn(states, samples)`` takes each client's tensors (``{client: {name: tensor}}``) and how many
    samples each trained on (``{client: n}``), and returns the averaged tensors ``{name: tensor}``.
    The checks: equal samples give the plain mean; unequal samples weight each client by its
    share; three clients with tensors of several shapes; the result has every name and shape;
    the clients' tensors are left as they were.

    Example:
        >>> def mine(states, samples):
        ...     total = sum(samples.values())
        ...     names = next(iter(states.values()))
        ...     return {n: sum(states[c][n] * samples[c] / total for c in states) for n in names}
        >>> check_fedavg(mine, verbose=False)
        True

    Introduced in notebook 06.
    """
    report, finish = _reporter(verbose)
    g = torch.Generator().manual_seed(0)
    cases: dict[str, tuple[dict[str, int], dict[str, tuple[int, ...]]]] = {
        "two clients, equal samples (the plain mean)": ({"a": 2, "b": 2}, {"w": (3,)}),
        "two clients, 1 and 3 samples (weighted by samples)": ({"a": 1, "b": 3}, {"w": (2, 2)}),
        "three clients, several tensors": ({"a": 5, "b": 1, "c": 2}, {"w": (4, 3), "b": (3,), "e": (2, 1, 2)}),
    }
    for name, (samples, shapes) in cases.items():
        states = {c: {n: torch.randn(*shape, generator=g) for n, shape in shapes.items()} for c in samples}
        kept = {c: {n: t.clone() for n, t in st.items()} for c, st in states.items()}
        try:
            got = fn(states, dict(samples))
        except NotImplementedError:
            report(False, "your fedavg is not written yet")
            return finish()
        except Exception as err:  # noqa: BLE001 - a learner's mistake becomes a friendly line
            report(False, f"{name}: {type(err).__name__}: {err}")
            continue
        if not isinstance(got, dict) or set(got) != set(shapes):
            report(False, f"{name}: return a dict with the names {sorted(shapes)}; got "
                          f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
            continue
        clients = sorted(samples)
        ok = True
        for n in shapes:
            want = weighted_average([states[c][n].reshape(-1) for c in clients], [samples[c] for c in clients])
            if tuple(torch.as_tensor(got[n]).shape) != shapes[n] or not torch.allclose(
                    torch.as_tensor(got[n]).reshape(-1).float(), want, atol=1e-6):
                report(False, f"{name}: tensor {n!r} differs from the weighted mean (is each client weighted by "
                              "its samples / all samples?)")
                ok = False
                break
        if ok:
            report(True, name)
        untouched = all(torch.equal(states[c][n], kept[c][n]) for c in states for n in shapes)
        if not untouched:
            report(False, f"{name}: the clients' tensors changed; build new tensors instead of updating in place")
    return finish()


# -- notebooks 00-05: small checkers that compute the answer themselves, so a notebook never shows it --

def _verdict(exercise: str, answer: Any, ok: Callable[[], bool], hint: str, verbose: bool) -> bool:
    """Print ``[OK]`` / ``[FAIL] hint`` / "not answered yet" for one answer; True if right."""
    if answer is None:
        passed, line = False, f"{exercise}: not answered yet"
    else:
        try:
            passed = bool(ok())
        except Exception as err:  # noqa: BLE001 - a learner's mistake becomes a friendly line
            passed, hint = False, f"{hint} ({type(err).__name__}: {err})"
        line = f"[OK] {exercise}" if passed else f"[FAIL] {exercise}: {hint}"
    if verbose:
        print(line)
    return passed


def check_parameter_count(answer: int | None, *, verbose: bool = True) -> bool:
    """Notebook 00, exercise 1: the parameters of ``tiny_model("glm", num_hidden_layers=8)``.

    Introduced in notebook 00.
    """
    truth = sum(p.numel() for p in tiny_model("glm", num_hidden_layers=8).parameters())
    return _verdict("exercise 1", answer, lambda: int(answer) == truth,  # type: ignore[arg-type]
                    "count every parameter: sum(p.numel() for p in model.parameters())", verbose)


def check_vocab_size(answer: int | None, model: torch.nn.Module, *, verbose: bool = True) -> bool:
    """Notebook 00, exercise 2: the last dimension of the logits, the vocabulary size of ``model``.

    Introduced in notebook 00.
    """
    truth = int(model.config.vocab_size)  # type: ignore[union-attr, arg-type]
    return _verdict("exercise 2", answer, lambda: int(answer) == truth,  # type: ignore[arg-type]
                    "look at logits.shape, then at model.config", verbose)


def check_server_compute_share(answer: float | None, model: torch.nn.Module, *, head_layers: int = 2,
                               tail_layers: int = 1, seq_len: int = 32, verbose: bool = True) -> bool:
    """Notebook 01, exercise 1: the trunk's share of compute (%, one decimal) with ``head_layers`` blocks.

    Introduced in notebook 01.
    """
    flops = split_model(model, head_layers=head_layers, tail_layers=tail_layers).flops_per_token(seq_len)
    truth = 100 * flops["trunk"] / sum(flops.values())
    return _verdict("exercise 1", answer, lambda: abs(float(answer) - truth) <= 0.1,  # type: ignore[arg-type]
                    "read the trunk's compute % from split.summary() after the new cut", verbose)


def check_activation_bytes(fn: Callable[[int, int, int], int] | None, *, verbose: bool = True) -> bool:
    """Notebook 01, exercise 2: ``fn(B, T, H)``, the bytes of one (B, T, H) float32 tensor.

    Introduced in notebook 01.
    """
    cases = [(1, 1, 1), (8, 128, 256), (3, 7, 11)]
    return _verdict("exercise 2", fn, lambda: all(fn(*c) == torch.zeros(c).nbytes for c in cases),  # type: ignore[misc]
                    "how many bytes does one float32 take?", verbose)


def check_label_fraction(answer: float | None, batch: dict[str, torch.Tensor], *, verbose: bool = True) -> bool:
    """Notebook 02, exercise 1: the share of a batch's real tokens that its summary-task labels reveal.

    Introduced in notebook 02.
    """
    truth = float((batch["labels"] != -100).sum() / batch["attention_mask"].sum())
    return _verdict("exercise 1", answer, lambda: abs(float(answer) - truth) <= 0.01,  # type: ignore[arg-type]
                    "count the labels that are not -100, over the real tokens", verbose)


def check_bag_threshold(atol: float | None, update: torch.Tensor | None, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor, *, verbose: bool = True) -> bool:
    """Notebook 02, exercise 2: an ``atol`` that makes the bag of words exact on an AdamW update.

    ``update`` is the embedding table's change after one AdamW step; the answer passes if
    ``bag_of_words(update, atol=atol)`` has precision 1 and recall of at least 0.98.

    Introduced in notebook 02.
    """
    from flglm_kit.attacks import bag_of_words, score_bag

    def ok() -> bool:
        if update is None or int((update != 0).any(1).sum()) < 0.5 * len(update):
            raise ValueError("the update is missing or sparse: take one step with AdamW, not SGD")
        got = score_bag("", bag_of_words(update, atol=float(atol)), input_ids, attention_mask,  # type: ignore[arg-type]
                        knowledge="")
        return got.precision == 1.0 and (got.recall or 0.0) >= 0.98

    return _verdict("exercise 2", atol, ok, "precision must be 1 and recall at least 0.98: try other powers of ten",
                    verbose)


def check_nn_one_block(answer: float | None, model: torch.nn.Module, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor, *, verbose: bool = True) -> bool:
    """Notebook 02, exercise 3: nearest-neighbour token recovery after one client block (first step).

    Introduced in notebook 02.
    """
    from flglm_kit.attacks import activations_of, nearest_neighbour_inversion, token_recovery_rate

    def ok() -> bool:
        fed = Federation(split_model(model, head_layers=1, tail_layers=1), ["exercise"], aggregate=None,
                         record_server_view=True)
        fed.clients["exercise"].train_step(input_ids, attention_mask)
        seen = activations_of(fed.seen)[0].tensor
        table = model.get_input_embeddings().weight  # type: ignore[operator]
        truth = token_recovery_rate(nearest_neighbour_inversion(seen, table).cpu(), input_ids, attention_mask)
        fed.close()
        return abs(float(answer) - truth) <= 0.02  # type: ignore[arg-type]

    return _verdict("exercise 3", answer, ok, "run nearest_neighbour_inversion on the FL-GLM first activations",
                    verbose)


def check_smallest_sigma(answer: float | str | None, rates: dict[float, float], *, verbose: bool = True) -> bool:
    """Notebook 03, exercise 1: the smallest σ whose recovery is under half of σ = 0's (or ``"none"``).

    Introduced in notebook 03.
    """
    below = [s for s in sorted(rates) if rates[s] < rates[min(rates)] / 2]
    truth = below[0] if below else "none"
    return _verdict("exercise 1", answer, lambda: answer == truth,
                    "compare each σ's rate with half of the rate at σ = 0", verbose)


def check_weakest_entity_type(answer: str | None, texts: Sequence[str], entities: Sequence[Sequence[Any]], *,
                              verbose: bool = True) -> bool:
    """Notebook 03, exercise 3: the private entity type recovered least often from ``texts``.

    Introduced in notebook 03.
    """
    from flglm_kit.attacks import entity_recovery_rate

    kinds = sorted({e["type"] for group in entities for e in group})
    rate = {k: entity_recovery_rate(list(texts), list(entities), types=[k]) for k in kinds}
    return _verdict("exercise 3", answer, lambda: answer in rate and rate[answer] == min(rate.values()),
                    f"score each of {kinds} on its own", verbose)


def check_encryption_overhead(answer: int | None, plain_ledger: Any, secure_ledger: Any, *, step: int = 1,
                              verbose: bool = True) -> bool:
    """Notebook 04, exercise 1: bytes encryption adds to one training step of one client (all its frames).

    Introduced in notebook 04.
    """
    def total(ledger: Any) -> int:
        return sum(r.nbytes for r in ledger if r.step == step)

    truth = total(secure_ledger) - total(plain_ledger)
    return _verdict("exercise 1", answer, lambda: int(answer) == truth,  # type: ignore[arg-type]
                    "count every frame of the step, both directions", verbose)


def check_header_tamper(answer: str | None, *, verbose: bool = True) -> bool:
    """Notebook 04, exercise 2: the server's error for a frame whose clear *step* field was changed.

    Introduced in notebook 04.
    """
    return _verdict("exercise 2", answer, lambda: "authentication failed" in str(answer),
                    "flip a bit of the step field (the 8 bytes before the sequence number) and raise the seq",
                    verbose)


def check_traffic_analysis(answer: int | None, ledger: Any, client_id: str, *, verbose: bool = True) -> bool:
    """Notebook 04, exercise 3: how many training steps ``client_id`` took, read off the clear headers.

    Introduced in notebook 04.
    """
    truth = len({r.step for r in ledger if r.client_id == client_id and r.kind == "activations"})
    return _verdict("exercise 3", answer, lambda: int(answer) == truth,  # type: ignore[arg-type]
                    "count the steps of the frames that carry this client's id", verbose)


def check_largest_phase(answer: str | None, phases: dict[str, float], *, verbose: bool = True) -> bool:
    """Notebook 05, exercise 2: the phase with the largest share of a round (``phases``: name -> seconds).

    Introduced in notebook 05.
    """
    truth = max(phases, key=phases.__getitem__)
    return _verdict("exercise 2", answer, lambda: answer == truth,
                    f"compare the bars of section 5; answer with one of {sorted(phases)}", verbose)
