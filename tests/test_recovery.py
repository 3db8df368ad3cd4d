"""Tests for flglm_kit.attacks.recovery (the attack scores) on hand-checked examples (the
arithmetic is in the comments).

Prepare / Execute / Assert.
"""

from __future__ import annotations

import pytest
import torch

import flglm_kit.metrics
from flglm_kit.attacks import BagOfWordsScores, bag_of_words_scores, entity_recovery_rate, token_recovery_rate
from flglm_kit.data import IDENTIFIER_ENTITY_TYPES, load_clinic_notes


def test_token_recovery_rate_counts_real_positions_only():
    pred = [[1, 2, 3, 0], [4, 5, 0, 0]]
    true = [[1, 9, 3, 7], [4, 5, 8, 8]]
    mask = [[1, 1, 1, 0], [1, 1, 0, 0]]
    # Real positions: 5; matches among them: (0,0) (0,2) (1,0) (1,1) = 4 -> 4/5.
    assert token_recovery_rate(pred, true, mask) == pytest.approx(0.8)
    # No mask: all 8 positions, still 4 matches -> 1/2.
    assert token_recovery_rate(torch.tensor(pred), torch.tensor(true)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        token_recovery_rate([[1, 2]], [[1, 2, 3]])
    with pytest.raises(ValueError, match="no real token"):
        token_recovery_rate([[1]], [[1]], [[0]])


def test_entity_recovery_rate_matching_rules():
    entities = [{"type": "name", "text": "Anneliese Oduya"}, {"type": "age", "text": "36"},
                {"type": "phone", "text": "(514) 555-0168"},
                {"type": "condition", "text": "asthma"}]
    # Case and line breaks do not matter (name found); "36" only inside "1936" is no hit;
    # the phone is found whole; "asthma" is missing: 2 of 4.
    text = "patient ANNELIESE\n oduya born 1936, tel (514) 555-0168."
    assert entity_recovery_rate(text, entities) == pytest.approx(0.5)
    # Identifiers only (name, age, phone): 2 of 3.
    identifiers = entity_recovery_rate(text, entities, types=IDENTIFIER_ENTITY_TYPES)
    assert identifiers == pytest.approx(2 / 3)
    # Half a phone number is a miss.
    assert entity_recovery_rate("tel 555-0168", ["(514) 555-0168"]) == 0.0


def test_entity_recovery_rate_per_record():
    # Record 0's entity is searched in record 0's text only: "Oakby" in text 1 does not count.
    texts = ["nothing here", "seen in oakby"]
    entities = [["Oakby"], ["Oakby", "Maplecross"]]
    # Hits: record 0 none of 1, record 1 one of 2 -> 1 of 3 overall.
    assert entity_recovery_rate(texts, entities) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 reconstructions for 1 entity lists"):
        entity_recovery_rate(texts, [["x"]])
    with pytest.raises(ValueError, match="no entities"):
        entity_recovery_rate("x", [{"type": "name", "text": "x"}], types=["date"])


def test_entity_recovery_of_a_perfect_reconstruction_is_one():
    notes = load_clinic_notes("test")[:20]
    texts = [ex.prompt for ex in notes]
    entities = [ex.meta["entities"] for ex in notes]
    assert entity_recovery_rate(texts, entities) == 1.0
    assert entity_recovery_rate([""] * 20, entities) == 0.0


def test_bag_of_words_scores_hand_checked():
    # predicted {1, 2, 3, 4}, true {2, 4, 6}: 2 right of 4 predicted, 2 found of 3 true.
    scores = bag_of_words_scores({1, 2, 3, 4}, {2, 4, 6})
    assert scores == BagOfWordsScores(precision=0.5, recall=pytest.approx(2 / 3))
    # Tensors and repeats: {2, 4} of true {2, 4, 6}: precision 1, recall 2/3.
    precision, recall = bag_of_words_scores(torch.tensor([2, 2, 4]), torch.tensor([6, 4, 2, 2]))
    assert (precision, recall) == (1.0, pytest.approx(2 / 3))
    assert bag_of_words_scores(set(), {1}) == (0.0, 0.0)
    with pytest.raises(ValueError, match="true_set is empty"):
        bag_of_words_scores({1}, set())


def test_each_score_has_one_home():
    # The recovery scores live next to the attacks; metrics keeps the task metrics only.
    for name in ("token_recovery_rate", "entity_recovery_rate", "bag_of_words_scores", "BagOfWordsScores"):
        assert not hasattr(flglm_kit.metrics, name)
