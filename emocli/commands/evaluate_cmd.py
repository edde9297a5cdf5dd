"""`emo evaluate`: rebuild a trained model from its run directory and score a split."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    run: Path = typer.Argument(..., help="A run directory (every seed/fold in it) or one seed=S/fold=K unit."),
    split: str = typer.Option("test", "--split", help="train, valid or test: the unit's own splits (splits.json)."),
    features: Path | None = typer.Option(None, "--features", "-f", help="Feature store (default: the one trained on)."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Multi-label decision threshold (default: the run's, i.e. SMILE 0.35, MMER 0.5)."
    ),
    empty_rule: str | None = typer.Option(
        None, "--empty-rule", help="Jaccard of a sample with no true and no predicted label: zero (the papers') or one."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    plot: bool = typer.Option(False, "--plot", help="Draw each unit's confusion matrix: <unit>/confusion-<split>.png."),
) -> None:
    """Score a trained run on a split: prints a table, writes <unit>/evaluation-<split>.json.

    Single-label: accuracy, weighted/macro F1, UA, per-class F1, top-k, confusion matrix. Multi-label:
    Jaccard accuracy, Hamming loss, micro/macro F1, micro precision/recall at the threshold.
    """
    from rich.console import Console

    from emocli.api import evaluate as evaluate_run
    from emocli.runs.results import print_results

    console = Console()
    results = evaluate_run(run, split, features=features, threshold=threshold, empty_rule=empty_rule, device=device,
                           plot=plot)
    for unit, same in results["reproduces"].items():
        console.print(f"{unit}: " + ("[green]reproduces test_metrics.json[/]" if same else "[red]differs from test_metrics.json[/]"))
    for evaluation in results["evaluations"]:
        if evaluation["metrics"]["task"] == "single_label":
            _print_per_class(console, evaluation["metrics"])
        if "plot" in evaluation:
            console.print(f"confusion matrix: {evaluation['plot']}", highlight=False)
    print_results(console, results["model"], results, split)


def _print_per_class(console, metrics: dict) -> None:
    from rich.table import Table

    table = Table(title="per class", title_justify="left")
    for column in ("class", "f1", "precision", "recall", "support"):
        table.add_column(column, justify="right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['f1']:.4f}", f"{row['precision']:.4f}", f"{row['recall']:.4f}", str(row["support"]))
    console.print(table)
