"""A run's results: every unit's test metrics and mean ± std over them, as results.json, results.csv, the
run's model card and a printed table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from emocli.core.io import write_text, write_with
from emocli.runs import layout
from emocli.runs.card import render_model_card
from emocli.runs.evaluation import HEADLINE, PAPER_WARNING, scalars


def fold_label(fold: int | None) -> str:
    return "none" if fold is None else str(fold)


def collect_results(root: Path, card: dict[str, Any], folds: list[int | None],
                    show: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """results.json / results.csv / README.md at the run root, from each unit's test_metrics.json.

    `card` describes the run (model, dataset, task, protocol, selection, seeds: training's `card_info`).
    `show` sees the results before they are written, so a full disk does not hide them."""
    import pandas as pd

    from emocli.runs.metrics import summarize

    units, metrics, scores = [], [], []
    for seed in card["seeds"]:
        for fold in folds:
            result = layout.read_json(layout.unit_dir(root, seed, fold) / layout.TEST_METRICS)
            score = (result.get("selection_score") or {}).get("value")
            units.append({"seed": seed, "fold": fold, "best_epoch": result.get("best_epoch"),
                          "selection_score": score, **scalars(result["metrics"])})
            metrics.append(result["metrics"])
            scores.append(score)
    summary = summarize(metrics)
    if None not in scores:  # absent when a unit kept its last epoch (no validation rows)
        spread = summarize([{"selection_score": score} for score in scores])
        summary["mean"]["selection_score"] = spread["mean"]["selection_score"]
        summary["std"]["selection_score"] = spread["std"]["selection_score"]
    selection = card["selection"]
    results: dict[str, Any] = {
        "model": card["model"]["name"],
        "dataset": card["dataset"]["name"],
        "task": card["task"],
        "protocol": card["protocol"],
        "selection": selection,
        "units": units,
        "summary": summary,
    }
    if card["protocol"] == "paper":
        results["warning"] = PAPER_WARNING.format(split=selection["split"], metric=selection["metric"])
    table = pd.DataFrame(units).astype({"fold": "Int64", "best_epoch": "Int64"})  # 0, not 0.0, beside the NA rows
    columns = [c for c in table.columns if c not in ("seed", "fold", "best_epoch")]
    mean = {"seed": "mean", **{c: summary["mean"].get(c) for c in columns}}
    std = {"seed": "std", **{c: summary["std"].get(c) for c in columns}}
    table = pd.concat([table.astype({"seed": object}), pd.DataFrame([mean, std])], ignore_index=True)
    table.insert(0, "protocol", card["protocol"])
    if show is not None:
        show(results)
    write_with(root / layout.RESULTS_CSV, lambda temporary: table.to_csv(temporary, index=False))
    write_text(root / "README.md", render_model_card({**card, "name": root.name, "results": metrics}))
    layout.write_json(root / layout.RESULTS_JSON, results)  # last: a run with results.json is complete
    return results


def print_results(console: Any, model_name: str, results: dict[str, Any], split: str = "test") -> None:
    from rich.table import Table

    headline = HEADLINE[results["task"]]
    paper = results.get("protocol") == "paper"
    title = f"{model_name} on {results['dataset']}: {split}"
    if paper:
        title = f"[bold red]{results['warning']}[/]\n" + title
    table = Table(title=title, title_justify="left")
    # Training results carry the selection split's score of each unit's best weights (emo evaluate's do not).
    selection = results.get("selection") if "selection_score" in results["summary"]["mean"] else None
    columns = ("selection_score", *headline) if selection else headline
    for column in ("seed", "fold", "best epoch"):
        table.add_column(column, justify="right")
    if selection:
        table.add_column(f"{selection['split']} {selection['metric']}", justify="right", style="dim")
    for column in headline:
        table.add_column(f"{split} {column}" if selection else column, justify="right")
    for unit in results["units"]:
        table.add_row(str(unit["seed"]), fold_label(unit["fold"]), str(unit["best_epoch"]),
                      *(f"{unit.get(k, float('nan')):.4f}" for k in columns))
    summary = results["summary"]
    if summary["n"] > 1:
        table.add_row("mean ± std", "", "", *(f"{summary['mean'][k]:.4f} ± {summary['std'][k]:.4f}" for k in columns),
                      style="bold")
    console.print(table)
