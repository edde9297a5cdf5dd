"""The papers' metrics, one implementation: numpy in, plain JSON-serialisable dicts out.

Key names are stable: run directories, `results.csv` and model cards store them.

Single-label (MELD, IEMOCAP, RAVDESS; SpikEmo/MultiEMO and CFN-SR), `single_label_metrics`:
    accuracy, weighted_f1 (the metric of record for MELD/IEMOCAP), macro_f1, unweighted_accuracy
    (UA: mean per-class recall, the speech-emotion convention, EmoBox's "UA"), top{k}_accuracy for
    k in (1, 2, 4) capped at C (CFN-SR reports top-1/2/4), per_class, confusion_matrix.

Multi-label (CMU-MOSEI, NEMu; SMILE and MMER), `multi_label_metrics`:
    jaccard_accuracy (the "Acc" of HHMPN/TAILOR/MMER/SMILE: example-based Jaccard, not subset
    accuracy), hamming_loss, micro/macro F1, micro precision/recall, subset_accuracy, per_label,
    per_label_confusion. SMILE thresholds its sigmoid outputs at 0.35, MMER at 0.5; both use a strict
    `p > threshold`, as here. The Jaccard rule (a sample with no true and no predicted label scores 0) is
    `get_accuracy` in SMILE's utils.py (github.com/sleepy2333/SMILE, commit 336bca1) and in MMER's
    train_mmer.py (github.com/ShipingGe/MMER, commit db38802).

Deliberate differences from the papers' code, all of them presentation only:
- No rounding: SMILE and MMER round Acc to 4 decimals inside the metric; rounding belongs to the
  report.
- SMILE's `train.py` calls `get_metrics(preds, trues)` against the signature `get_metrics(y, y_pre)`,
  so its printed micro "P" is the micro recall and "R" the micro precision (Jaccard, Hamming loss and
  the F1s are symmetric and unaffected). Here precision is precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

EmptyRule = Literal["zero", "one"]

#: The k of the top-k accuracies (CFN-SR reports top-1, top-2 and top-4); capped at the class count.
TOP_K: tuple[int, ...] = (1, 2, 4)


def _per_class_scores(label_names, f1, precision, recall, support) -> dict[str, dict[str, float | int]]:
    return {
        name: {
            "f1": float(f1[c]),
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "support": int(support[c]),
        }
        for c, name in enumerate(label_names)
    }


def single_label_metrics(
    y_true: np.ndarray | Sequence[int],
    probs: np.ndarray,
    label_names: Sequence[str],
) -> dict[str, Any]:
    """Metrics of a single-label classifier.

    `y_true` holds class indices [N]; `probs` holds scores [N, C] (probabilities or logits: only their
    ranking is used). The prediction is the argmax; ties go to the lower class index, for the top-k
    accuracies too, so that `top1_accuracy == accuracy` always.

    weighted_f1 and macro_f1 are sklearn's `f1_score` as the papers call it (no `labels=`): the
    average runs over the classes present in `y_true` or in the predictions, so a class absent from a
    test fold and never predicted does not drag macro F1 down. A class that is present but never
    predicted scores F1 0 (zero_division=0), without a warning. unweighted_accuracy is the mean recall
    over the classes present in `y_true` (sklearn's `balanced_accuracy_score`).
    per_class covers all C classes, absent ones included (support 0, scores 0).
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = _check_single_label(y_true, probs, label_names)
    classes = np.arange(num_classes)
    # A stable sort of the negated scores ranks ties by class index, as argmax does.
    ranking = np.argsort(-probs, axis=1, kind="stable")
    y_pred = ranking[:, 0]

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    present = support > 0
    result: dict[str, Any] = {
        "task": "single_label",
        "n_samples": int(len(y_true)),
        "labels": list(label_names),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "unweighted_accuracy": float(recall[present].mean()),
    }
    for k in sorted({min(k, num_classes) for k in TOP_K}):
        hits = (ranking[:, :k] == y_true[:, None]).any(axis=1)
        result[f"top{k}_accuracy"] = float(hits.mean())
    result["per_class"] = _per_class_scores(label_names, f1, precision, recall, support)
    # Rows are the true classes, columns the predicted ones.
    result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=classes).tolist()
    return result


