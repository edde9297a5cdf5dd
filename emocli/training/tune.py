"""Hyperparameter search that looks at the validation split only.

MMSA's tune mode ranks its sampled configurations on the test split (github.com/thuiar/MMSA at commit
a94e65d, src/MMSA/run.py: the validation call is commented out and the test split scored); here every
trial is an ordinary `emo train` run of the base configuration plus the trial's overrides, and trials are
ranked by their `selection_score` (the selection split's score of each unit's kept weights, mean over
seeds and folds). Only the chosen trial's test metrics are reported. Each unit still scores its test
split when it finishes (that is what makes it a finished run), so the other trials' test numbers sit in
their run directories: reading them to pick a trial is the mistake this module exists to avoid.

A trial is found again by its configuration fingerprint, so an interrupted search resumes where it
stopped and a finished one trains nothing.

    --grid optimizer.lr=1e-3,5e-4 --grid model.d_model=30,60   -> 4 trials (the Cartesian product)
    ... --trials 3 --sample-seed 1                             -> 3 of them, drawn without replacement
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from emocli.core.errors import ConfigError
from emocli.core.io import check_writable, write_with
from emocli.core.paths import check_name
from emocli.runs import layout
from emocli.runs.config import TrainConfig


@dataclass(frozen=True)
class Axis:
    """One `--grid key=v1,v2,...` option: a dotted config key and the values to try."""

    key: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Axis:
        key, sep, values = text.partition("=")
        parts = tuple(v.strip() for v in _split_top_level(values))
        if not sep or not key.strip() or not parts or not all(parts):
            raise ConfigError(f"--grid expects key=value1,value2,..., e.g. optimizer.lr=1e-3,5e-4; got {text!r}")
        if len(set(parts)) != len(parts):
            raise ConfigError(f"--grid {key.strip()}: a value is repeated in {values!r}")
        return cls(key.strip(), parts)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and braces, so list and table values stay whole."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def trial_overrides(axes: list[Axis], trials: int | None = None, sample_seed: int = 0) -> list[list[str]]:
    """The grid's trials as `--set` lists, in grid order; `trials` draws that many without replacement."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--grid names a key twice: {', '.join(sorted(k for k in set(keys) if keys.count(k) > 1))}")
    grid = [[f"{a.key}={v}" for a, v in zip(axes, combo)] for combo in itertools.product(*(a.values for a in axes))]
    if trials is None or trials >= len(grid):
        return grid
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    chosen = sorted(random.Random(sample_seed).sample(range(len(grid)), trials))
    return [grid[i] for i in chosen]


@dataclass
class Trial:
    overrides: list[str]
    root: Path
    score_mean: float
    score_std: float
    units: int


@dataclass
class TuneResult:
    report: Path  # tune.json; tune.csv beside it
    selection: dict[str, Any]  # split, metric, mode
    trials: list[Trial]  # best first
    task: str  # single_label | multi_label
    chosen_test: dict[str, Any]  # the chosen trial's test summary (metrics.summarize)


def search_name(model: str, base_overrides: list[str], fields: dict[str, Any], axes: list[Axis], preset: str | None,
                trials: int | None, sample_seed: int) -> str:
    """A stable name for a search, so the same command finds its report and trials again."""
    spec = {"model": model, "preset": preset, "set": base_overrides, "fields": fields,
            "grid": [[a.key, list(a.values)] for a in axes], "trials": trials, "sample_seed": sample_seed}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{model}-{digest}"


def tune(
    model: str,
    store: str | Path,
    configs: list[tuple[list[str], TrainConfig]],
    out: Path,
    name: str,
    train: Callable[[TrainConfig], Any],
) -> TuneResult:
    """Train every trial (`train(config)` returns a RunSummary), rank them by their runs' mean selection
    score (results.json), write the report.

    `configs` are the trials' overrides with their resolved configurations, all validated before
    anything trains, so a bad value fails without losing time.
    """
    for _, config in configs:
        if config.protocol != "standard":
            raise ConfigError("tuning ranks trials on the validation split: use --protocol standard")
    check_name(name, "--name")  # the search's folder, tune-NAME, stays inside --out
    check_writable(out / f"tune-{name}", folder=True)

    trials, selection = [], None
    for overrides, config in configs:
        root = train(config).root
        results = layout.read_json(root / layout.RESULTS_JSON)
        selection, summary = results["selection"], results["summary"]
        if "selection_score" not in summary["mean"]:  # a unit kept its last epoch: no validation rows
            raise ConfigError("a unit has no validation score: tuning needs a validation split", path=root)
        mean, std = summary["mean"]["selection_score"], summary["std"]["selection_score"]
        trials.append(Trial(overrides, root, mean, std, summary["n"]))

    ranked = sorted(trials, key=lambda t: -t.score_mean if selection["mode"] == "max" else t.score_mean)
    chosen = layout.read_json(ranked[0].root / layout.RESULTS_JSON)
    report = _write_report(out / f"tune-{name}", model, str(store), selection, ranked, chosen["summary"])
    return TuneResult(report, selection, ranked, chosen["task"], chosen["summary"])


def _write_report(folder: Path, model: str, store: str, selection: dict[str, Any], ranked: list[Trial],
                  chosen_test: dict[str, Any]) -> Path:
    import pandas as pd

    rows = [{"rank": i + 1, "overrides": " ".join(t.overrides), "selection_mean": t.score_mean,
             "selection_std": t.score_std, "units": t.units, "run": str(t.root)} for i, t in enumerate(ranked)]
    write_with(folder / "tune.csv", lambda temporary: pd.DataFrame(rows).to_csv(temporary, index=False))
    report = folder / "tune.json"
    layout.write_json(report, {
        "model": model, "store": store, "selection": selection, "trials": rows,
        "chosen": {**rows[0], "test": chosen_test},
        "note": "trials are ranked on the selection split only; test is reported for the chosen trial alone",
    })
    return report
