"""Predictions written to files (CSV, JSON, Parquet) and drawn as a timeline.

Both writers are atomic (emocli.core.io): a file is complete or absent, and an operating-system error is
one OutputError naming the file. `check_outputs` asks everything that can be asked before prediction
starts (format, folder, permission), so a bad `--output` costs no extraction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import check_writable, write_text, write_with
from emocli.core.paths import check_not_input
from emocli.prediction.predictor import PROBABILITY_PREFIX, PredictionResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
PLOT_FORMATS = (".png", ".pdf", ".svg")
MAX_PLOTTED_INPUTS = 10
LIST_SEPARATOR = ";"  # multi-label labels and flags in CSV, as in manifests
FLAG_HATCH = "///"  # a flagged segment in the timeline


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


def check_outputs(output: str | Path | None = None, plot: str | Path | None = None,
                  inputs: Sequence[str | Path] = ()) -> None:
    """Before any work: the formats are known, the files can be created where they are asked for, and
    neither is one of the inputs (`emo predict m.csv -o m.csv` would overwrite the manifest)."""
    if output is not None:
        check_writable(output)
        output_format(output)
        check_not_input(output, inputs, "--output")
    if plot is not None:
        check_writable(plot)
        plot_format(plot)
        check_not_input(plot, inputs, "--plot")


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
    """The timeline of `timeline_figure`, written to `path` (.png, .pdf or .svg)."""
    path = Path(path)
    fmt = plot_format(path)
    if result.table.empty:
        raise EmoError("nothing to plot: no input was predicted", path=path)
    figure = timeline_figure(result)
    return write_with(path, lambda temporary: figure.savefig(temporary, dpi=110, format=fmt))


def timeline_figure(result: PredictionResult) -> Figure:
    """One panel per input (the first ten): a class x time heat map of the probabilities, each segment drawn
    over its own span, so time no segment covers stays blank, along the whole medium; above it a band with
    the predicted label of each segment (multi-label: the most probable one above the threshold, else
    "none"). A flagged segment (no speech, no face, silence: its prediction rests on nothing) is hatched
    grey in both, its band naming the flag instead of a label. Segments without times (a text's lines) are
    placed by their number."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = list(dict.fromkeys(result.table["input"]))[:MAX_PLOTTED_INPUTS]
    classes = list(result.classes)
    figure = Figure(figsize=(10, 0.9 + (0.32 * len(classes) + 1.0) * len(names)), layout="constrained")
    FigureCanvasAgg(figure)
    rows = figure.subfigures(len(names), 1, squeeze=False)[:, 0] if len(names) > 1 else [figure]
    palette = [_colour(k) for k in range(len(classes))]
    for panel, name in zip(rows, names):
        part = result.table[result.table["input"] == name].reset_index(drop=True)
        timed = bool(part["start_s"].notna().all() and part["end_s"].notna().all())
        starts = part["start_s"].to_numpy(float) if timed else np.arange(len(part), dtype=float)
        ends = part["end_s"].to_numpy(float) if timed else starts + 1.0
        probs = part[[PROBABILITY_PREFIX + c for c in classes]].to_numpy(float)
        flags = [list(f) if isinstance(f, (list, tuple, np.ndarray)) else [] for f in part["flags"]] \
            if "flags" in part else [[] for _ in range(len(part))]
        duration = result.durations.get(name) if timed else None
        first, last = min(0.0, starts.min()) if timed else starts.min(), max(ends.max(), duration or 0.0)
        band, heat = panel.subplots(2, 1, sharex=True, height_ratios=(1, max(2, len(classes))))
        image = None
        for start, end, column in zip(starts, ends, probs):
            image = heat.pcolormesh([start, end], np.arange(len(classes) + 1), column[:, None], cmap="magma",
                                    vmin=0.0, vmax=1.0, shading="flat")
        for start, end, column, flagged in zip(starts, ends, probs, flags):
            k = _shown_class(column, result.threshold)
            if flagged:
                band.axvspan(start, end, facecolor="lightgrey", hatch=FLAG_HATCH, edgecolor="grey", linewidth=0)
                heat.axvspan(start, end, facecolor=(0.83, 0.83, 0.83, 0.6), hatch=FLAG_HATCH, edgecolor="grey",
                             linewidth=0)
                shown = ", ".join(flag.split(":")[-1] for flag in flagged)
            else:
                band.axvspan(start, end, color=palette[k] if k is not None else "lightgrey", linewidth=0)
                shown = classes[k] if k is not None else "none"
            if (end - start) >= 0.08 * (last - first):
                band.text((start + end) / 2, 0.5, shown, ha="center", va="center", fontsize=7, clip_on=True)
        band.set_yticks([])
        band.set_ylabel("label", rotation=0, ha="right", va="center", fontsize=8)
        band.set_title(Path(name).name if len(name) > 60 else name, fontsize=9, loc="left")
        heat.set_yticks(np.arange(len(classes)) + 0.5, labels=classes, fontsize=8)
        heat.invert_yaxis()  # the first class on top, as the legend and the table list them
        heat.set_xlim(first, last)
        heat.set_xlabel("time (s)" if timed else "segment")
        if not timed:  # one tick per segment, at its middle
            heat.set_xticks(starts + 0.5, labels=[str(i) for i in range(len(starts))])
        panel.colorbar(image, ax=[band, heat], label="probability", shrink=0.9)
    legend = [Patch(color=palette[k], label=c) for k, c in enumerate(classes)]
    if result.flagged:
        legend.append(Patch(facecolor="lightgrey", hatch=FLAG_HATCH, edgecolor="grey",
                            label="flagged: no speech, face or sound to rest on"))
    hidden = len(dict.fromkeys(result.table["input"])) - len(names)
    title = f"{result.model_name}: " + (f"first {len(names)} inputs ({hidden} more not shown)" if hidden else "emotions over time")
    figure.suptitle(title, fontsize=10)
    figure.legend(handles=legend, loc="outside lower center", ncols=min(len(legend), 8), fontsize=8, frameon=False)
    return figure


def _colour(k: int) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if k < 10 else "tab20"]
    return palette(k % palette.N)


def _shown_class(probs: np.ndarray, threshold: float | None) -> int | None:
    """The predicted label a segment's band shows: the argmax; for multi-label only when above the threshold."""
    k = int(np.argmax(probs))
    if threshold is not None and probs[k] <= threshold:
        return None
    return k
