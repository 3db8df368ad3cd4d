"""The three-arm comparison runs each arm on one budget, and its intervals are computed as stated."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from flglm_kit.data import Example, toy_tokenizer
from flglm_kit.experiments import (Budget, Comparison, RunScore, Setup, compare, comparison_variants, copy_model,
                                   load_comparison, run_arm, save_runs)
from flglm_kit.experiments import _union
from flglm_kit.models import tiny_model
from flglm_kit.stats import mean_interval, wilson_interval


def _toy_setup() -> tuple[Setup, object]:
    """Two sites that each see one label only: the local-only arm cannot learn the other."""
    tok = toy_tokenizer(["red blue green cold warm fever cough rash yes no Answer: Note:"])

    def ex(sign: str, label: str) -> Example:
        return Example(f"Note: {sign} {sign}\nAnswer:", label, label, {"task": "boolq"})

    shards = {"a": [ex("fever", "yes")] * 8, "b": [ex("rash", "no")] * 8}
    test = [ex("fever", "yes"), ex("rash", "no")] * 3
    return Setup("boolq", shards, test, max_len=16, name="toy"), tok


def test_each_arm_trains_on_its_share_and_is_scored_on_the_pooled_test_set():
    setup, tok = _toy_setup()
    model = tiny_model("glm", vocab_size=32, seed=0)
    budget = Budget(rounds=4, local_steps=1, batch=4)
    result = compare(setup, budget, methods=["full"], seeds=[0], model_fn=copy_model(model), tokenizer=tok,
                     lr={"full": 1e-2})
    arms = [(r.arm, r.site) for r in result.runs]
    assert arms == [("centralized", None), ("federated", None), ("fedadam", None), ("local-only", "a"),
                    ("local-only", "b")]
    assert all(r.n == 6 and 0.0 <= r.accuracy <= 1.0 for r in result.runs)
    assert [r.samples for r in result.runs] == [4 * 8] * 5  # the same budget: 4 steps of 2 clients x 4
    assert "centralized" in result.table() and "seeds [0]" in result.table()
    assert all(line.split()[2] == "1" for line in result.table().splitlines()[1:-1])   # each row: one seed
    assert "[n = 1: no interval]" in result.table()  # one seed: no point interval that looks like certainty
    lora = RunScore("centralized", "lora", 0, 0.5, 6, 1.0, None, 32)   # a method run in one arm only
    assert "lora" in Comparison("toy", budget, result.runs + [lora]).table()
    unpaired = Comparison("toy", budget, [r for r in result.runs if r.arm != "centralized"]
                          + [RunScore("centralized", "full", 7, 0.5, 6, 1.0, None, 32)])   # no seed in common
    assert "centralized" in unpaired.table()
    with pytest.raises(KeyError, match="share no seed"):
        unpaired.gap("federated", "centralized", "full")
    with pytest.raises(ValueError, match="one local step"):
        run_arm("fedadam", setup, Budget(1, 2, 4), method="full", seed=0, model_fn=copy_model(model), tokenizer=tok,
                lr=1e-2)


def test_the_summary_is_the_mean_over_seeds_with_a_t_interval():
    runs = [RunScore("federated", "full", s, acc, 100, 1.0) for s, acc in ((0, 0.7), (1, 0.8), (2, 0.9))]
    runs += [RunScore("local-only", "full", s, acc, 100, 1.0, site)
             for s in (0, 1, 2) for site, acc in (("a", 0.5), ("b", 0.6))]
    result = Comparison("x", Budget(1, 1, 1), runs)
    fed = result.arm("federated", "full")
    assert math.isclose(fed.estimate, 0.8) and math.isclose(fed.high - fed.estimate, 4.303 * 0.1 / math.sqrt(3),
                                                               rel_tol=1e-3)
    gap = result.gap("federated", "local-only", "full")
    assert math.isclose(gap.estimate, 0.25) and gap.n == 3
    with pytest.raises(KeyError):
        result.arm("centralized", "full")


def test_intervals():
    assert mean_interval([1.0]).low == 1.0
    w = wilson_interval(0, 10)
    assert w.low == 0.0 and 0.25 < w.high < 0.35
    w = wilson_interval(10, 10)  # the other edge: 10 of 10 (Wilson's lower bound 0.7225)
    assert w.high == 1.0 and w.estimate == 1.0 and abs(w.low - 0.7225) < 1e-3
    w = wilson_interval(81, 263)  # Newcombe (1998), example: 0.3080 [0.2553, 0.3662]
    assert abs(w.low - 0.2553) < 1e-3 and abs(w.high - 0.3662) < 1e-3
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_runs_saved_as_json_lines_load_back_by_task_and_budget(tmp_path):
    runs = [RunScore("centralized", "full", s, 0.5 + s / 10, 50, 1.0, None, 64) for s in (0, 1)]
    path = tmp_path / "runs.jsonl"
    save_runs(Comparison("cb", Budget(2, 1, 4), runs), "cb", path)
    save_runs(Comparison("cb", Budget(9, 1, 4), runs[:1]), "cb", path)  # another budget: kept apart
    loaded = load_comparison(path, "cb", Budget(2, 1, 4))
    assert loaded.runs == runs and loaded.budget == Budget(2, 1, 4)
    assert load_comparison(path, "cb").budget == Budget(2, 1, 4)  # default: the file's first budget
    with pytest.raises(KeyError, match="triage"):
        load_comparison(path, "triage")
    with pytest.raises(FileNotFoundError, match="federated_comparison.py"):
        load_comparison(tmp_path / "none.jsonl", "cb")


def test_a_saved_run_keeps_the_options_of_its_method(tmp_path):
    runs = [RunScore("centralized", m, 0, 0.5, 50, 1.0, None, 64) for m in ("lora", "full")]
    path = tmp_path / "runs.jsonl"
    options = {"lora": {"modules_to_save": ("embed_tokens",)}}
    save_runs(Comparison("cb", Budget(2, 1, 4), runs), "cb", path, options=options)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["options"] == {"modules_to_save": ["embed_tokens"]} and "options" not in lines[1]
    assert load_comparison(path, "cb").runs == runs


def test_the_centralized_arm_steps_on_the_union_of_the_clients_batches():
    a = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.tensor([[1, 1, 1]]),
         "labels": torch.tensor([[-100, 6, 7]])}
    b = {"input_ids": torch.tensor([[8, 0], [9, 9]]), "attention_mask": torch.tensor([[1, 0], [1, 1]]),
         "labels": torch.tensor([[8, -100], [9, 9]])}
    u = _union([a, b], pad_id=0)
    assert u["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 9, 0]]
    assert u["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert u["labels"].tolist() == [[-100, 6, 7], [8, -100, -100], [9, 9, -100]]


def test_a_learning_rate_is_chosen_on_validation_scores_never_on_test_scores(tmp_path):
    setup, tok = _toy_setup()
    setup.validation = setup.test[:4]
    model = tiny_model("glm", vocab_size=32, seed=0)
    runs = [r for lr in (1e-2, 1e-4) for r in run_arm("centralized", setup, Budget(2, 1, 4), method="full", seed=0,
                                                        model_fn=copy_model(model), tokenizer=tok, lr=lr)]
    assert [r.lr for r in runs] == [1e-2, 1e-4] and all(r.validation is not None for r in runs)
    # Validation prefers 4e-3 although 1e-3 scores better on test: the choice follows validation.
    made = [RunScore("federated", "lora", s, test, 50, 1.0, None, 64, lr, val)
            for s in (0, 1) for lr, val, test in ((1e-3, 0.6, 0.9), (4e-3, 0.8 + s / 100, 0.5))]
    comparison = Comparison("x", Budget(2, 1, 4), made)
    by_lr = comparison.validation_by_lr("federated", "lora")
    assert by_lr == pytest.approx({1e-3: 0.6, 4e-3: 0.805}) and max(by_lr, key=by_lr.get) == 4e-3
    # A choice over every seed can differ from one made on seed 0 alone: here fedadam's seed 0 prefers 1e-3.
    fedadam = [RunScore("fedadam", "lora", s, 0.5, 50, 1.0, None, 64, lr, val)
               for s, lr, val in ((0, 1e-3, 0.7), (0, 4e-3, 0.6), (1, 1e-3, 0.5), (1, 4e-3, 0.9))]
    both = Comparison("x", Budget(2, 1, 4), made + fedadam)
    assert both.best_rates("lora", ["federated", "fedadam"]) == {"federated": 4e-3, "fedadam": 4e-3}
    assert both.of_seeds([0]).best_rates("lora", ["federated", "fedadam"]) == {"federated": 4e-3, "fedadam": 1e-3}
    assert {r.seed for r in both.of_seeds([1]).runs} == {1} and not both.of_seeds([5]).runs
    chosen = comparison.at_lr({"federated": 4e-3})
    assert chosen.arm("federated", "lora").estimate == pytest.approx(0.5) and len(chosen.runs) == 2
    with pytest.raises(KeyError, match="validation score"):
        comparison.validation_by_lr("centralized", "lora")
    # Rows written before runs kept an lr load as lr None, and take no part in the choice.
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps({"task": "x", "budget": {"rounds": 2, "local_steps": 1, "batch": 4}, "arm": "federated",
                                "method": "lora", "seed": 0, "accuracy": 0.7, "n": 50, "seconds": 1.0}) + "\n")
    save_runs(comparison, "x", path)
    loaded = load_comparison(path, "x")
    assert loaded.runs[0].lr is None and loaded.runs[1:] == made
    assert loaded.validation_by_lr("federated", "lora") == by_lr


def test_runs_of_two_variants_of_a_method_never_merge_into_one_arm(tmp_path):
    frozen = [RunScore("centralized", "lora", s, 0.3, 50, 1.0, None, 64) for s in (0, 1)]
    trained = [RunScore("centralized", "lora", s, 0.9, 50, 1.0, None, 64) for s in (0, 1)]
    path = tmp_path / "runs.jsonl"
    save_runs(Comparison("cb", Budget(2, 1, 4), frozen), "cb", path, options={"lora": {"modules_to_save": ()}})
    save_runs(Comparison("cb", Budget(2, 1, 4), trained), "cb", path,
              options={"lora": {"modules_to_save": ("embed_tokens",)}})
    with pytest.raises(ValueError, match="2 sets of options.*options="):
        load_comparison(path, "cb")
    picked = load_comparison(path, "cb", options={"lora": {"modules_to_save": ("embed_tokens",)}})
    assert picked.runs == trained
    assert load_comparison(path, "cb", options={"lora": {"modules_to_save": []}}).runs == frozen
    with pytest.raises(KeyError, match="options"):
        load_comparison(path, "cb", options={"lora": {"r": 16}})


def test_a_recipe_file_lists_each_variant_once_in_the_order_written(tmp_path):
    path = tmp_path / "recipe.jsonl"
    r8 = {"lora": {"r": 8, "alpha": 16}}
    runs = [RunScore("centralized", "lora", 0, 0.5, 50, 1.0, None, 64, lr, 0.4) for lr in (1e-3, 3e-3)]
    save_runs(Comparison("cb", Budget(2, 1, 4), runs), "cb", path, options=r8)
    save_runs(Comparison("cb", Budget(4, 1, 4), runs[:1]), "cb", path, options={"lora": {"r": 64, "alpha": 128}})
    save_runs(Comparison("cb", Budget(2, 1, 4), runs[1:]), "cb", path, options=r8)   # a variant seen before
    save_runs(Comparison("triage", Budget(2, 1, 4), runs), "triage", path)
    found = comparison_variants(path, "cb")
    assert found == [(Budget(2, 1, 4), "lora", r8["lora"]), (Budget(4, 1, 4), "lora", {"r": 64, "alpha": 128})]
    budget, method, options = found[0]
    assert len(load_comparison(path, "cb", budget, options={method: options}).runs) == 3
    assert comparison_variants(path, "triage") == [(Budget(2, 1, 4), "lora", {})]
    with pytest.raises(FileNotFoundError, match="federated_comparison.py"):
        comparison_variants(tmp_path / "missing.jsonl", "cb")


def test_the_comparison_script_summarizes_the_variant_its_flags_name(tmp_path, capsys):
    where = Path(__file__).resolve().parents[1] / "scripts" / "federated_comparison.py"
    spec = importlib.util.spec_from_file_location("federated_comparison", where)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    path = tmp_path / "runs.jsonl"
    budget = Budget(200, 1, 4)
    for r, acc in ((None, 0.8), (16, 0.9)):   # the default rank, and --lora-r 16 (alpha 32)
        rank = {} if r is None else {"r": r, "alpha": 2 * r}
        save_runs(Comparison("cb", budget, [RunScore("centralized", "lora", 0, acc, 50, 1.0, None, 64)]), "cb", path,
                  options={"lora": {"modules_to_save": ("embed_tokens",), **rank}})
    assert script.main(["--task", "cb", "--methods", "lora", "--out", str(path), "--summarize"]) == 0
    assert "80.0 %" in capsys.readouterr().out
    assert script.main(["--task", "cb", "--methods", "lora", "--lora-r", "16", "--out", str(path), "--summarize"]) == 0
    assert "90.0 %" in capsys.readouterr().out
