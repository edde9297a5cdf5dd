"""A linear floor: logistic regression on the same features, splits and folds as `emo train`.

A registry model that does not beat a standardised logistic regression on its own inputs has learnt
nothing the features did not already give away. Sequences are mean-pooled over their frames; the inverse
regularisation strength C is chosen on the validation split only, as for the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from emocli.metrics import single_label_metrics, summarize
from emocli.training.data import dataset_folds, load_data, make_splits, select_inputs, store_label_map

if TYPE_CHECKING:
    from emocli.features.store import FeatureStore

C_GRID = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class LinearReader:
    """What `select_inputs` needs to know of a consumer of features (a registry entry has the same fields)."""

    name: str = "logreg"
    modalities: tuple[str, ...] = ("text", "audio", "visual")
    input_kinds: tuple[str, ...] = ("vector", "sequence")


def _design_matrix(features: dict[str, list[np.ndarray]]) -> np.ndarray:
    columns = []
    for values in features.values():
        columns.append(np.stack([v.mean(axis=0) if v.ndim == 2 else v for v in values]))
    return np.concatenate(columns, axis=1)


def logistic_regression_floor(
    store: FeatureStore,
    *,
    modalities: list[str] | None = None,
    choices: dict[str, str] | None = None,
    folds: list[int] | None = None,
    seed: int = 1,
    valid_fraction: float = 0.1,
) -> dict[str, Any]:
    """Per-unit (fold, or the dataset split) test metrics and their mean ± std.

    `folds=None` uses the dataset's train/valid/test split; otherwise each fold is held out in turn.
    Only single-label data is supported (the floor of the papers' RAVDESS/MELD protocols).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    label_map = store_label_map(store)
    if label_map.task != "single_label":
        raise NotImplementedError("the logistic-regression floor covers single-label data")
    inputs = select_inputs(store, LinearReader(), modalities=modalities, choices=choices)
    data = load_data(store, inputs, label_map)
    x, y = _design_matrix(data.features), data.targets
    names = list(label_map.names)

    units = []
    for fold in folds if folds is not None else [None]:
        rows = make_splits(data.samples, fold=fold, seed=seed, valid_fraction=valid_fraction)

        def fit(c: float):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
            return model.fit(x[rows["train"]], y[rows["train"]])

        def score(model, part: str) -> dict[str, Any]:
            probs = np.zeros((len(rows[part]), len(names)))
            probs[:, model.classes_] = model.predict_proba(x[rows[part]])
            return single_label_metrics(y[rows[part]], probs, names)

        valid_accuracy = {c: score(fit(c), "valid")["accuracy"] for c in C_GRID}
        best_c = max(C_GRID, key=valid_accuracy.__getitem__)
        test = score(fit(best_c), "test")
        # the validation accuracy of the chosen C: what comparing feature sets may select on
        units.append({"fold": fold, "C": best_c, "valid_accuracy": valid_accuracy[best_c], "test": test})
    scalar = [{k: v for k, v in u["test"].items() if isinstance(v, float)} for u in units]
    return {
        "inputs": {m: spec.feature_set for m, spec in inputs.items()},
        "dim": int(x.shape[1]),
        "units": units,
        "summary": summarize(scalar),
    }


def all_folds(store: FeatureStore) -> list[int]:
    return dataset_folds(store.samples())
