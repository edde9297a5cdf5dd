"""`emo store`: look inside a feature store, list its failures, merge shards."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Inspect feature stores and merge the stores of shards.", no_args_is_help=True)


@app.command("info")
def info(
    store: Path = typer.Argument(..., help="Feature store directory."),
    name: str | None = typer.Argument(None, help="A feature set: print how it was made (its spec.json)."),
) -> None:
    """List a store's feature sets, or show how one was made."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emocli.core.terminal import shown
    from emocli.features.presets import feature_set_label, preset_of
    from emocli.features.store import FeatureStore

    feature_store = FeatureStore(store)
    console = Console()
    if name is not None:
        console.print_json(json.dumps(feature_store.info(name).spec))
        return
    dataset = feature_store.dataset()
    console.print(f"{dataset.get('dataset')}: {dataset.get('n_samples')} samples from {dataset.get('root')}", highlight=False)
    table = Table()
    for column in ("feature set", "kind", "dim", "rows", "failures"):
        table.add_column(column, justify="left" if column in ("feature set", "kind") else "right")
    root = Path(dataset["root"]) if dataset.get("root") else None
    for fs in feature_store.feature_sets():
        label = feature_set_label(fs.name, preset_of(fs.extractor, fs.spec["extractor"].get("params", {}), root))
        table.add_row(label, fs.kind, str(fs.dim), str(fs.n_rows), str(fs.n_failures))
    console.print(table)
    for problem in feature_store.unreadable():  # a stray folder does not hide the others
        Console(stderr=True).print(f"[yellow]skipped:[/] {escape(shown(problem))}", highlight=False, soft_wrap=True)


@app.command("failures")
def failures(
    store: Path = typer.Argument(..., help="Feature store directory."),
    name: str = typer.Argument(..., help="Feature set."),
    traceback: bool = typer.Option(False, "--traceback", help="Show each failure's traceback tail."),
) -> None:
    """List the samples whose extraction failed, with the file and the error."""
    from rich.console import Console
    from rich.markup import escape

    from emocli.core.terminal import shown
    from emocli.features.store import FeatureStore

    console = Console()
    table = FeatureStore(store).failures(name)
    for row in table.itertuples():
        # a sample id, a path or a library's message is data: shown, never obeyed (markup, escape sequences)
        where = f" ({shown(row.path)})" if isinstance(row.path, str) else ""
        cause = f"{where}: {shown(row.error_type)}: {shown(row.message)}"
        console.print(f"[bold]{escape(shown(row.sample_id))}[/]{escape(cause)}", highlight=False, soft_wrap=True)
        if traceback:
            console.print("\n".join(shown(part) for part in str(row.traceback).splitlines()), highlight=False,
                          markup=False)
    console.print(f"{len(table)} failures", highlight=False)


@app.command("merge")
def merge(
    target: Path = typer.Argument(..., help="Store to merge into (created if absent)."),
    sources: list[Path] = typer.Argument(..., help="Stores to merge from, e.g. those of `emo extract --shard K/N`."),
) -> None:
    """Merge the feature sets of several stores of one dataset (e.g. shards) into one store."""
    from rich.console import Console

    from emocli.features.store import FeatureStore

    merged = FeatureStore(target)
    merged.merge(sources)
    for fs in merged.feature_sets():
        Console().print(f"{fs.name}: {fs.n_rows} rows, {fs.n_failures} failures", highlight=False)
