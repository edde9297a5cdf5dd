"""`emo baseline`: the logistic-regression floor on the same features, splits and folds as `emo train`."""

from __future__ import annotations

from pathlib import Path

import typer

from emocli.commands.train_cmd import _choices, _int_list


def baseline(
    features: Path | None = typer.Option(
        None, "--features", "-f", help="Feature store written by `emo extract` (default: the one under stores/ that fits)."
    ),
    folds: str | None = typer.Option(
        None, "--folds", help="'all' or comma-separated folds: fold k is the test set. Default: the dataset's split."
    ),
    modalities: str | None = typer.Option(None, "--modalities", help="Comma-separated subset, e.g. audio,visual."),
    feature: list[str] = typer.Option(
        [], "--feature", help="modality=<feature set name | extractor | extraction preset>, when several fit."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the carved validation split (as `emo train`'s)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the results as JSON here."),
) -> None:
    """Logistic regression (standardised, C chosen on validation) as the floor a model should clear."""
    import json

    from rich.console import Console
    from rich.table import Table

    from emocli.api import find_store
    from emocli.core.io import check_writable, write_text
    from emocli.features.store import FeatureStore
    from emocli.training.baseline import LinearReader, all_folds, logistic_regression_floor

    if out is not None:
        check_writable(out)  # before the fits, not after them
    chosen_modalities = [m.strip() for m in modalities.split(",")] if modalities else None
    if features is None:  # as `emo train` does
        features = find_store(LinearReader(), modalities=chosen_modalities, feature=_choices(feature))
    store = FeatureStore(features)
    fold_list = all_folds(store) if folds == "all" else _int_list(folds, "--folds")
    result = logistic_regression_floor(
        store,
        modalities=chosen_modalities,
        choices=_choices(feature),
        folds=fold_list,
        seed=seed,
    )
    table = Table(title=f"logistic-regression floor ({result['dim']} features: {', '.join(result['inputs'].values())})")
    for column in ("unit", "C", "accuracy", "weighted F1", "UA"):
        table.add_column(column)
    for unit in result["units"]:
        test = unit["test"]
        label = "split" if unit["fold"] is None else f"fold {unit['fold']}"
        table.add_row(label, f"{unit['C']:g}", f"{test['accuracy']:.4f}", f"{test['weighted_f1']:.4f}",
                      f"{test['unweighted_accuracy']:.4f}")
    mean, std = result["summary"]["mean"], result["summary"]["std"]
    table.add_row("mean ± std", "", *(f"{mean[k]:.4f} ± {std[k]:.4f}" for k in ("accuracy", "weighted_f1", "unweighted_accuracy")))
    Console().print(table)
    if out is not None:
        write_text(out, json.dumps(result, indent=2) + "\n")  # an OutputError after the table: the results are shown
