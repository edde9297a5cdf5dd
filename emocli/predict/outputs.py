"""Predictions written to files (CSV, JSON, Parquet) and drawn as a timeline.

Both writers are atomic (emocli.core.io): a file is complete or absent, and an operating-system error is
one OutputError naming the file. `check_outputs` asks everything that can be asked before prediction
starts (format, folder, permission), so a bad `--output` costs no extraction.
"""

from __future__ import annotations

import json
from pathlib import Path

from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import check_writable, write_text, write_with
from emocli.predict.predictor import PROBABILITY_PREFIX, PredictionResult

OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
PLOT_FORMATS = (".png", ".pdf", ".svg")
MAX_PLOTTED_INPUTS = 10
LIST_SEPARATOR = ";"  # multi-label labels and flags in CSV, as in manifests


def output_format(path: str | Path) -> str:
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"unknown output format {path.suffix!r}: use .csv, .json or .parquet", path=path)
    return fmt


def plot_format(path: str | Path) -> str:
    path = Path(path)
    if path.suffix.lower() not in PLOT_FORMATS:
        raise ConfigError(f"unknown plot format {path.suffix!r}: use {', '.join(PLOT_FORMATS)}", path=path)
    return path.suffix.lower()[1:]


def check_outputs(output: str | Path | None = None, plot: str | Path | None = None) -> None:
    """Before any work: the formats are known and the files can be created where they are asked for."""
    if output is not None:
        check_writable(output)
        output_format(output)
    if plot is not None:
        check_writable(plot)
        plot_format(plot)


def write_predictions(result: PredictionResult, path: str | Path) -> Path:
    """CSV, JSON or Parquet by the suffix; one row per segment. CSV joins multi-label labels and flags with
    ';' (the manifest convention); JSON holds the rows with the run, classes, threshold and failures."""
    path = Path(path)
    fmt = output_format(path)
    table = result.table
    if fmt == "csv":
        joined = {column: table[column].map(LIST_SEPARATOR.join) for column in ("labels", "flags") if column in table}
        table = table.assign(**joined)
        return write_with(path, lambda temporary: table.to_csv(temporary, index=False))
    if fmt == "parquet":
        return write_with(path, lambda temporary: table.to_parquet(temporary, index=False))
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
    return write_text(path, json.dumps(document, indent=2) + "\n")


def plot_timeline(result: PredictionResult, path: str | Path) -> Path:
    """Each class's probability over segment time, one panel per input (the first ten); segments
    without times (text inputs) are placed by their index. Drawn on matplotlib's Agg canvas (no pyplot),
    so a caller's backend is left alone."""
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = plot_format(path)
    if result.table.empty:
        raise EmoError("nothing to plot: no input was predicted", path=path)
    names = list(dict.fromkeys(result.table["input"]))[:MAX_PLOTTED_INPUTS]
    figure = Figure(figsize=(9, 2.4 * len(names) + 0.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(names), 1, squeeze=False, sharey=True)
    colours = matplotlib.colormaps["tab10" if len(result.classes) <= 10 else "tab20"]
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
    return write_with(path, lambda temporary: figure.savefig(temporary, dpi=110, format=fmt))
