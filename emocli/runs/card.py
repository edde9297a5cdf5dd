"""What a run leaves for people: learning curves, a confusion matrix and the model card (README.md).

Plots are drawn on matplotlib's Agg canvas directly (no pyplot): nothing needs a display, and the
process-wide backend of a caller (a notebook) is left alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from emocli.core.io import write_with
from emocli.runs.metrics import summarize

SPLITS = ("train", "valid", "test")
# The metric shown beside the loss when none is named: the first of these a split reports.
HEADLINE_METRICS = ("weighted_f1", "jaccard_accuracy", "accuracy", "micro_f1")
# Bookkeeping numbers in a metrics dict that are not results.
NOT_RESULTS = {"n_samples", "threshold"}

ENERGY_LABEL = "compute-only estimate, 45 nm (Horowitz 2014)"
OPENSMILE_NOTE = (
    "Features were computed with openSMILE, which audEERING licenses free of charge for private, "
    "research and educational use only; commercial use of these features (and of a model that needs "
    "them at prediction time) requires a commercial openSMILE license."
)
# SPDX-style identifiers for a card's metadata (Hugging Face's `license` field), by licence name.
LICENSE_IDS = {"CC BY-NC-SA 4.0": "cc-by-nc-sa-4.0", "GPL-3.0": "gpl-3.0", "Apache-2.0": "apache-2.0", "MIT": "mit",
               "CC BY 4.0": "cc-by-4.0"}


# ------------------------------------------------------------------------------------ learning curves


def plot_learning_curves(
    history: str | Path | Sequence[Mapping[str, Any]],
    out_png: str | Path,
    selection_metric: str | None = None,
    title: str | None = None,
) -> Path:
    """Loss and one metric per epoch, one line per split (train, valid, and test where recorded).

    `history` is a metrics.jsonl path or its records, one per epoch: {"epoch": 3, "train": {"loss": ..},
    "valid": {"loss": .., "weighted_f1": ..}}; flat keys ("valid_loss", "valid/weighted_f1") are read
    too. The metric panel shows `selection_metric` (or the first of HEADLINE_METRICS recorded); when
    `selection_metric` is given, both panels mark its best validation epoch (lowest for a loss).
    """
    records = _read_jsonl(history) if isinstance(history, (str, Path)) else list(history)
    series = _series_by_split(records)
    if not any("loss" in metrics for metrics in series.values()):
        raise ValueError("the history records no loss for any split")
    metric = selection_metric if selection_metric not in (None, "loss") else _headline_metric(series)
    panels = ["loss"] if metric is None else ["loss", metric]
    best = None
    if selection_metric is not None:
        points = series.get("valid", {}).get(selection_metric)
        best = _best_epoch(points, lower_is_better="loss" in selection_metric)

    figure = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    FigureCanvasAgg(figure)
    for i, name in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        for split in SPLITS:
            points = series.get(split, {}).get(name)
            if points:
                epochs, values = zip(*points)
                axes.plot(epochs, values, marker="o", markersize=3, label=split,
                          linestyle="--" if split == "test" else "-")
        if best is not None:
            axes.axvline(best, color="grey", linestyle=":", linewidth=1,
                         label=f"best valid {selection_metric} (epoch {best})")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    if title:
        figure.suptitle(title, fontsize="medium")
    return _save(figure, out_png)


def _read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _series_by_split(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """split -> metric -> [(epoch, value)], from nested or flat per-epoch records."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for index, record in enumerate(records):
        epoch = int(record.get("epoch", index + 1))
        for key, value in record.items():
            if key in SPLITS and isinstance(value, Mapping):
                pairs = value.items()
                split = key
            else:
                split, sep, name = key.replace("/", "_").partition("_")
                if not sep or split not in SPLITS:
                    continue
                pairs = [(name, value)]
            for name, number in pairs:
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    series.setdefault(split, {}).setdefault(name, []).append((epoch, float(number)))
    return series


