"""Tests for flglm_kit.metrics (task metrics) on hand-checked examples (the arithmetic is in the comments).

Prepare / Execute / Assert.
"""

from __future__ import annotations

import math

import pytest
import torch

from flglm_kit.metrics import accuracy, f1_binary, f1_macro, mean_label_nll, perplexity, perplexity_of, rouge

# --- classification ----------------------------------------------------------------------------

# labels a a b b c, preds a b b b a:
#   a: tp 1 (0), fp 1 (4), fn 1 (1) -> P = R = 1/2, F1 = 1/2
#   b: tp 2 (2, 3), fp 1 (1), fn 0  -> P = 2/3, R = 1, F1 = 2 * (2/3) / (5/3) = 4/5
#   c: tp 0, fn 1                   -> F1 = 0
LABELS = ["a", "a", "b", "b", "c"]
PREDS = ["a", "b", "b", "b", "a"]


def test_accuracy_and_f1_hand_checked():
    assert accuracy(PREDS, LABELS) == pytest.approx(3 / 5)
    assert f1_binary(PREDS, LABELS, positive="a") == pytest.approx(0.5)
    assert f1_binary(PREDS, LABELS, positive="b") == pytest.approx(0.8)
    assert f1_binary(PREDS, LABELS, positive="c") == 0.0
    assert f1_macro(PREDS, LABELS) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # Restricting the classes: mean of a and b only.
    assert f1_macro(PREDS, LABELS, classes=["a", "b"]) == pytest.approx(0.65)


def test_f1_binary_on_booleans_and_tensors():
    # BoolQ-style: positive=True (the default 1 equals True). tp 2, fp 1, fn 1 -> P = R = 2/3.
    preds, labels = [True, True, True, False, False], [True, True, False, True, False]
    assert f1_binary(preds, labels) == pytest.approx(2 / 3)
    assert accuracy(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
    # Never predicted and never present: precision and recall count as 0 (scikit-learn's way).
    assert f1_binary([0, 0], [0, 0], positive=1) == 0.0


def test_classification_errors():
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        accuracy([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        f1_macro([], [])


# --- ROUGE -------------------------------------------------------------------------------------

def test_rouge_hand_checked():
    # pred "the cat sat on the mat" (6 tokens), ref "the cat sat" (3 tokens):
    #   rouge1: overlap the, cat, sat = 3 -> P 3/6, R 3/3, F1 = 2 * .5 / 1.5 = 2/3
    #   rouge2: pred bigrams 5, ref 2, overlap 2 -> P 2/5, R 1, F1 = .8 / 1.4 = 4/7
    #   rougeL: LCS 3 -> 2/3, as rouge1.
    # The second pair is identical (1.0 each), so each mean is (x + 1) / 2.
    scores = rouge(["the cat sat on the mat", "A dog barked."], ["the cat sat", "a dog barked"])
    assert scores["rouge1"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["rouge2"] == pytest.approx((4 / 7 + 1) / 2)
    assert scores["rougeL"] == pytest.approx((2 / 3 + 1) / 2)
    assert set(scores) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}


def test_rouge_stems_and_splits_rougelsum_on_newlines():
    # Porter stemmer: "running" and "runs" both become "run".
    assert rouge(["dogs running"], ["dog runs"])["rouge1"] == pytest.approx(1.0)
    # Sentences swapped. rougeL: tokens a b c d vs c d a b, LCS 2 -> F1 1/2.
    # rougeLsum: per reference sentence, union LCS with the prediction's sentences finds
    # both tokens of "c d" and of "a b": 4/4 -> F1 1.
    scores = rouge(["a b.\nc d."], ["c d.\na b."])
    assert scores["rougeL"] == pytest.approx(0.5)
    assert scores["rougeLsum"] == pytest.approx(1.0)


# --- perplexity --------------------------------------------------------------------------------

class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token distribution is the same everywhere: p = softmax(row)."""

    def __init__(self, row: list[float]) -> None:
        super().__init__()
        self.row = torch.tensor(row)
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        assert not self.training  # scored in eval mode
        return self.row.expand(*input_ids.shape, -1)  # (B, T, V)


def test_perplexity_is_token_weighted_over_label_tokens():
    # V = 2 with logits [0, ln 3]: p(0) = 1/4, p(1) = 3/4.
    model = FixedLogits([0.0, math.log(3.0)])
    # Batch A: one label token (a 1) at position 2; positions 0-1 ignored. NLL = -ln 3/4.
    a = {"input_ids": torch.tensor([[1, 0, 1]]), "attention_mask": torch.ones(1, 3),
         "labels": torch.tensor([[-100, -100, 1]])}
    # Batch B: three label tokens, all 0. NLL = -ln 1/4 each. Padding (-100) is skipped.
    b = {"input_ids": torch.tensor([[1, 0, 0, 0, 0]]), "attention_mask": torch.ones(1, 5),
         "labels": torch.tensor([[-100, 0, 0, 0, -100]])}
    # Token-weighted: (ln 4/3 + 3 ln 4) / 4, not the mean of the two batch means.
    expected = (math.log(4 / 3) + 3 * math.log(4)) / 4
    model.train()
    assert mean_label_nll(model, [a, b]) == pytest.approx(expected)
    assert model.training  # mode restored
    assert perplexity_of(model, [a, b]) == pytest.approx(math.exp(expected))
    with pytest.raises(ValueError, match="no label tokens"):
        mean_label_nll(model, [{**a, "labels": torch.full((1, 3), -100)}])


def test_perplexity_of_a_mean_nll():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert perplexity(1e6) == math.inf
    with pytest.raises(ValueError, match="NaN"):
        perplexity(float("nan"))
