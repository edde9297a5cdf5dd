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
) -> None:
    """Combine trained runs into one model: `emo predict --model OUT clip.mp4` runs every head on the same
    segments and averages their probabilities in the shared labels. emo's default model is built this way
    (pipelines/emo-default.json)."""
    from rich.console import Console

    from emocli.core.errors import ConfigError
    from emocli.prediction.bundle import assemble

    given = {}
    for pair in heads:
        name, sep, run = pair.partition("=")
        if not sep or not name or not run:
            raise ConfigError(f"--head expects HEAD=RUN, got {pair!r}")
        given[name.strip()] = Path(run.strip())
    Console(stderr=True).print(f"bundle: {assemble(spec, given, out, overwrite=overwrite)}", highlight=False,
                               soft_wrap=True)
