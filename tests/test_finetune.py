"""Fine-tuning sanity (model card): the shipped GLM learns RTE and summarization well above the
baselines, and the quick runs land in a band around the numbers the card reports."""

import json

import pytest
import torch

from flglm_kit.data import Example, make_loader, toy_tokenizer
from flglm_kit.finetune import (SANITY_RUNS, answer_logprobs, finetune_sanity, lead_baseline, majority_baseline,
                                train_centralized)
from flglm_kit.models import tiny_model
from flglm_kit.pretrained import ASSETS_DIR, load_pretrained

BAND = 0.1  # accuracy or ROUGE-L F1, absolute: other CPUs and library versions move the last digits


def _card_runs():
    card = json.loads((ASSETS_DIR / "card.json").read_text())
    if "finetune" not in card:
        pytest.fail("card.json has no fine-tuning numbers: run python scripts/finetune_sanity.py")
    return card["finetune"]["runs"]


@pytest.mark.slow
@pytest.mark.parametrize("task,margin", [("rte", 0.25), ("summarization", 0.2)])
def test_quick_finetuning_lands_in_the_cards_band(task, margin):
    # Prepare
    expected = _card_runs()[f"{task}/quick"]
    # Execute
    result = finetune_sanity(task, **SANITY_RUNS["quick"][task])
    # Assert: well above the baseline, and where the card says.
    assert result.baseline == pytest.approx(expected["baseline"], abs=1e-6)
    assert result.score >= result.baseline + margin, result
    assert abs(result.score - expected["score"]) <= BAND, (result, expected)


def test_card_reports_full_runs_above_their_baselines():
    runs = _card_runs()
    assert runs["rte/full"]["score"] >= runs["rte/full"]["baseline"] + 0.25
    assert runs["summarization/full"]["score"] >= runs["summarization/full"]["baseline"] + 0.2


def test_baselines_on_hand_checked_examples():
    train = [Example("p", "entailment"), Example("p", "entailment"), Example("p", "not entailment")]
    assert majority_baseline(train, [Example("p", "not entailment"), Example("p", "entailment")]) == 0.5
    ex = Example("Article: Rain fell. Then it stopped.\nHighlights:", "Rain fell.")
    assert lead_baseline([ex])["rougeL"] == pytest.approx(1.0)


def test_finetune_sanity_leaves_the_global_random_state_alone():
    # Prepare: a global state that manual_seed(0) would not reproduce.
    tokenizer, model = load_pretrained(device="cpu")
    torch.manual_seed(1234)
    torch.rand(3)
    before = torch.random.get_rng_state()
    # Execute: one step, two examples scored.
    finetune_sanity("rte", steps=1, eval_size=2, batch_size=2, model=model, tokenizer=tokenizer)
    # Assert
    assert torch.equal(torch.random.get_rng_state(), before)


def _toy_batch():
    examples = [Example("a b c", "d"), Example("b c", "a d"), Example("c", "b")]
    tok = toy_tokenizer(["a b c d"])
    return tok, examples, next(iter(make_loader(examples, tok, batch_size=3, max_len=16)))


def test_training_loss_is_the_models_own_causal_lm_loss():
    # The kit's next_token_loss replaced the model's labels= loss: same number, same step.
    tok, _, batch = _toy_batch()
    model = tiny_model("glm", seed=0, vocab_size=len(tok))
    with torch.no_grad():
        expected = float(model(**batch).loss)  # Hugging Face's ForCausalLMLoss
    losses = train_centralized(model, [batch], progress=False)
    assert losses == [pytest.approx(expected, rel=1e-6)]


def test_answer_logprobs_sum_the_answer_tokens_log_probabilities():
    tok, examples, batch = _toy_batch()
    model = tiny_model("glm", seed=0, vocab_size=len(tok))
    scores = answer_logprobs(model, tok, examples, max_len=16)  # (N,)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=batch["input_ids"],
                                       attention_mask=batch["attention_mask"]).logits[:, :-1], -1)
    targets = batch["labels"][:, 1:]  # (B, T-1)
    picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0] * (targets != -100)
    assert torch.allclose(scores, picked.sum(1), atol=1e-5)
