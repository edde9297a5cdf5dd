"""`emo predict`: raw media (video, audio, text, folders, manifests) to emotions with a trained run."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from emocli.commands.executor_options import ADDRESS, EXECUTOR, TASK_CPUS, TASK_GPUS, TASK_MEMORY, executor_choice
from emocli.commands.options import MAX_WORKERS, between, describe
from emocli.prediction.segments import MAX_WINDOW_S, MIN_WINDOW_S


def predict(
    inputs: list[Path] = typer.Argument(
        None, help="Videos, audio files, .txt/.srt/.vtt texts, folders (all media inside) or manifests (CSV/JSONL)."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="A shipped pretrained model (emo models --pretrained), a run folder or unit, or a "
        "hub id owner/name. Default: emo-default, or the run folder given as the first input."
    ),
    revision: str | None = typer.Option(None, "--revision", help="With a hub id: the branch, tag or commit."),
    text: str | None = typer.Option(
        None, "--text", help="Transcript of every media input (default: clip.srt/.vtt/.txt next to clip.mp4); "
        "without media inputs, the text to predict on."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the predictions: .csv, .json or .parquet."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw each class's probability over time as a PNG."),
    window: float = typer.Option(
        4.0, "--window", callback=between(MIN_WINDOW_S, MAX_WINDOW_S),
        help=f"Seconds per segment for media without subtitle cues ({describe(MIN_WINDOW_S, MAX_WINDOW_S)}).",
    ),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Emotions shown per segment in the table."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda."),
    workers: int = typer.Option(0, "--workers", callback=between(0, MAX_WORKERS),
                                help=f"Worker processes for CPU extractors (0: this one; at most {MAX_WORKERS})."),
    executor: str = EXECUTOR,
    address: str | None = ADDRESS,
    task_cpus: float = TASK_CPUS,
    task_gpus: float = TASK_GPUS,
    task_memory: float | None = TASK_MEMORY,
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Let a manifest name media outside its own folder (refused by default)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table and no progress display."),
) -> None:
    """Predict emotions on raw media: with the shipped model by default (`emo predict clip.mp4`), or a run.

    Speech is transcribed when the model reads text and no transcript is given (Whisper, offline; the
    text_source column says where each text came from). A run's extractors are rebuilt exactly as recorded
    in its feature_spec.json; long media are cut
    into subtitle cues or --window segments; conversation models read an input's segments as one
    dialogue. Inputs that cannot be predicted are listed and the others still are (exit code 1 then).
    Segments whose inputs lacked a face or any sound are flagged ("visual:no_face", "audio:silent").
    The output files are checked before any work; one that still cannot be written exits with code 2,
    the predictions printed.
    """
    from collections import Counter

    from rich.console import Console
    from rich.markup import escape

    from emocli.api import load_predictor
    from emocli.core.terminal import shown
    from emocli.features.runner import hub_progress_bars, progress_bar
    from emocli.prediction.outputs import check_outputs, plot_timeline, write_predictions

    where = executor_choice(executor, address, task_cpus, task_gpus, task_memory)
    inputs = list(inputs or [])
    check_outputs(output, plot, inputs=inputs)  # before the model loads and anything is extracted
    console, errors = Console(), Console(stderr=True)
    if model is None and inputs and _is_run(inputs[0]):  # `emo predict RUN clip.mp4`, as before --model
        model = str(inputs.pop(0))
    with hub_progress_bars(not quiet):  # the encoders and the transcriber load their weights in both
        predictor = load_predictor(model, device=device, workers=workers, revision=revision, executor=where)
        errors.print(escape(shown(predictor.note)), highlight=False, soft_wrap=True)
        for warning in predictor.warnings:
            errors.print(f"[yellow]warning:[/] {escape(shown(warning))}", highlight=False, soft_wrap=True)
        with progress_bar(not quiet) as progress:
            result = predictor.predict(inputs, text=text, window_s=window, progress=progress,
                                       allow_outside=allow_outside)
    printed = not quiet and not result.table.empty
    if printed:
        console.print(_table(result, top_k))
    unwritten = []
    if output is not None:
        unwritten += _write(errors, "predictions", write_predictions, result, output)
    if plot is not None and not result.table.empty:
        unwritten += _write(errors, "timeline", plot_timeline, result, plot)
    for note in result.notes:
        errors.print(f"[yellow]note:[/] {escape(shown(note))}", highlight=False, soft_wrap=True)
    if result.flagged:
        counts = Counter(flag for flags in result.table["flags"] for flag in flags)
        which = ", ".join(f"{flag} {n}" for flag, n in sorted(counts.items()))
        errors.print(f"[yellow]warning:[/] {result.flagged} segment(s) flagged ({escape(which)}): their predictions do "
                     "not rest on a face or a voice (see the flags column)", highlight=False, soft_wrap=True)
    for failure in result.failures:
        errors.print(f"[bold red]failed:[/] {escape(shown(failure))}", highlight=False, soft_wrap=True)
    predicted = result.table["input"].nunique() if not result.table.empty else 0
    if result.failures:
        errors.print(f"{len(result.failures)} failure(s); {predicted} input(s) predicted", highlight=False)
    if unwritten:
        if not printed and not result.table.empty:
            console.print(_table(result, top_k))  # the predictions are kept on the terminal at least
        for error in unwritten:
            errors.print(f"[bold red]error:[/] {escape(shown(error))}; the predictions are printed above instead",
                         highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    if result.failures:
        raise typer.Exit(code=1)


def _is_run(path: Path) -> bool:
    """A run folder or unit (it holds config.json files of trained units), not an input."""
    marks = ("config.json", "bundle.json")  # of any kind: loading says what is wrong with one that is not a file
    return path.is_dir() and (any(os.path.lexists(path / name) for name in marks)
                              or any(path.glob("seed=*/fold=*/config.json")))


def _write(errors, what: str, write, result, path: Path) -> list:
    """Write one output; [] when done, [the OutputError] when the file could not be written after all."""
    from rich.markup import escape

    from emocli.core.errors import OutputError
    from emocli.core.terminal import shown

    try:
        errors.print(f"{what}: {escape(shown(write(result, path)))}", highlight=False, soft_wrap=True)
    except OutputError as error:
        return [error]
    return []


def _table(result, top_k: int):
    import pandas as pd
    from rich.markup import escape
    from rich.table import Table

    from emocli.core.terminal import shown

    title = f"{shown(result.model_name)}: " + (
        "single-label (softmax)" if result.task == "single_label" else f"multi-label (sigmoid > {result.threshold})"
    )
    table = Table(title=title, title_justify="left")
    flagged = result.flagged > 0
    columns = ("input", "segment", "text", "prediction", f"top {top_k}", *(("flags",) if flagged else ()))
    for column in columns:
        table.add_column(column, overflow="fold" if column == "input" else "ellipsis", no_wrap=column == "flags")
    probabilities = result.probabilities
    for row, probs in zip(result.table.itertuples(index=False), probabilities):
        if pd.notna(row.start_s) and pd.notna(row.end_s):
            where = f"{row.segment}: {row.start_s:.1f}-{row.end_s:.1f} s"
        else:
            where = str(row.segment)
        prediction = row.label if result.task == "single_label" else (", ".join(row.labels) or "(none)")
        order = probs.argsort()[::-1][:top_k]
        best = " · ".join(f"{shown(result.classes[k])} {probs[k]:.2f}" for k in order)
        flags = (", ".join(row.flags),) if flagged else ()
        style = "yellow" if flagged and row.flags else None  # a prediction from no face or no sound
        # shown: a transcript or subtitle may hold escape sequences (clear the screen, set the title)
        table.add_row(escape(shown(row.input)), where, escape(shown(row.text or "")[:60]),
                      f"[bold]{escape(shown(prediction))}[/]", best, *flags, style=style)
    return table
