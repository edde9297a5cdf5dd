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
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Rebuild a unit's model from its directory and score one split: what `emo evaluate` prints. With
    `keep_predictions`, the scored rows' probabilities are in result["predictions"] (split_predictions).

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
    if keep_predictions:
        predictions = split_predictions(data, pred.rows, pred.probs)
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
    if keep_predictions:
        result["predictions"] = predictions
    return result


def split_predictions(data: EmotionData, rows: np.ndarray, probs: np.ndarray):  # -> pandas.DataFrame
    """The scored rows as a table: sample_id, the true label(s), one probability column per class (`prob_<class>`):
    what a bundle's calibration reads (`emo bundle --held-out`)."""
    import pandas as pd

    names = list(data.label_map.names)
    targets = np.asarray(data.targets)[rows]
    table = pd.DataFrame({"sample_id": data.samples["sample_id"].iloc[rows].to_numpy()})
    if data.label_map.task == "single_label":
        table["label"] = [names[k] for k in targets]
    else:
        table["labels"] = [[n for n, on in zip(names, row) if on] for row in targets]
    for k, name in enumerate(names):
        table[f"prob_{name}"] = probs[:, k]
    return table


def energy_per_sample(
    model: SpikingModel, data: EmotionData, rows: np.ndarray, conversation: bool, device: torch.device
) -> dict[str, Any]:
    """Compute-only energy of one forward pass on the first (up to 8) items, per sample."""
    loader = eval_loader(data, rows, conversation=conversation, batch_size=8, parties=model.config.speaker_parties)
    batch = next(iter(loader)).to(device)
    estimate = model.energy(batch.inputs, batch.masks).as_dict()
    n = len(batch.rows)
    return {**estimate, "samples": n, "energy_pj_per_sample": estimate["energy_pj"] / n}


def evaluate_run(
    run: str | Path,
    split: str = "test",
    *,
    store: str | Path | None = None,
    threshold: float | None = None,
    empty_rule: str | None = None,
    device: str | None = None,
    plot: bool = False,
) -> dict[str, Any]:
    """Every unit of a run (or one unit) scored on `split`, each written to `<unit>/evaluation-<split>.json`,
    its rows' probabilities to `<unit>/predictions-<split>.parquet` (and with `plot`, its confusion matrix to `<unit>/confusion-<split>.png`): the units' scalars and their
    mean ± std (as results.json has them), each unit's full result under "evaluations", and, for the test
    split at the run's own settings, whether each unit reproduced its stored test_metrics.json
    ("reproduces"). The output files are checked before any work; one that still cannot be written is
    listed under "unwritten" (an OutputError) and the results are kept."""
    import json

    from emocli.core.errors import OutputError
    from emocli.core.io import check_writable, write_with
    from emocli.runs.metrics import summarize

    if empty_rule not in (None, "zero", "one"):
        raise EmoError(f"empty_rule is 'zero' or 'one', not {empty_rule!r}")
    found = layout.units(Path(run))
    for unit in found:
        check_writable(unit / f"evaluation-{split}.json")
    units, evaluations, reproduces, unwritten, model, dataset = [], [], {}, [], None, None
    for unit in found:
        seed, fold = layout.parse_unit(unit) if unit.name.startswith("fold=") else (None, None)
        result = evaluate_unit(unit, split, store=store, threshold=threshold, empty_rule=empty_rule, device=device,
                               keep_predictions=True)
        predictions = result.pop("predictions")
        try:
            layout.write_json(unit / f"evaluation-{split}.json", result)
            write_with(unit / f"predictions-{split}.parquet", lambda path: predictions.to_parquet(path, index=False))
        except OutputError as error:
            unwritten.append(error)
        stored = unit / layout.TEST_METRICS
        if split == "test" and threshold is None and empty_rule is None and stored.is_file():
            # Compared as JSON, as the stored file holds them (floats round-trip exactly).
            reproduces[str(unit)] = (layout.read_json(stored, dict).get("metrics")
                                     == json.loads(layout.to_json(result["metrics"])))
        config = layout.read_json(unit / layout.CONFIG, dict)
        model, dataset = config.get("model_name"), config.get("dataset")
        best_epoch = layout.read_json(stored, dict).get("best_epoch") if stored.is_file() else None
        units.append({"seed": seed, "fold": fold, "best_epoch": best_epoch, **scalars(result["metrics"])})
        evaluations.append(result)
        if plot:
            from emocli.runs.card import plot_confusion_matrix

            where = f"seed {seed}, fold {'none' if fold is None else fold}" if seed is not None else unit.name
            title = f"{model} on {dataset}, {where}: {split} split ({result['n_samples']} samples)"
            try:
                result["plot"] = str(plot_confusion_matrix(confusion(result), TrainedUnit.read(unit).label_map.names,
                                                           unit / f"confusion-{split}.png", title=title))
            except OutputError as error:
                unwritten.append(error)
    first = evaluations[0]
    return {
        "model": model, "dataset": dataset, "split": split, "task": first["metrics"]["task"],
        "protocol": first["protocol"], "units": units, "summary": summarize([e["metrics"] for e in evaluations]),
        "evaluations": evaluations, "reproduces": reproduces, "unwritten": unwritten,
        **({"warning": first["warning"]} if "warning" in first else {}),
    }
