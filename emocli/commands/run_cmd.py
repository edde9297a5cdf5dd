"""`emo run`: run a pipeline recipe (pipelines/*.toml) stage by stage; docs/PIPELINES.md."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    recipe: Path = typer.Argument(..., help="A recipe, e.g. pipelines/ravdess-cfnsr.toml."),
    root: Path | None = typer.Option(
        None, "--root", help="The dataset's folder (default: $EMO_<DATASET>_ROOT, else the recipe's root)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder the recipe's outputs (store, runs, report) go under (default: its base)."
    ),
    stage: str = typer.Option(
        "all", "--stage", help="extract, train, evaluate, predict, a comma-separated list, or all."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what each stage would do, and do nothing."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda: for training, evaluation, prediction."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override the training configuration after the recipe's own, e.g. --set epochs=50."
    ),
) -> None:
    """Run a recipe: extract, train, evaluate (and predict), then compare with the paper's numbers.

    Stages whose outputs are complete are skipped (cached features, finished runs, evaluations newer than
    the weights), so running it again after an interruption goes on where it stopped.

    Example: emo run pipelines/ravdess-cfnsr.toml --root ../shared/data/ravdess
    Full schedule on a GPU: emo run pipelines/ravdess-spikemo.toml --set epochs=50 --device cuda
    """
    from rich.console import Console

    from emocli.pipeline import STAGES, comparison_table, run_pipeline

    stages = STAGES if stage == "all" else tuple(s.strip() for s in stage.split(",") if s.strip())
    result = run_pipeline(recipe, root=root, out=out, stages=stages, dry_run=dry_run, device=device,
                          train_overrides=overrides)
    if not dry_run:
        Console().print(comparison_table(result))
