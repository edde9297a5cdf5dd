"""Predictions written to files (CSV, JSON, Parquet) and drawn as a timeline."""

from __future__ import annotations

import json
from pathlib import Path

from emocli.core.errors import ConfigError, EmoError
from emocli.predict.predictor import PROBABILITY_PREFIX, PredictionResult

OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
MAX_PLOTTED_INPUTS = 10


def write_predictions(result: PredictionResult, path: str | Path) -> Path:
    """CSV, JSON or Parquet by the suffix; one row per segment. CSV joins multi-label labels with ';'
    (the manifest convention); JSON holds the rows with the run, classes, threshold and failures."""
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"unknown output format {path.suffix!r}: use .csv, .json or .parquet", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = result.table
    if fmt == "csv":
        if result.task == "multi_label":
            table = table.assign(labels=table["labels"].map(";".join))
        table.to_csv(path, index=False)
    elif fmt == "parquet":
        table.to_parquet(path, index=False)
    else:
        document = {
            "run": str(result.unit),
            "model": result.model_name,
            "task": result.task,
            "classes": list(result.classes),
            **({"threshold": result.threshold} if result.threshold is not None else {}),
            # json, not pandas' to_json: that rounds floats to 10 digits; missing values become null.
            "predictions": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
            "failures": [{"input": f.input, "segment": f.segment, "message": f.message} for f in result.failures],
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def plot_timeline(result: PredictionResult, path: str | Path) -> Path:
    """Each class's probability over segment time, one panel per input (the first ten); segments
    without times (text inputs) are placed by their index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    if result.table.empty:
        raise EmoError("nothing to plot: no input was predicted", path=path)
    names = list(dict.fromkeys(result.table["input"]))[:MAX_PLOTTED_INPUTS]
    figure, axes = plt.subplots(len(names), 1, figsize=(9, 2.4 * len(names) + 0.6), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10" if len(result.classes) <= 10 else "tab20")
    for ax, name in zip(axes[:, 0], names):
        part = result.table[result.table["input"] == name]
        timed = part["start_s"].notna().all() and part["end_s"].notna().all()
        if timed:
            edges = np.append(part["start_s"].to_numpy(float), part["end_s"].to_numpy(float)[-1])
            ax.set_xlabel("time (s)")
        else:
            edges = np.arange(len(part) + 1, dtype=float)
            ax.set_xlabel("segment")
        for k, cls in enumerate(result.classes):
            values = part[PROBABILITY_PREFIX + cls].to_numpy()
            ax.stairs(values, edges, color=colours(k % colours.N), label=cls, linewidth=1.6)
        if result.threshold is not None:
            ax.axhline(result.threshold, color="grey", linestyle=":", linewidth=1)
        ax.set_title(Path(name).name if len(name) > 60 else name, fontsize=9, loc="left")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("probability")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    hidden = len(dict.fromkeys(result.table["input"])) - len(names)
    if hidden:
        figure.suptitle(f"first {len(names)} inputs ({hidden} more not shown)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
