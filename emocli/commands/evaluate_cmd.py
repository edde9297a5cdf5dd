"""`emo evaluate`: rebuild a trained model from its run directory and score a split."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

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
        None, "--threshold", help="Multi-label decision threshold (default: the run's, i.e. SMILE 0.35, MMER 0.5)."
    ),
    empty_rule: EmptyRule | None = typer.Option(
        None, "--empty-rule", help="Jaccard of a sample with no true and no predicted label: zero (the papers') or one."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
) -> None:
    """Score a trained run on a split: prints a table, writes <unit>/evaluation-<split>.json.

    Single-label: accuracy, weighted/macro F1, UA, per-class F1, top-k, confusion matrix. Multi-label:
    Jaccard accuracy, Hamming loss, micro/macro F1, micro precision/recall at the threshold.
    The evaluation files are checked before any work; one that still cannot be written exits with code 2,
    the results printed.
    """
    import json

    from rich.console import Console
    from rich.markup import escape

    from emocli.core.errors import OutputError
    from emocli.core.io import check_writable
    from emocli.runs import layout
    from emocli.runs.evaluation import evaluate_unit, scalars
    from emocli.runs.metrics import summarize
    from emocli.runs.results import print_results

    split_name, rule = split.value, empty_rule.value if empty_rule is not None else None
    found = layout.units(run)
    for unit in found:
        check_writable(unit / f"evaluation-{split_name}.json")
    console = Console()
    units, metrics, task, dataset, protocol, warning, unwritten = [], [], None, None, None, None, []
    for unit in found:
        seed, fold = layout.parse_unit(unit) if unit.name.startswith("fold=") else (None, None)
        result = evaluate_unit(unit, split_name, store=features, threshold=threshold, empty_rule=rule, device=device)
        try:
            layout.write_json(unit / f"evaluation-{split_name}.json", result)
        except OutputError as error:
            unwritten.append(error)
        stored = unit / layout.TEST_METRICS
        if split_name == "test" and threshold is None and rule is None and stored.is_file():
            same = layout.read_json(stored, dict).get("metrics") == json.loads(layout.to_json(result["metrics"]))
            console.print(
                f"{unit}: " + ("[green]reproduces test_metrics.json[/]" if same else "[red]differs from test_metrics.json[/]")
            )
        task, dataset = result["metrics"]["task"], layout.read_json(unit / layout.CONFIG, dict).get("dataset")
        protocol, warning = result["protocol"], result.get("warning")
        best_epoch = layout.read_json(stored, dict).get("best_epoch") if stored.is_file() else None
        units.append({"seed": seed, "fold": fold, "best_epoch": best_epoch, **scalars(result["metrics"])})
        metrics.append(result["metrics"])
        if result["metrics"]["task"] == "single_label":
            _print_per_class(console, result["metrics"])
    results = {
        "task": task, "dataset": dataset, "protocol": protocol, "units": units, "summary": summarize(metrics),
        **({"warning": warning} if warning else {}),
    }
    print_results(console, layout.read_json(found[-1] / layout.CONFIG, dict)["model_name"], results, split_name)
    if unwritten:
        errors = Console(stderr=True)
        for error in unwritten:
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