def _headline_metric(series: Mapping[str, Mapping[str, Any]]) -> str | None:
    recorded = {name for metrics in series.values() for name in metrics}
    return next((name for name in HEADLINE_METRICS if name in recorded), None)


def _best_epoch(points: Sequence[tuple[int, float]] | None, lower_is_better: bool) -> int | None:
    if not points:
        return None
    pick = min if lower_is_better else max
    # Ties go to the earliest epoch, as a strict-improvement checkpoint rule keeps it.
    return pick(points, key=lambda p: (p[1], p[0]) if lower_is_better else (p[1], -p[0]))[0]


# ----------------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(
    matrix: np.ndarray | Sequence[Sequence[int]],
    label_names: Sequence[str],
    out_png: str | Path,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """A confusion matrix (rows true, columns predicted) as a heat map with the counts written in.

    normalize=True colours each cell by its share of the true class's row (the diagonal is per-class
    recall) and writes the count with that share under it; each row's label carries its support, so a
    reader sees both how often and how many. A class without samples keeps a row of zeros.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(label_names):
        raise ValueError(f"expected a {len(label_names)}×{len(label_names)} matrix, got shape {counts.shape}")
    if normalize:
        support = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    else:
        values = counts

    size = 1.2 + 0.6 * len(label_names)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes)
    ticks = np.arange(len(label_names))
    axes.set_xticks(ticks, labels=label_names, rotation=45, ha="right")
    support = counts.sum(axis=1)
    axes.set_yticks(ticks, labels=[f"{name} ({int(n)})" for name, n in zip(label_names, support)])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    # White text on the dark half of the colour map keeps every value readable.
    dark = values.max() / 2 if values.max() > 0 else 1.0
    for (row, column), value in np.ndenumerate(values):
        count = int(counts[row, column])
        text = f"{count}\n{value:.0%}" if normalize else f"{count}"
        axes.text(column, row, text, ha="center", va="center", fontsize="small",
                  color="white" if value > dark else "black")
    return _save(figure, out_png)


def _save(figure: Figure, out_png: str | Path) -> Path:
    # bbox "tight" keeps rotated tick labels and the colour bar's labels inside the image.
    return write_with(out_png, lambda temporary: figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight"))


# ------------------------------------------------------------------------------------------ model card


def render_model_card(info: Mapping[str, Any]) -> str:
    """The README of a run directory: a Hugging Face model card (huggingface_hub.ModelCard), so a run pushed
    to the hub (`emo push`) shows its licence, dataset and tags there.

    `info` keys (only "model" is required):
    - "name": run name (the title); "model": {"name", "title", "paper", "faithful"}; "parameters": int
    - "task": "single_label" | "multi_label"; "threshold", "empty_rule" (multi-label)
    - "dataset": {"name", "labels"} or a name; "features": modality -> extractor name, or
      modality -> {"extractor", "params", "set"}
    - "protocol": "standard" (selection on validation) | "paper"; "selection": {"split", "metric",
      "mode"}; "protocol_note": the paper's rule in words; "test_peeking": bool, to override the
      inference (a paper protocol is test-peeking unless its selection split is "valid")
    - "seeds": [int]; "folds": [int] | None
    - "results": a `metrics.summarize` output, or the list of per-seed/fold metric dicts
    - "spiking": {"timesteps", "firing_rates": {layer: rate}, "energy": {quantity: value}}
    - "license_notes": [str], added to the generated ones
    """
    sections = [
        _title(info),
        _model_section(info),
        _data_section(info),
        _protocol_section(info),
        _seeds_section(info),
        _results_section(info),
    ]
    if info.get("spiking"):
        sections.append(_spiking_section(info["spiking"]))
    sections.append(_license_section(info))
    from huggingface_hub import ModelCard, ModelCardData

    licence = _dataset_licence(info)
    metadata = ModelCardData(
        library_name="emocli",
        license=LICENSE_IDS.get(licence.name, "other") if licence is not None else None,
        tags=["emotion-recognition", "emocli", info["model"]["name"]],
        datasets=[_dataset_name(info)],
    )
    return str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"))


def _dataset_licence(info: Mapping[str, Any]) -> Any:
    """The training data's licence (emocli.datasets.base.Licence), for the datasets emo has an adapter for."""
    from emocli.datasets import ADAPTERS, adapter_class

    name = _dataset_name(info).lower()
    return adapter_class(name).licence if name in ADAPTERS else None


