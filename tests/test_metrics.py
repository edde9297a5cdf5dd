"""emocli.runs.metrics against hand-computed values and the papers' metric rules (emocli/runs/metrics.py)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, jaccard_score

from emocli.runs.metrics import multi_label_metrics, single_label_metrics, summarize

# ------------------------------------------------------------------------------------------ single-label

# y_true = [0, 0, 0, 1, 1, 2], argmax = [0, 0, 1, 1, 2, 2]; confusion (rows true):
#   [[2, 1, 0],
#    [0, 1, 1],
#    [0, 0, 1]]
# precision = (1, 1/2, 1/2), recall = (2/3, 1/2, 1), F1 = (0.8, 0.5, 2/3), support = (3, 2, 1).
Y3 = np.array([0, 0, 0, 1, 1, 2])
P3 = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.6, 0.3, 0.1],
        [0.3, 0.6, 0.1],  # true class second: a top-2 hit
        [0.2, 0.7, 0.1],
        [0.3, 0.1, 0.6],  # true class last: a top-2 miss
        [0.1, 0.2, 0.7],
    ]
)
NAMES3 = ["neutral", "happy", "sad"]


def test_single_label_by_hand():
    m = single_label_metrics(Y3, P3, NAMES3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["unweighted_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"]["neutral"] == pytest.approx({"f1": 0.8, "precision": 1.0, "recall": 2 / 3, "support": 3})
    assert m["per_class"]["sad"]["precision"] == pytest.approx(0.5)
    # k in (1, 2, 4) capped at C = 3.
    assert m["top1_accuracy"] == pytest.approx(4 / 6)
    assert m["top2_accuracy"] == pytest.approx(5 / 6)
    assert m["top3_accuracy"] == 1.0
    assert "top4_accuracy" not in m
    assert m["n_samples"] == 6 and m["labels"] == NAMES3
    json.dumps(m)  # plain Python all the way down


def test_unweighted_accuracy_is_balanced_accuracy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    probs = rng.random((200, 5))
    m = single_label_metrics(y, probs, list("abcde"))
    assert m["unweighted_accuracy"] == pytest.approx(balanced_accuracy_score(y, probs.argmax(1)))


def test_top_k_ties_go_to_the_lower_index_like_argmax():
    y = np.array([0, 1, 2])
    probs = np.array(
        [
            [0.4, 0.4, 0.2, 0.0],  # tie between 0 and 1: argmax says 0, a hit
            [0.4, 0.4, 0.2, 0.0],  # the same tie: 1 loses top-1, is second in top-2
            [0.3, 0.3, 0.3, 0.1],  # three-way tie: class 2 ranks third
        ]
    )
    m = single_label_metrics(y, probs, ["a", "b", "c", "d"])
    assert m["top1_accuracy"] == m["accuracy"] == pytest.approx(1 / 3)
    assert m["top2_accuracy"] == pytest.approx(2 / 3)
    assert m["top4_accuracy"] == 1.0


def test_class_never_predicted_nor_present():
    # "c" is absent from y_true and never predicted; "b" is present and never predicted.
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.05, 0.05]] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0: no UndefinedMetricWarning either
        m = single_label_metrics(y, probs, ["a", "b", "c"])
    # class a: P = 2/4, R = 1, F1 = 2/3; class b: F1 = 0; c is out of the averages (sklearn default).
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 0) / 4)
    assert m["unweighted_accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["c"] == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 0}
    assert m["confusion_matrix"] == [[2, 0, 0], [2, 0, 0], [0, 0, 0]]


def test_single_label_rejects_bad_shapes():
    with pytest.raises(ValueError, match="label names"):
        single_label_metrics(Y3, P3, ["a", "b"])
    with pytest.raises(ValueError, match="class indices"):
        single_label_metrics(np.array([0, 3]), np.zeros((2, 3)), NAMES3)


# ------------------------------------------------------------------------------------------- multi-label


def test_jaccard_empty_rule_example():
    # y = [[1,0],[0,0]], ŷ = [[1,1],[0,0]]: 0.5 for the first sample; the second is empty-vs-empty and
    # scores 0 (the papers' get_accuracy) or 1.
    y = np.array([[1, 0], [0, 0]])
    probs = np.array([[0.9, 0.6], [0.1, 0.2]])
    zero = multi_label_metrics(y, probs, ["joy", "sad"], empty_rule="zero")
    one = multi_label_metrics(y, probs, ["joy", "sad"], empty_rule="one")
    assert zero["jaccard_accuracy"] == pytest.approx(0.25)
    assert one["jaccard_accuracy"] == pytest.approx(0.75)
    # The rest by hand: one wrong cell of four; micro tp 1, fp 1, fn 0.
    assert zero["hamming_loss"] == pytest.approx(0.25)
    assert zero["micro_precision"] == pytest.approx(0.5)
    assert zero["micro_recall"] == pytest.approx(1.0)
    assert zero["micro_f1"] == pytest.approx(2 / 3)
    assert zero["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)
    assert zero["subset_accuracy"] == pytest.approx(0.5)
    assert zero["per_label"]["sad"] == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 0}
    assert zero["per_label_confusion"] == {"joy": [[1, 0], [0, 1]], "sad": [[1, 1], [0, 0]]}
    assert zero["threshold"] == 0.5 and zero["empty_rule"] == "zero"
    json.dumps(zero)


def test_threshold_is_strict_and_recorded():
    # SMILE predicts p > 0.35: a probability of exactly 0.35 is not a prediction.
    y = np.array([[1, 1]])
    probs = np.array([[0.35, 0.36]])
    m = multi_label_metrics(y, probs, ["a", "b"], threshold=0.35)
    assert m["threshold"] == 0.35
    assert m["jaccard_accuracy"] == pytest.approx(0.5)
    assert m["micro_recall"] == pytest.approx(0.5)


def test_jaccard_matches_sklearn_for_both_rules():
    rng = np.random.default_rng(1)
    y = (rng.random((300, 6)) < 0.2).astype(int)
    probs = rng.random((300, 6)) ** 3  # many all-below-threshold rows, so many empty-vs-empty samples
    y_pred = probs > 0.5
    assert ((y.sum(1) == 0) & (y_pred.sum(1) == 0)).any()
    for rule, value in (("zero", 0.0), ("one", 1.0)):
        m = multi_label_metrics(y, probs, list("abcdef"), empty_rule=rule)
        expected = jaccard_score(y, y_pred, average="samples", zero_division=value)
        assert m["jaccard_accuracy"] == pytest.approx(expected)


def test_label_never_true_nor_predicted_counts_zero_in_macro_f1():
    y = np.array([[1, 0], [1, 0]])
    probs = np.array([[0.9, 0.1], [0.8, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = multi_label_metrics(y, probs, ["a", "b"])
    assert m["micro_f1"] == 1.0
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["jaccard_accuracy"] == 1.0


def test_multi_label_rejects_logits_and_unknown_rules():
    y = np.array([[1, 0]])
    with pytest.raises(ValueError, match="probabilities"):
        multi_label_metrics(y, np.array([[2.0, -1.0]]), ["a", "b"])
    with pytest.raises(ValueError, match="empty_rule"):
        multi_label_metrics(y, np.array([[0.9, 0.1]]), ["a", "b"], empty_rule="half")


# --------------------------------------------------------------------------------------------- summarize


def test_summarize_mean_and_sample_std():
    runs = [
        {"accuracy": 0.5, "labels": ["a"], "flag": True, "per_class": {"a": {"f1": 0.2}}, "confusion_matrix": [[1]]},
        {"accuracy": 0.7, "labels": ["a"], "flag": True, "per_class": {"a": {"f1": 0.4}}, "confusion_matrix": [[1]]},
    ]
    s = summarize(runs)
    assert s["n"] == 2
    assert s["mean"] == pytest.approx({"accuracy": 0.6, "per_class.a.f1": 0.3})
    # ddof = 1: sqrt((0.1² + 0.1²) / 1)
    assert s["std"]["accuracy"] == pytest.approx(math.sqrt(0.02))
    assert s["std"]["per_class.a.f1"] == pytest.approx(math.sqrt(0.02))
    json.dumps(s)


def test_summarize_single_run_and_errors():
    s = summarize([{"accuracy": 0.5}])
    assert s == {"n": 1, "mean": {"accuracy": 0.5}, "std": {"accuracy": 0.0}}
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError, match="same metrics"):
        summarize([{"accuracy": 0.5}, {"jaccard_accuracy": 0.5}])


def test_summarize_real_outputs():
    runs = [single_label_metrics(Y3, P3, NAMES3), single_label_metrics(Y3, P3[:, [1, 0, 2]], NAMES3)]
    s = summarize(runs)
    assert s["mean"]["accuracy"] == pytest.approx((4 / 6 + runs[1]["accuracy"]) / 2)
    assert "per_class.happy.support" in s["mean"] and "n_samples" in s["mean"]
