"""Calibration and fusion of a bundle's heads (emocli/prediction/calibration.py and the bundle's combination), on
probabilities generated in the test so that the right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from emocli.prediction.bundle import UNCERTAIN, BundlePredictor, BundleSpec
from emocli.prediction.calibration import HeldOut, calibrate, coverage, fit_temperature, nll, pooled, tempered


def overconfident(n: int, classes: int, accuracy: float, temperature: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Predictions right `accuracy` of the time, made sharper by `temperature` (< 1: overconfident)."""
    labels = rng.integers(0, classes, n)
    guess = np.where(rng.random(n) < accuracy, labels, rng.integers(0, classes, n))
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), guess] += 2.0
    probs = np.exp(logits / temperature)
    return probs / probs.sum(axis=1, keepdims=True), labels


def test_a_fitted_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    probs, labels = overconfident(4000, 5, 0.6, 0.3, rng)
    t = fit_temperature(probs, labels)
    assert t > 2 and nll(tempered(probs, t), labels) < nll(probs, labels) - 0.3
    np.testing.assert_array_equal(tempered(probs, t).argmax(1), probs.argmax(1))  # the ranking stays
    confident = tempered(probs, t).max(1) > 0.5
    assert abs(tempered(probs, t)[confident].max(1).mean() - (probs.argmax(1) == labels)[confident].mean()) < 0.05


def test_fusion_weights_for_each_combination_of_heads():
    """Calibrated heads that err independently weigh about alike; a head that knows nothing weighs little, and
    fusing the informative ones beats the best alone."""
    rng = np.random.default_rng(1)
    good, weak, noise = (HeldOut(*overconfident(3000, 4, acc, 1.0, rng)) for acc in (0.8, 0.6, 0.0))
    result = calibrate({"good": good, "weak": weak, "noise": noise}, n_classes=4, per_class=500)
    weights, report = result["weights"], result["report"]
    assert set(weights) == {"good+weak", "good+noise", "noise+weak", "good+noise+weak"}
    assert weights["good+noise+weak"]["noise"] < 0.3 < weights["good+noise+weak"]["weak"]
    assert report["good+weak"]["uar"] > report["good"]["uar"] + 0.02
    assert set(result["temperatures"]) == {"good", "weak", "noise"}


def test_the_pool_of_one_head_is_that_head():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(pooled([probs], [1.0]), probs, atol=1e-6)
    assert coverage(probs, np.array([0, 1]), 0.75) == {"kept": 0.5, "accuracy_kept": 0.0, "accuracy_uncertain": 1.0}


def bundle(combine: str, uncertain_below: float | None = None) -> BundlePredictor:
    """A BundlePredictor with a spec and no heads loaded: what its combination step reads."""
    spec = BundleSpec(name="t", labels=["a", "b", "c"], combine=combine, uncertain_below=uncertain_below,
                      heads={"x": {"unit": "x", "mapping": {}}, "y": {"unit": "y", "mapping": {}}},
                      weights={"x+y": {"x": 2.0, "y": 1.0}})
    predictor = BundlePredictor.__new__(BundlePredictor)
    predictor.spec, predictor.label_names = spec, ("a", "b", "c")
    return predictor


@pytest.mark.parametrize("combine", ["mean", "product"])
def test_the_combination_weighs_heads_and_leaves_out_absent_ones(combine):
    x = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    y = np.array([[0.1, 0.8, 0.1]])
    combined, counts = bundle(combine)._combine([("x", np.array([0, 1]), x), ("y", np.array([0]), y)], 3)
    np.testing.assert_array_equal(counts, [2, 1, 0])
    np.testing.assert_allclose(combined[1], x[1], atol=1e-6)  # one head: its own (calibrated) probabilities
    np.testing.assert_allclose(combined[2], [1 / 3] * 3)  # none: nothing is claimed
    expected = (2 * x[0] + y[0]) / 3 if combine == "mean" else pooled([x[:1], y], [2.0, 1.0])[0]
    np.testing.assert_allclose(combined[0], expected, atol=1e-6)


def test_uncertain_below_is_a_label(monkeypatch):
    predictor = bundle("mean", uncertain_below=0.5)
    assert predictor.spec.uncertain_below == 0.5 and UNCERTAIN == "uncertain"
    with pytest.raises(ValueError):
        BundleSpec(name="t", labels=["a"], heads={}, uncertain_below=1.5)


def test_a_head_that_replaces_another_takes_its_rows():
    spec = BundleSpec(name="t", labels=["a", "b"], heads={
        "audio": {"unit": "a", "mapping": {}}, "adapted": {"unit": "b", "mapping": {}, "replaces": "audio"},
        "text": {"unit": "c", "mapping": {}}})
    predictor = BundlePredictor.__new__(BundlePredictor)
    predictor.spec = spec
    probs = np.full((3, 2), 0.5)
    parts = predictor._replaced([("audio", np.arange(3), probs), ("adapted", np.array([1]), probs[:1]),
                                 ("text", np.arange(3), probs)])
    assert [list(rows) for _, rows, _ in parts] == [[0, 2], [1], [0, 1, 2]]
    with pytest.raises(ValueError, match="not another head"):
        BundleSpec(name="t", labels=["a"], heads={"x": {"unit": "x", "mapping": {}, "replaces": "y"}})
