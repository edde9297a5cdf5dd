"""`emo extract`: dataset -> Parquet feature store (docs/FEATURE_STORE.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from emocli.commands.executor_options import ADDRESS, EXECUTOR, TASK_CPUS, TASK_GPUS, TASK_MEMORY, executor_choice
from emocli.commands.options import MAX_WORKERS, between


def extract(
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset adapter (see `emo datasets`)."),
    root: Path | None = typer.Option(
        None, "--root", help="The dataset's folder (or manifest file); default: $EMO_<NAME>_ROOT, else the data home."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Feature store directory (created or updated); default: stores/<dataset>."
    ),
    audio: list[str] | None = typer.Option(
        None, "--audio", help="Audio extractor: a preset, a preset .toml file or an extractor name. Repeatable."
    ),
    text: list[str] | None = typer.Option(None, "--text", help="Text extractor (as --audio). Repeatable."),
    visual: list[str] | None = typer.Option(None, "--visual", help="Visual extractor (as --audio). Repeatable."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a parameter: NAME.PARAM=VALUE, e.g. mfcc.n_mfcc=20 (VALUE read as TOML)."
    ),
    options: list[str] | None = typer.Option(
        None, "--option", help="Dataset adapter option KEY=VALUE (see the adapter's Options). Repeatable."
    ),
    download: bool = typer.Option(
        True, "--download/--no-download", help="Download a public dataset that is missing (saying what and how big)."
    ),
    workers: int = typer.Option(2, "--workers", "-j", callback=between(0, MAX_WORKERS),
                                help=f"Worker processes for CPU extractors; 0: in-process (--executor local; at most "
                                f"{MAX_WORKERS})."),
    executor: str = EXECUTOR,
    address: str | None = ADDRESS,
    task_cpus: float = TASK_CPUS,
    task_gpus: float = TASK_GPUS,
    task_memory: float | None = TASK_MEMORY,
    shard: str | None = typer.Option(None, "--shard", help="Extract only slice K of N (K/N, 1-based), by sample_id hash."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N samples (of the shard): for trials."),
    retry_failures: bool = typer.Option(False, "--retry-failures", help="Retry samples that failed before on the same input."),
    transcribe: bool = typer.Option(False, "--transcribe", help="Write the text of samples that have audio and no "
                                    "text with Whisper (--transcriber), cached in the store, before extracting."),
    transcriber: str = typer.Option("whisper-base", "--transcriber", help="The Whisper model of --transcribe: "
                                    "whisper-base (multilingual) or whisper-tiny.en (offline), or a hub id."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    preset: str | None = typer.Option(None, "--preset", help="With --show: the preset to print."),
    show: bool = typer.Option(False, "--show", help="Print --preset's TOML (or list the presets) and exit."),
) -> None:
    """Extract features of a dataset into a Parquet feature store.

    Runs again do only what is missing: features are keyed on (input file or text, extractor, parameters,
    library versions). Inputs that fail are listed and do not stop the run.

    Without --audio/--text/--visual the dataset's default presets are used (see `emo datasets`).
    Without --root its folder comes from the data home, downloaded there first when the dataset is public.

    Example: emo extract --dataset meld

    Spelled out: emo extract --dataset ravdess --root data/ravdess --audio compare2016 --audio mfcc-cfnsr
    --visual openface-au --out stores/ravdess

    On a Ray cluster: emo extract --dataset ravdess --audio whisper-base --executor ray --address auto
    """
    if show:
        _show_presets(preset)
        return
    if preset is not None:
        raise typer.BadParameter("--preset only goes with --show; choose extractors with --audio/--text/--visual")
    if dataset is None:
        raise typer.BadParameter("--dataset is required (see `emo datasets`)", param_hint="--dataset")
    where = executor_choice(executor, address, task_cpus, task_gpus, task_memory)

    from rich.console import Console

    from emocli.api import extract as run_extraction

    report, sample_set = run_extraction(
        dataset, root, out, audio=audio or [], text=text or [], visual=visual or [], settings=overrides or [],
        options=options or [], download=download, workers=workers, shard=shard, limit=limit,
        retry_failures=retry_failures, transcribe=transcriber if transcribe else None, progress=not quiet,
        executor=where,
    )
    _print_report(report, sample_set, Console())


def _show_presets(preset: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emocli.features.presets import extraction_presets, preset_text, read_preset

    if preset is not None:
        typer.echo(preset_text(preset), nl=False)  # plain: meant to be redirected into a file and edited
        return
    table = Table(title="extraction presets (emo extract --preset NAME --show)")
    for column in ("preset", "extractor", "description"):
        table.add_column(column)
    for name in extraction_presets():
        loaded = read_preset(name)
        table.add_row(escape(name), escape(loaded.extractor), escape(loaded.description))  # "[tokens, 50]" is no tag
    Console().print(table)


def _print_report(report, sample_set, console) -> None:
    import pandas as pd
    from rich.markup import escape
    from rich.table import Table

    from emocli.core.terminal import shown

    table = Table(title=f"{report.store}" + (f" (shard {report.shard})" if report.shard else ""))
    for column in ("feature set", "extracted", "cached", "failed", "seconds"):
        table.add_column(column, justify="left" if column == "feature set" else "right")
    for fs in report.feature_sets:
        failed = str(fs.failed) + (f" (+{fs.known_failures} before)" if fs.known_failures else "")
        table.add_row(fs.label, str(fs.extracted), str(fs.cached), failed, f"{fs.seconds:.1f}")
    console.print(table)

    samples = sample_set.table
    groupings = []
    for column in ("split", "fold"):
        if samples[column].notna().any():
            counts = samples[column].value_counts(dropna=False).sort_index()
            groupings.append(f"{column} " + ", ".join(f"{'NA' if pd.isna(k) else k}: {n}" for k, n in counts.items()))
    described = f" ({'; '.join(groupings)})" if groupings else ""
    console.print(f"{sample_set.dataset}: {len(samples)} samples{described}", highlight=False)

    for fs in report.feature_sets:
        for failure in fs.failures[:3]:
            console.print(f"[red]failed[/] {escape(shown(failure))}", highlight=False, soft_wrap=True)
        if len(fs.failures) > 3:
            console.print(f"... {len(fs.failures) - 3} more failures of {fs.label}", highlight=False)
    if report.n_failed:
        console.print(
            f"[bold red]{report.n_failed} failures[/]: `emo store failures {report.store} NAME` lists them "
            "(errors and tracebacks); fix the inputs and run again, or pass --retry-failures.",
            highlight=False,
        )
    for fs in report.feature_sets:
        console.print(f"{fs.label}: {fs.summary()}", highlight=False)
    for note in report.revision_notes():
        console.print(f"[yellow]note:[/] {report.store}: {note}", highlight=False, soft_wrap=True)
