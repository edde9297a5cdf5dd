"""`emo predict`: raw media (video, audio, text, folders, manifests) to emotions with a trained run."""

from __future__ import annotations

from pathlib import Path

import typer


def predict(
    run: Path = typer.Argument(..., help="A run directory (its best unit is used) or one seed=S/fold=K unit."),
    inputs: list[Path] = typer.Argument(
        None, help="Videos, audio files, .txt/.srt/.vtt texts, folders (all media inside) or manifests (CSV/JSONL)."
    ),
    text: str | None = typer.Option(
        None, "--text", help="Transcript of every media input (default: clip.srt/.vtt/.txt next to clip.mp4); "
        "without media inputs, the text to predict on."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the predictions: .csv, .json or .parquet."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw each class's probability over time as a PNG."),
    window: float = typer.Option(4.0, "--window", help="Seconds per segment for media without subtitle cues."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Emotions shown per segment in the table."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    workers: int = typer.Option(0, "--workers", min=0, help="Worker processes for CPU extractors (0: this one)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table and no progress display."),
) -> None:
    """Predict emotions on raw media with a trained run.

    The run's extractors are rebuilt exactly as recorded in its feature_spec.json; long media are cut
    into subtitle cues or --window segments; conversation models read an input's segments as one
    dialogue. Inputs that cannot be predicted are listed and the others still are (exit code 1 then).
    """
    from rich.console import Console

    from emocli.features.runner import progress_bar
    from emocli.predict.outputs import plot_timeline, write_predictions
    from emocli.predict.predictor import Predictor

    console, errors = Console(), Console(stderr=True)
    predictor = Predictor(run, device=device, workers=workers)
    errors.print(predictor.note, highlight=False, soft_wrap=True)
    for warning in predictor.warnings:
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    with progress_bar(not quiet) as progress:
        result = predictor.predict(inputs or [], text=text, window_s=window, progress=progress)
    if not quiet and not result.table.empty:
        console.print(_table(result, top_k))
    if output is not None:
        errors.print(f"predictions: {write_predictions(result, output)}", highlight=False, soft_wrap=True)
    if plot is not None and not result.table.empty:
        errors.print(f"timeline: {plot_timeline(result, plot)}", highlight=False, soft_wrap=True)
    for failure in result.failures:
        errors.print(f"[bold red]failed:[/] {failure}", highlight=False, soft_wrap=True)
    if result.failures:
        predicted = result.table["input"].nunique() if not result.table.empty else 0
        errors.print(f"{len(result.failures)} failure(s); {predicted} input(s) predicted", highlight=False)
        raise typer.Exit(code=1)


def _table(result, top_k: int):
    import pandas as pd
    from rich.table import Table

    title = f"{result.model_name}: " + (
        "single-label (softmax)" if result.task == "single_label" else f"multi-label (sigmoid > {result.threshold})"
    )
    table = Table(title=title, title_justify="left")
    for column in ("input", "segment", "text", "prediction", f"top {top_k}"):
        table.add_column(column, overflow="fold" if column == "input" else "ellipsis")
    probabilities = result.probabilities
    for row, probs in zip(result.table.itertuples(index=False), probabilities):
        if pd.notna(row.start_s) and pd.notna(row.end_s):
            where = f"{row.segment}: {row.start_s:.1f}-{row.end_s:.1f} s"
        else:
            where = str(row.segment)
        prediction = row.label if result.task == "single_label" else (", ".join(row.labels) or "(none)")
        order = probs.argsort()[::-1][:top_k]
        best = " · ".join(f"{result.classes[k]} {probs[k]:.2f}" for k in order)
        table.add_row(row.input, where, (row.text or "")[:60], f"[bold]{prediction}[/]", best)
    return table
