"""Calibrating a bundle's heads and fitting how their probabilities are fused, on held-out predictions.

Each head's held-out predictions (speakers, corpora or dialogues it never trained on: `emo cross-corpus`'s
`<learner>-predictions.parquet`, or `emo evaluate RUN --split valid --predictions FILE`) give:

- a temperature per head (Guo et al. 2017, "On Calibration of Modern Neural Networks"): its probabilities
  p become softmax(log p / T), T fitted by maximum likelihood, so that a head that is 60 % sure is right about
  60 % of the time on data it did not train on;
- weights for the logarithmic opinion pool of the heads that read a segment, p(y) ∝ Π_h p_h(y)^w_h (a
  weighted product of experts), one set for each combination of heads a segment can have (a segment
  without a face is read by the voice and the words only), fitted by maximum likelihood on held-out
  *pairings*: no labelled data holds a face, a voice and words of one person (none is available offline),
  so each head's held-out predictions are paired at random with the others' of the same emotion. Errors
  are independent in such pairs by construction; in a real video they correlate, so the fused figures
  fitted and reported here are an upper bound of what fusion adds. The pairing is made twice, from the
  two halves of the held-out predictions: weights are fitted on one and reported on the other.

`uncertain_below` is a policy, not a fit: on calibrated probabilities a top class below it is right less
often than that (the card reports how often, held out), and the bundle labels such a segment "uncertain".
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

EPSILON = 1e-6  # probabilities are floored here before logs: a head that rules a class out does not veto it
TEMPERATURES = (0.05, 20.0)


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the same ranking, sharper (T < 1) or softer (T > 1)."""
    logits = np.log(np.clip(probs, EPSILON, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], EPSILON, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of the labels under softmax(log p / T)."""
    from scipy.optimize import minimize_scalar

    low, high = np.log(TEMPERATURES[0]), np.log(TEMPERATURES[1])
    found = minimize_scalar(lambda t: nll(tempered(probs, float(np.exp(t))), labels), bounds=(low, high),
                            method="bounded")
    return float(np.exp(found.x))


def pooled(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The logarithmic opinion pool p(y) ∝ Π_h p_h(y)^w_h of the heads' probabilities (each [N, C])."""
    logits = sum(w * np.log(np.clip(p, EPSILON, 1.0)) for p, w in zip(parts, weights))
    logits = logits - logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def fit_weights(parts: Sequence[np.ndarray], labels: np.ndarray) -> list[float]:
    """Non-negative pool weights maximising the likelihood of the labels."""
    from scipy.optimize import minimize

    found = minimize(lambda w: nll(pooled(parts, w), labels), x0=np.ones(len(parts)), method="L-BFGS-B",
                     bounds=[(0.0, 10.0)] * len(parts))
    return [float(w) for w in found.x]


def uar(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([(predicted[labels == k] == k).mean() for k in np.unique(labels)]))


@dataclass(frozen=True)
class HeldOut:
    """One head's held-out predictions in the bundle's shared classes: probabilities [N, C], labels [N]."""

    probs: np.ndarray
    labels: np.ndarray


def pairings(held_out: Mapping[str, HeldOut], n_classes: int, per_class: int, rng: np.random.Generator
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`per_class` random pairings per emotion that every head has held-out predictions of: each head's
    probabilities of one of its samples of that emotion."""
    classes = [k for k in range(n_classes) if all((h.labels == k).any() for h in held_out.values())]
    parts = {name: [] for name in held_out}
    labels = []
    for k in classes:
        labels += [k] * per_class
        for name, head in held_out.items():
            parts[name].append(head.probs[rng.choice(np.flatnonzero(head.labels == k), per_class)])
    return {name: np.concatenate(p) for name, p in parts.items()}, np.array(labels)


def calibrate(held_out: Mapping[str, HeldOut], n_classes: int, seed: int = 1, per_class: int = 400) -> dict:
    """Temperatures (each head's own held-out predictions), pool weights (fitted on pairings of one half of
    them) and every figure of the other half: each head alone and fused, UAR and accuracy."""
    rng = np.random.default_rng(seed)
    temperatures = {name: fit_temperature(h.probs, h.labels) for name, h in held_out.items()}
    calibrated = {name: HeldOut(tempered(h.probs, temperatures[name]), h.labels) for name, h in held_out.items()}
    halves = {}
    for name, head in calibrated.items():
        order = rng.permutation(len(head.labels))
        halves[name] = [HeldOut(head.probs[part], head.labels[part]) for part in np.array_split(order, 2)]
    fit_parts, fit_labels = pairings({n: h[0] for n, h in halves.items()}, n_classes, per_class, rng)
    test_parts, test_labels = pairings({n: h[1] for n, h in halves.items()}, n_classes, per_class, rng)
    names = list(held_out)
    report = {name: {"uar": uar(test_labels, test_parts[name].argmax(1)),
                     "accuracy": float((test_parts[name].argmax(1) == test_labels).mean()),
                     "nll_before": nll(held_out[name].probs, held_out[name].labels),
                     "nll_after": nll(calibrated[name].probs, calibrated[name].labels),
                     "n_held_out": int(len(held_out[name].labels))} for name in names}
    weights = {}
    for size in range(2, len(names) + 1):
        for heads in itertools.combinations(names, size):
            key = combination_key(heads)
            weights[key] = dict(zip(heads, fit_weights([fit_parts[n] for n in heads], fit_labels)))
            fused = pooled([test_parts[n] for n in heads], [weights[key][n] for n in heads])
            report[key] = {"uar": uar(test_labels, fused.argmax(1)),
                           "accuracy": float((fused.argmax(1) == test_labels).mean())}
    return {"temperatures": temperatures, "weights": weights, "report": report,
            "pairings": {"per_class": per_class, "classes": int(len(np.unique(test_labels))), "seed": seed}}


def combination_key(heads: Sequence[str]) -> str:
    """The name of a combination of heads: their names, sorted, joined by "+"."""
    return "+".join(sorted(heads))


def coverage(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """How many predictions a threshold on the top probability keeps, and how often those and the rest are right."""
    top, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    kept = top >= threshold
    return {"kept": float(kept.mean()),
            "accuracy_kept": float(right[kept].mean()) if kept.any() else float("nan"),
            "accuracy_uncertain": float(right[~kept].mean()) if (~kept).any() else float("nan")}