def _dataset_name(info: Mapping[str, Any]) -> str:
    dataset = info.get("dataset") or {}
    return dataset if isinstance(dataset, str) else str(dataset.get("name", "unknown"))


def _test_peeking(info: Mapping[str, Any]) -> bool:
    if info.get("protocol") != "paper":
        return False
    if "test_peeking" in info:
        return bool(info["test_peeking"])
    # The papers' rules that select on held-out data (SpikEmo/MultiEMO: best test epoch; CFN-SR: best
    # epoch on the evaluation fold) are the norm; a paper rule is trusted only when it names "valid".
    return (info.get("selection") or {}).get("split") != "valid"


def _title(info: Mapping[str, Any]) -> str:
    model = info["model"]
    lines = [f"# {info.get('name') or model['name']}", ""]
    lines.append(
        f"{model.get('title', model['name'])} (`emo` model `{model['name']}`"
        + (f", {model['paper']}" if model.get("paper") else "")
        + f") trained on {_dataset_name(info)}."
    )
    if _test_peeking(info):
        lines += [
            "",
            "> **⚠ PAPER PROTOCOL (TEST-PEEKING).** The checkpoint was chosen by its score on the data it "
            "is evaluated on, as the paper's code does. These numbers are optimistic: compare them only "
            "with the paper, never with runs selected on a validation split.",
        ]
    return "\n".join(lines)


def _model_section(info: Mapping[str, Any]) -> str:
    model = info["model"]
    lines = ["## Model", ""]
    lines.append(f"- Architecture: `{model['name']}`" + (f" ({model['paper']})" if model.get("paper") else ""))
    if "faithful" in model:
        lines.append(
            "- Implementation: "
            + ("faithful (reproduces the released code, its quirks included)" if model["faithful"]
               else "clean (the paper's intent where the released code differs)")
        )
    if info.get("task"):
        lines.append(f"- Task: {str(info['task']).replace('_', '-')}")
    if info.get("parameters") is not None:
        lines.append(f"- Parameters: {int(info['parameters']):,}")
    return "\n".join(lines)


def _data_section(info: Mapping[str, Any]) -> str:
    lines = ["## Data", "", f"- Dataset: {_dataset_name(info)}"]
    dataset = info.get("dataset")
    if isinstance(dataset, Mapping) and dataset.get("labels"):
        lines.append(f"- Labels: {', '.join(map(str, dataset['labels']))}")
    features = info.get("features") or {}
    if features:
        lines += ["", "| modality | extractor | parameters |", "|---|---|---|"]
        for modality, spec in features.items():
            extractor, params = _feature_spec(spec)
            lines.append(f"| {modality} | {extractor} | {params} |")
    return "\n".join(lines)


def _feature_spec(spec: str | Mapping[str, Any]) -> tuple[str, str]:
    if isinstance(spec, str):
        return f"`{spec}`", "preset defaults"
    extractor = f"`{spec.get('extractor', spec.get('set', '?'))}`"
    params = spec.get("params") or {}
    rendered = ", ".join(f"{k}={v}" for k, v in params.items()) if params else "defaults"
    return extractor, rendered


