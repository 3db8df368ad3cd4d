"""Fine-tuning sanity (model card): the shipped GLM learns RTE and summarization well above the
baselines, and the quick runs land in a band around the numbers the card reports."""

import json

import pytest

from flglm_kit.data import Example
from flglm_kit.finetune import SANITY_RUNS, finetune_sanity, lead_baseline, majority_baseline
from flglm_kit.pretrained import ASSETS_DIR

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