def multi_label_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    label_names: Sequence[str],
    threshold: float = 0.5,
    empty_rule: EmptyRule = "zero",
) -> dict[str, Any]:
    """Metrics of a multi-label classifier: `y_true` in {0, 1} [N, C], `probs` sigmoid outputs [N, C].

    A label is predicted when `prob > threshold` (strictly, as SMILE's `getBinaryTensor` and MMER's
    `evaluate` do); the threshold is recorded in the output.

    jaccard_accuracy is (1/N) Σᵢ |yᵢ ∧ ŷᵢ| / |yᵢ ∨ ŷᵢ|. A sample with no true and no predicted label has
    0/0; `empty_rule` says what it scores:
    - "zero" (default): it scores 0. This is what every paper's code does (HHMPN, TAILOR, CARAT, MMER
      and SMILE set the denominator to 1), so only this rule reproduces their "Acc" columns; it
      penalises correctly predicting "no emotion".
    - "one": it scores 1, the usual mathematical convention (a perfect prediction of the empty set).
    The F1s, precision and recall are sklearn's on the N×C binary matrices with zero_division=0, as
    the papers compute them (macro F1 is the unweighted mean over all C labels).
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    _check_multi_label(y_true, probs, label_names)
    if empty_rule not in ("zero", "one"):
        raise ValueError(f"empty_rule must be 'zero' or 'one', not {empty_rule!r}")
    y_true = y_true.astype(bool)
    y_pred = probs > threshold

    intersection = (y_true & y_pred).sum(axis=1)
    union = (y_true | y_pred).sum(axis=1)
    empty_score = 0.0 if empty_rule == "zero" else 1.0
    per_sample = np.where(union > 0, intersection / np.maximum(union, 1), empty_score)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0
    )
    confusions = multilabel_confusion_matrix(y_true, y_pred)  # [C, 2, 2]: [[tn, fp], [fn, tp]]
    return {
        "task": "multi_label",
        "n_samples": int(len(y_true)),
        "labels": list(label_names),
        "threshold": float(threshold),
        "empty_rule": empty_rule,
        "jaccard_accuracy": float(per_sample.mean()),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "micro_precision": float(precision_score(y_true, y_pred, average="micro", zero_division=0)),
        "micro_recall": float(recall_score(y_true, y_pred, average="micro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "per_label": _per_class_scores(label_names, f1, precision, recall, support),
        "per_label_confusion": {name: confusions[c].tolist() for c, name in enumerate(label_names)},
    }


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of every numeric metric over seeds or folds.

    Nested metrics are flattened with dots ("per_class.anger.f1"); strings and lists (label names,
    confusion matrices) are left out. The std is the sample std (ddof=1) when n > 1, and 0.0 for a
    single result. Returns {"n": n, "mean": {name: value}, "std": {name: value}}.
    All results must carry the same metrics: a mismatch means runs of different tasks were mixed.
    """
    if not results:
        raise ValueError("summarize needs at least one result")
    flat = [_numeric_leaves(result) for result in results]
    names = list(flat[0])
    for i, other in enumerate(flat[1:], start=1):
        if set(other) != set(names):
            differing = sorted(set(other) ^ set(names))
            raise ValueError(f"result {i} does not carry the same metrics as result 0: {differing}")
    n = len(flat)
    values = {name: np.array([f[name] for f in flat], dtype=np.float64) for name in names}
    return {
        "n": n,
        "mean": {name: float(v.mean()) for name, v in values.items()},
        "std": {name: float(v.std(ddof=1)) if n > 1 else 0.0 for name, v in values.items()},
    }


def _numeric_leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    leaves: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            leaves.update(_numeric_leaves(value, prefix=f"{name}."))
        # bool is an int subclass, but a flag is not a metric to average.
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            leaves[name] = float(value)
    return leaves


def _check_single_label(y_true: np.ndarray, probs: np.ndarray, label_names: Sequence[str]) -> int:
    if probs.ndim != 2 or y_true.shape != (probs.shape[0],):
        raise ValueError(f"expected y_true [N] and probs [N, C], got {y_true.shape} and {probs.shape}")
    if len(label_names) != probs.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {probs.shape[1]} score columns")
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    if not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0 or y_true.max() >= probs.shape[1]:
        raise ValueError(f"y_true must hold class indices in [0, {probs.shape[1]})")
    return probs.shape[1]


def _check_multi_label(y_true: np.ndarray, probs: np.ndarray, label_names: Sequence[str]) -> None:
    if probs.ndim != 2 or y_true.shape != probs.shape:
        raise ValueError(f"expected y_true and probs of one shape [N, C], got {y_true.shape} and {probs.shape}")
    if len(label_names) != probs.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {probs.shape[1]} label columns")
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must be a 0/1 matrix")
    # Logits passed by mistake would be thresholded silently at the wrong place.
    if probs.min() < 0 or probs.max() > 1:
        raise ValueError("probs must be probabilities in [0, 1] (apply the sigmoid to the logits first)")
