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
) -> None:
    """Score a trained run on a split: prints a table, writes <unit>/evaluation-<split>.json.

    Single-label: accuracy, weighted/macro F1, UA, per-class F1, top-k, confusion matrix. Multi-label:
    Jaccard accuracy, Hamming loss, micro/macro F1, micro precision/recall at the threshold.
    """
    from rich.console import Console

    from emocli.core.errors import ConfigError
    from emocli.runs import layout
    from emocli.runs.evaluation import evaluate_unit, scalars
    from emocli.runs.metrics import summarize
    from emocli.runs.results import print_results

    if empty_rule not in (None, "zero", "one"):
        raise ConfigError(f"--empty-rule is 'zero' or 'one', not {empty_rule!r}")
    console = Console()
    units, metrics, task, dataset, protocol, warning = [], [], None, None, None, None
    for unit in layout.units(run):
        seed, fold = layout.parse_unit(unit) if unit.name.startswith("fold=") else (None, None)
        result = evaluate_unit(
            unit, split, store=features, threshold=threshold, empty_rule=empty_rule, device=device
        )
        layout.write_json(unit / f"evaluation-{split}.json", result)
        stored = unit / layout.TEST_METRICS
        if split == "test" and threshold is None and empty_rule is None and stored.is_file():
            same = layout.read_json(stored)["metrics"] == layout.read_json(unit / f"evaluation-{split}.json")["metrics"]
            console.print(
                f"{unit}: " + ("[green]reproduces test_metrics.json[/]" if same else "[red]differs from test_metrics.json[/]")
            )
        config = layout.read_json(unit / layout.CONFIG)
        task, dataset = result["metrics"]["task"], config["dataset"]
        protocol, warning = result["protocol"], result.get("warning")
        best_epoch = layout.read_json(stored).get("best_epoch") if stored.is_file() else None
        units.append({"seed": seed, "fold": fold, "best_epoch": best_epoch, **scalars(result["metrics"])})
        metrics.append(result["metrics"])
        if result["metrics"]["task"] == "single_label":
            _print_per_class(console, result["metrics"])
    results = {
        "task": task, "dataset": dataset, "protocol": protocol, "units": units, "summary": summarize(metrics),
        **({"warning": warning} if warning else {}),
    }
    print_results(console, config["model_name"], results, split)


def _print_per_class(console, metrics: dict) -> None:
    from rich.table import Table

    table = Table(title="per class", title_justify="left")
    for column in ("class", "f1", "precision", "recall", "support"):
        table.add_column(column, justify="right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['f1']:.4f}", f"{row['precision']:.4f}", f"{row['recall']:.4f}", str(row["support"]))
    console.print(table)
