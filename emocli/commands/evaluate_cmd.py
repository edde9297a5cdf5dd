"""`emo evaluate`: rebuild a trained model from its run directory and score a split."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from emocli.commands.options import between
from emocli.core.types import SPLITS

# CLI choices (typer lists them and refuses others); tests check they are the configuration's own.
Split = Enum("Split", {name: name for name in SPLITS}, type=str)


class EmptyRule(str, Enum):
    zero = "zero"
    one = "one"


def evaluate(
    run: Path = typer.Argument(..., help="A run directory (every seed/fold in it) or one seed=S/fold=K unit."),
    split: Split = typer.Option("test", "--split", help="The unit's own split to score (splits.json)."),
    features: Path | None = typer.Option(None, "--features", "-f", help="Feature store (default: the one trained on)."),
    threshold: float | None = typer.Option(
        None, "--threshold", callback=between(0, 1),
        help="Multi-label decision threshold, from 0 to 1 (default: the run's, i.e. SMILE 0.35, MMER 0.5).",
    ),
    empty_rule: EmptyRule | None = typer.Option(
        None, "--empty-rule", help="Jaccard of a sample with no true and no predicted label: zero (the papers') or one."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    plot: bool = typer.Option(False, "--plot", help="Draw each unit's confusion matrix: <unit>/confusion-<split>.png."),
) -> None:
    """Score a trained run on a split: prints a table, writes <unit>/evaluation-<split>.json and the rows' probabilities
    to <unit>/predictions-<split>.parquet (what `emo bundle --held-out` calibrates on).

    Single-label: accuracy, weighted/macro F1, UA, per-class F1, top-k, confusion matrix. Multi-label:
    Jaccard accuracy, Hamming loss, micro/macro F1, micro precision/recall at the threshold.
    The evaluation files are checked before any work; one that still cannot be written exits with code 2,
    the results printed.
    """
    from rich.console import Console
    from rich.markup import escape

    from emocli.api import evaluate as evaluate_run
    from emocli.runs.results import print_results

    console = Console()
    results = evaluate_run(run, split.value, features=features, threshold=threshold,
                           empty_rule=empty_rule.value if empty_rule is not None else None, device=device, plot=plot)
    for unit, same in results["reproduces"].items():
        console.print(f"{escape(unit)}: " + ("[green]reproduces test_metrics.json[/]" if same
                                             else "[red]differs from test_metrics.json[/]"))
    for evaluation in results["evaluations"]:
        if evaluation["metrics"]["task"] == "single_label":
            _print_per_class(console, evaluation["metrics"])
        if "plot" in evaluation:
            console.print(f"confusion matrix: {evaluation['plot']}", highlight=False, markup=False)
    print_results(console, results["model"], results, split.value)
    if results["unwritten"]:
        errors = Console(stderr=True)
        for error in results["unwritten"]:
            errors.print(f"[bold red]error:[/] {escape(str(error))}; the results are printed above", highlight=False,
                         soft_wrap=True)
        raise typer.Exit(code=2)


def _print_per_class(console, metrics: dict) -> None:
    from rich.table import Table

    table = Table(title="per class", title_justify="left")
    for column in ("class", "f1", "precision", "recall", "support"):
        table.add_column(column, justify="right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['f1']:.4f}", f"{row['precision']:.4f}", f"{row['recall']:.4f}", str(row["support"]))
    console.print(table)
