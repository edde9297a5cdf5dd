"""`emo bundle`: trained units as one model whose heads read different modalities of the same media."""

from __future__ import annotations

from pathlib import Path

import typer


def bundle(
    spec: Path = typer.Argument(..., help="The bundle spec: name, shared labels, each head's class mapping (JSON)."),
    heads: list[str] = typer.Option(..., "--head", help="HEAD=RUN: the trained run (or unit) of one head. Repeatable."),
    out: Path = typer.Option(..., "--out", "-o", help="The bundle folder to write: new or empty (see --overwrite)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --out folder (never the folder of the spec or of a head's run)."
    ),
    held_out: list[str] = typer.Option([], "--held-out", help="HEAD=PREDICTIONS.parquet: a head's held-out "
                                       "predictions (`emo evaluate --split valid`, `emo cross-corpus`); given for "
                                       "every head, the heads are calibrated and their product weighed on them."),
    cross_corpus: list[str] = typer.Option([], "--cross-corpus", help="HEAD=FOLDER: a head's `emo cross-corpus` "
                                           "results, shown in the card (repeatable, also for one head)."),
) -> None:
    """Combine trained runs into one model: `emo predict --model OUT clip.mp4` runs every head on the same
    segments and combines their probabilities in the shared labels (calibrated and weighed with --held-out). emo's default model is built this way
    (pipelines/emo-default.json)."""
    from rich.console import Console

    from emocli.core.errors import ConfigError
    from emocli.prediction.bundle import assemble

    def pairs(values: list[str], option: str, what: str) -> dict[str, Path]:
        given = {}
        for pair in values:
            name, sep, path = pair.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ConfigError(f"{option} expects HEAD={what}, got {pair!r}")
            given[name.strip()] = Path(path.strip())
        return given

    tables: dict[str, list[Path]] = {}
    for pair in cross_corpus:
        name, folder = next(iter(pairs([pair], "--cross-corpus", "FOLDER").items()))
        tables.setdefault(name, []).append(folder)
    folder = assemble(spec, pairs(heads, "--head", "RUN"), out, held_out=pairs(held_out, "--held-out", "FILE"),
                      cross_corpus=tables, overwrite=overwrite)
    Console(stderr=True).print(f"bundle: {folder}", highlight=False, soft_wrap=True)
