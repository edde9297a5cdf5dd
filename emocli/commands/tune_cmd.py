"""`emo tune`: a grid (or a sample of it) of training configurations, ranked on validation only."""

from __future__ import annotations

from pathlib import Path

import typer

from emocli.commands.options import between
from emocli.commands.train_cmd import ModelName, Tracker, config_fields


def tune(
    model: ModelName = typer.Argument(..., help="Registry model (see `emo models`)."),
    features: Path = typer.Option(..., "--features", "-f", help="Feature store written by `emo extract`."),
    grid: list[str] = typer.Option(
        ..., "--grid", help="key=value1,value2,... (repeatable; trials are the Cartesian product)."
    ),
    preset: str | None = typer.Option(None, "--preset", "-p", help="Training recipe every trial starts from."),
    overrides: list[str] = typer.Option([], "--set", help="Overrides every trial shares, dotted: epochs=30."),
    trials: int | None = typer.Option(None, "--trials", callback=between(1, None),
                                      help="Train only this many trials (at least 1), drawn from the grid."),
    sample_seed: int = typer.Option(0, "--sample-seed", help="Seed of the --trials draw."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 1,2,3 (default: the preset's)."),
    folds: str | None = typer.Option(None, "--folds", help="'all' or comma-separated folds (default: the dataset's split)."),
    modalities: str | None = typer.Option(None, "--modalities", help="Comma-separated subset, e.g. text,audio."),
    feature: list[str] = typer.Option([], "--feature", help="modality=<feature set name | extractor | preset>."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder of the trials' runs and of the report."),
    name: str | None = typer.Option(None, "--name", help="Search name (default: derived from the command)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1."),
    tracker: Tracker = typer.Option(
        Tracker.none, "--tracker", help="Log every epoch to TensorBoard (<unit>/tensorboard) or MLflow ($MLFLOW_TRACKING_URI, "
        "else <out>/mlruns)."
    ),
) -> None:
    """Train each trial as an `emo train` run and rank the trials on the validation split only.

    The report (OUT/tune-NAME/tune.csv, tune.json) lists every trial's validation score (mean ± std over
    seeds and folds) and the test metrics of the chosen trial alone. Re-running the same command resumes.

    Example: emo tune smile -f stores/ravdess --preset smile-nemu --folds all --grid optimizer.lr=2e-3,5e-4
    """
    import sys

    from rich.console import Console

    from emocli.training.config import resolve_config
    from emocli.training.trainer import train_run
    from emocli.training.tune import Axis, search_name, trial_overrides
    from emocli.training.tune import tune as run_search

    fields = config_fields(seeds, folds, modalities, feature)
    axes = [Axis.parse(text) for text in grid]
    chosen = trial_overrides(axes, trials, sample_seed)
    configs = [(extra, resolve_config(model.value, preset, [*overrides, *extra], **fields)) for extra in chosen]
    name = name or search_name(model.value, overrides, fields, axes, preset, trials, sample_seed)
    console = Console(stderr=True)
    command = ["emo", *sys.argv[1:]]

    def train(config):
        return train_run(model.value, features, config, out=out, device=device, command=command, console=console,
                         tracker=tracker.value)

    result = run_search(model.value, features, configs, out, name, train)
    _print(result)


def _print(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from emocli.runs.evaluation import HEADLINE

    selection = result.selection
    table = Table(title=f"trials ranked by {selection['split']} {selection['metric']} ({selection['mode']})",
                  title_justify="left")
    for column in ("rank", "overrides", f"{selection['split']} {selection['metric']}", "units", "run"):
        table.add_column(column, justify="right" if column in ("rank", "units") else "left")
    for rank, trial in enumerate(result.trials, start=1):
        table.add_row(str(rank), " ".join(trial.overrides), f"{trial.score_mean:.4f} ± {trial.score_std:.4f}",
                      str(trial.units), str(trial.root))
    console = Console()
    console.print(table)
    test = result.chosen_test
    scores = ", ".join(f"{k} {test['mean'][k]:.4f} ± {test['std'][k]:.4f}" for k in HEADLINE[result.task])
    console.print(f"chosen: {' '.join(result.trials[0].overrides)}\ntest (chosen trial only): {scores}")
    console.print(f"report: {result.report}")
