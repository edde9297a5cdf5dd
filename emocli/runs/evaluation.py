"""Scoring a trained unit on a split of its feature store: what `emo evaluate` prints, and what training
writes as a unit's test_metrics.json (the same computation, so evaluating a finished run reproduces it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from emocli.core.errors import EmoError
from emocli.data.batches import eval_loader
from emocli.data.tables import EmotionData, load_data
from emocli.models.base import count_parameters
from emocli.models.blocks.spiking import SpikingModel
from emocli.runs import layout
from emocli.runs.inference import TrainedUnit

# Scalar metrics shown in tables, per task (all scalars are stored).
HEADLINE = {
    "single_label": ("accuracy", "weighted_f1", "macro_f1", "unweighted_accuracy"),
    "multi_label": ("jaccard_accuracy", "hamming_loss", "micro_f1", "macro_f1", "micro_precision", "micro_recall"),
}
PAPER_WARNING = (
    "PAPER PROTOCOL: the checkpoint was selected on the {split} split by {metric}, as the paper's code does; "
    "these numbers are optimistic and not comparable to validation-selected results"
)


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of a metrics dict (no per-class tables, matrices or bookkeeping)."""
    skip = {"n_samples", "threshold"}
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip
    }


def metrics_of(data: EmotionData, rows: np.ndarray, probs: np.ndarray, threshold: float, empty_rule: str) -> dict[str, Any]:
    from emocli.runs.metrics import multi_label_metrics, single_label_metrics

    names = list(data.label_map.names)
    if data.label_map.task == "multi_label":
        return multi_label_metrics(data.targets[rows], probs, names, threshold=threshold, empty_rule=empty_rule)
    return single_label_metrics(data.targets[rows], probs, names)


def confusion(result: dict[str, Any]) -> np.ndarray:
    """Single-label: the confusion matrix. Multi-label: true label (rows) × predicted label (columns)
    counts over the samples, i.e. how often a sample carrying label i was predicted label j."""
    if "confusion_matrix" in result["metrics"]:
        return np.asarray(result["metrics"]["confusion_matrix"])
    return np.asarray(result["label_confusion"])


def evaluate_unit(
    unit: Path,
    split: str = "test",
    *,
    data: EmotionData | None = None,
    store: str | Path | None = None,
    threshold: float | None = None,
    empty_rule: str | None = None,
    device: str | None = None,
    spiking_report: bool = False,
) -> dict[str, Any]:
    """Rebuild a unit's model from its directory and score one split: what `emo evaluate` prints.

    The split's rows are scored in one process with the run's eval batch size and the split's stored
    sample order, so evaluating a finished run reproduces its test_metrics.json exactly. `data` holds the
    store's values: the unit's stored standardisation is applied here.
    """
    from emocli.features.store import FeatureStore

    trained = TrainedUnit.read(unit)
    loaded = trained.load(device)
    if data is None:
        store = store or trained.config.get("store")
        if store is None:
            raise EmoError("config.json names no feature store; give one (--features)", path=unit)
        data = load_data(FeatureStore(store), trained.inputs, trained.label_map)
    data = loaded.standardize(data)
    ids = layout.read_json(unit / layout.SPLITS, dict).get(split)
    if ids is None:
        raise EmoError(f"the run has no {split!r} split (splits.json)", path=unit)
    if not isinstance(ids, list) or not all(isinstance(sid, str) for sid in ids):
        raise EmoError(f"{split}: expected a list of sample ids", path=unit / layout.SPLITS)
    position = {sid: i for i, sid in enumerate(data.samples["sample_id"])}
    missing = [sid for sid in ids if sid not in position]
    if missing:
        raise EmoError(f"{len(missing)} {split} samples have no features in the store (e.g. {missing[0]!r})", path=unit)
    if not ids:
        raise EmoError(f"the {split} split of this run is empty", path=unit)
    rows = np.sort(np.array([position[sid] for sid in ids]))
    train = loaded.train
    threshold = loaded.threshold if threshold is None else threshold
    empty_rule = empty_rule or train.empty_rule
    model = loaded.model

    spiking: dict[str, Any] = {}
    if spiking_report and isinstance(model, SpikingModel):
        # The monitored pass is the scored pass: both are the same deterministic eval forward.
        with model.monitor_spikes() as monitor:
            pred = loaded.score(data, rows)
        spiking["firing_rates"] = monitor.firing_rates()
        spiking["energy"] = energy_per_sample(model, data, rows, trained.conversation, loaded.device)
    else:
        pred = loaded.score(data, rows)
    metrics = metrics_of(data, pred.rows, pred.probs, threshold, empty_rule)
    selection = train.effective_selection()
    result: dict[str, Any] = {
        "split": split,
        "n_samples": len(rows),
        "protocol": train.protocol,
        "selection": selection.model_dump(),
        "losses": pred.losses,
        "metrics": metrics,
        "parameters": count_parameters(model),
    }
    if data.label_map.task == "multi_label":
        y_pred = (pred.probs > threshold).astype(np.int64)
        result["label_confusion"] = (data.targets[pred.rows].T.astype(np.int64) @ y_pred).tolist()
    if train.protocol == "paper":
        result["warning"] = PAPER_WARNING.format(split=selection.split, metric=selection.metric)
    if spiking:
        result["spiking"] = spiking
    return result


def energy_per_sample(
    model: SpikingModel, data: EmotionData, rows: np.ndarray, conversation: bool, device: torch.device
) -> dict[str, Any]:
    """Compute-only energy of one forward pass on the first (up to 8) items, per sample."""
    loader = eval_loader(data, rows, conversation=conversation, batch_size=8, parties=model.config.speaker_parties)
    batch = next(iter(loader)).to(device)
    estimate = model.energy(batch.inputs, batch.masks).as_dict()
    n = len(batch.rows)
    return {**estimate, "samples": n, "energy_pj_per_sample": estimate["energy_pj"] / n}
