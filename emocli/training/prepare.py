"""What a training run is before it trains: the model, the feature sets it reads, its configuration
resolved against them, its identity (fingerprint) and its directory.

`plan` reads only the store's index (feature-set specs and the label map), so finding a run's directory
(`run_directory`, what `emo run` and `emo tune` need) costs no feature loading; `Plan.load_data` then
reads the chosen feature sets for training.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from emocli.core.errors import ConfigError
from emocli.core.paths import check_name
from emocli.data.inputs import InputSpec, select_inputs, store_label_map
from emocli.data.splits import dataset_folds
from emocli.data.tables import EmotionData, load_data
from emocli.models.base import ModelConfig
from emocli.models.registry import ModelEntry, get_model
from emocli.runs import layout
from emocli.runs.config import TrainConfig

# Selection metrics of one task mapped to the other's (metric, mode), for recipes run on the other task.
TASK_COUNTERPART = {
    "single_label": {m: ("weighted_f1", "max") for m in ("jaccard_accuracy", "micro_f1", "subset_accuracy")}
    | {"hamming_loss": ("loss", "min")},
    "multi_label": {m: ("jaccard_accuracy", "max") for m in ("accuracy", "weighted_f1", "unweighted_accuracy")},
}


@dataclass
class Plan:
    """What every unit of a run shares: the model, its inputs and configuration, the resolved config."""

    entry: ModelEntry
    store_path: Path
    dataset: str
    inputs: dict[str, InputSpec]
    label_map: Any  # core.types.LabelMap
    model_config: ModelConfig
    config: TrainConfig  # resolved: folds a list or None, threshold and selection for this task

    @property
    def folds(self) -> list[int | None]:
        return list(self.config.folds) if self.config.folds is not None else [None]

    def load_data(self) -> EmotionData:
        from emocli.features.store import FeatureStore

        return load_data(FeatureStore(self.store_path), self.inputs, self.label_map)

    def fingerprint(self) -> str:
        """Identity of what trains: the resolved model configuration and feature sets rather than how they
        were spelled (`--set model.d_model=30` is the default, `--feature audio=egemaps` its feature set)."""
        blob = json.dumps(
            {
                "config": self.config.model_dump(mode="json", exclude={"model_params", "features"}),
                "model": self.model_config.model_dump(mode="json"),
                "dataset": self.dataset,
                "inputs": sorted(i.feature_set for i in self.inputs.values()),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def model_input(spec: InputSpec) -> dict[str, Any]:
    """The model's view of an input: its width, or for raw clips their 3 colour channels."""
    return {"dim": 3 if spec.kind == "clip" else spec.dim, "kind": spec.kind}


def build_model_config(entry: ModelEntry, config: TrainConfig, inputs: dict[str, InputSpec], label_map: Any) -> ModelConfig:
    """Modalities and widths from the feature sets, classes and task from the label map, then overrides."""
    fields = {
        "modalities": {m: model_input(spec) for m, spec in inputs.items()},
        "num_classes": len(label_map.names),
        "task": label_map.task,
        **config.model_params,
    }
    try:
        return entry.config(config.reference, **fields)
    except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid {entry.name} configuration for these features: {error}") from None


def plan(model_name: str, store_path: str | Path, config: TrainConfig) -> Plan:
    from emocli.features.store import FeatureStore

    entry = get_model(model_name)
    store = FeatureStore(store_path)
    label_map = store_label_map(store)
    inputs = select_inputs(store, entry, config.modalities, config.features)
    model_config = build_model_config(entry, config, inputs, label_map)
    resolved = config.model_copy(deep=True)
    if resolved.threshold is None:
        resolved.threshold = entry.objective.paper_threshold
    for selection in (resolved.selection, resolved.paper.selection):
        # A recipe's metric for the other task (MMER's Jaccard on single-label RAVDESS): its counterpart.
        counterpart = TASK_COUNTERPART[label_map.task].get(selection.metric)
        if counterpart is not None:
            selection.metric, selection.mode = counterpart
    known = dataset_folds(store.samples())
    if resolved.folds == "all":
        resolved.folds = known
        if not resolved.folds:
            raise ConfigError("--folds all: the dataset defines no folds", path=store.path)
    unknown = sorted(set(resolved.folds or []) - set(known))
    if unknown:
        folds = f"its folds are {known}" if known else "it defines no folds (drop --folds)"
        raise ConfigError(f"--folds: the dataset has no fold {unknown[0]}; {folds}", path=store.path)
    dataset = store.dataset().get("dataset", store.path.name)
    return Plan(entry, Path(store_path).resolve(), dataset, inputs, label_map, model_config, resolved)


def choose_root(out: Path, plan: Plan, name: str | None) -> Path:
    """The run's directory: `--name`, else the latest run of the same configuration, else a new one. The
    name and the dataset's (read from the store) are names, never paths: the run stays inside `out`."""
    check_name(plan.dataset, f"the dataset name of {plan.store_path}")
    stem = f"{plan.entry.name}-{plan.dataset}"
    fingerprint = plan.fingerprint()
    if name is not None:
        check_name(name, "--name")
        root = out / f"{stem}-{name}"
        info = root / layout.RUN_INFO
        if info.is_file() and layout.read_json(info).get("fingerprint") != fingerprint:
            raise ConfigError("holds a run of another configuration; choose another --name", path=root)
        return root
    for candidate in sorted(out.glob(f"{stem}-*"), reverse=True):
        info = candidate / layout.RUN_INFO
        if info.is_file() and layout.read_json(info).get("fingerprint") == fingerprint:
            return candidate
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root, suffix = out / f"{stem}-{stamp}", 1
    while root.exists():  # another configuration started within the same second (emo tune's trials)
        suffix += 1
        root = out / f"{stem}-{stamp}-{suffix}"
    return root


def run_directory(model_name: str, store_path: str | Path, config: TrainConfig, out: str | Path = "runs",
                  name: str | None = None) -> Path:
    """Where `emo train` with these arguments writes (or has written) its run."""
    return choose_root(Path(out), plan(model_name, store_path, config), name)


def run_info(plan: Plan, command: list[str] | None) -> dict[str, Any]:
    cfg = plan.config
    return {
        "model": plan.entry.name,
        "dataset": plan.dataset,
        "store": str(plan.store_path),
        "fingerprint": plan.fingerprint(),
        "command": command or sys.argv,
        "seeds": cfg.seeds,
        "folds": cfg.folds,
        "protocol": cfg.protocol,
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def card_info(plan: Plan, name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's description for its model card and results (runs/card.py, runs/results.py)."""
    cfg = plan.config
    selection = cfg.effective_selection()
    info = {
        "name": name,
        "model": {
            "name": plan.entry.name,
            "title": plan.entry.title,
            "paper": plan.entry.paper,
            "faithful": plan.model_config.faithful,
        },
        "task": plan.label_map.task,
        "dataset": {"name": plan.dataset, "labels": list(plan.label_map.names)},
        "features": {
            m: {"extractor": s.extractor, "params": s.extractor_spec.get("params", {}), "set": s.feature_set}
            for m, s in plan.inputs.items()
        },
        "protocol": cfg.protocol,
        "selection": selection.model_dump(),
        "seeds": cfg.seeds,
        "folds": cfg.folds,
        "results": results,
    }
    if cfg.protocol == "paper" and cfg.paper.note:
        info["protocol_note"] = cfg.paper.note
    if plan.label_map.task == "multi_label":
        info.update(threshold=cfg.threshold, empty_rule=cfg.empty_rule)
    return info