def _protocol_section(info: Mapping[str, Any]) -> str:
    selection = info.get("selection") or {}
    lines = ["## Protocol", ""]
    if info.get("protocol") == "paper":
        flag = "paper protocol (test-peeking)" if _test_peeking(info) else "paper protocol"
        lines.append(f"- **{flag[0].upper() + flag[1:]}**: the paper's own model-selection rule.")
    else:
        lines.append("- Standard: the checkpoint is selected on the validation split only; test is scored once.")
    if selection:
        mode = {"min": "lowest", "max": "highest"}.get(selection.get("mode", ""), "best")
        lines.append(f"- Selection: {mode} `{selection.get('metric', '?')}` on `{selection.get('split', '?')}`")
    if info.get("protocol_note"):
        lines.append(f"- Note: {info['protocol_note']}")
    if info.get("threshold") is not None:
        lines.append(f"- Decision threshold: sigmoid output > {info['threshold']}")
    if info.get("empty_rule"):
        scores = "0, as in the papers' code" if info["empty_rule"] == "zero" else "1"
        lines.append(f"- Jaccard accuracy of a sample with no true and no predicted label: {scores}")
    return "\n".join(lines)


def _seeds_section(info: Mapping[str, Any]) -> str:
    seeds = info.get("seeds") or []
    folds = info.get("folds")
    lines = ["## Seeds and folds", "", f"- Seeds: {', '.join(map(str, seeds)) if seeds else 'not recorded'}"]
    lines.append(f"- Folds: {', '.join(map(str, folds)) if folds else 'the dataset split (no folds)'}")
    return "\n".join(lines)


def _results_section(info: Mapping[str, Any]) -> str:
    results = info.get("results")
    if not results:
        return "## Results\n\nNo results recorded."
    summary = summarize(results) if isinstance(results, Sequence) else results
    means, stds = summary["mean"], summary["std"]
    runs = summary["n"]
    lines = ["## Results", "", f"Mean ± sample standard deviation over {runs} run{'s' if runs != 1 else ''}.", ""]
    lines += ["| metric | mean ± std |", "|---|---|"]
    for name, mean in means.items():
        if "." not in name and name not in NOT_RESULTS:
            lines.append(f"| {name} | {_pm(mean, stds[name])} |")
    per_class = {name: mean for name, mean in means.items() if name.endswith(".f1") and name.count(".") == 2}
    if per_class:
        lines += ["", "| class | F1 (mean ± std) |", "|---|---|"]
        for name, mean in per_class.items():
            lines.append(f"| {name.split('.')[1]} | {_pm(mean, stds[name])} |")
    return "\n".join(lines)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}"


def _spiking_section(spiking: Mapping[str, Any]) -> str:
    lines = ["## Spiking activity and energy", ""]
    if spiking.get("timesteps") is not None:
        lines.append(f"- Time steps T = {spiking['timesteps']}")
    rates = spiking.get("firing_rates") or {}
    if rates:
        lines += ["", "| layer | firing rate |", "|---|---|"]
        lines += [f"| {layer} | {rate:.4f} |" for layer, rate in rates.items()]
    energy = spiking.get("energy") or {}
    if energy:
        lines += [
            "",
            f"Energy per sample, {ENERGY_LABEL}: E_MAC = 4.6 pJ, E_AC = 0.9 pJ, SOP = firing rate × T × FLOPs,"
            " the first (real-valued) layer counted as MAC. Memory access and data movement are not"
            " counted, so this is not a measured or hardware energy (Yan et al., arXiv 2409.08290).",
            "",
        ]
        lines += [f"- {quantity}: {_number(value)}" for quantity, value in energy.items()]
    return "\n".join(lines)


def _number(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)


def _license_section(info: Mapping[str, Any]) -> str:
    notes: list[str] = []
    features = info.get("features") or {}
    if any("opensmile" in json.dumps(spec).lower() for spec in features.values()):
        notes.append(OPENSMILE_NOTE)
    licence = _dataset_licence(info)
    if licence is not None:
        notes.append(f"The training data ({_dataset_name(info)}) is licensed {licence.name} ({licence.url}): "
                     f"{licence.meaning}; the trained weights carry these terms.")
    notes += list(info.get("license_notes") or [])
    notes.append(
        "The `emo` code is MIT-licensed; trained weights also carry the terms of their training data and "
        "features."
    )
    return "\n".join(["## License", "", *[f"- {note}" for note in notes]])
