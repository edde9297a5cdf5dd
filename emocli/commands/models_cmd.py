"""`emo models`: the registry as a table, with parameter counts of the reference configurations."""

from __future__ import annotations

import typer


def models(
    counts: bool = typer.Option(True, help="Build each reference configuration to count its parameters."),
) -> None:
    """List the registry models: task, modalities, input kinds, and parameter counts."""
    from rich.console import Console
    from rich.table import Table

    from emocli.registry import MODELS

    table = Table(title="emo model registry")
    for column in ("model", "title", "task", "unit", "modalities", "inputs", "spiking", "parameters"):
        table.add_column(column)
    for entry in MODELS.values():
        params = []
        for reference, expected in entry.references.items():
            if counts:
                from emocli.models.base import count_parameters

                n = count_parameters(entry.build(entry.config(reference)))
                params.append(f"{reference}: {n:,}")
            else:
                params.append(f"{reference}: {expected:,} (paper)")
        table.add_row(
            entry.name,
            f"{entry.title} ({entry.paper})",
            entry.task,
            entry.input_unit,
            ",".join(entry.modalities),
            ",".join(entry.input_kinds),
            "yes" if entry.spiking else "no",
            "\n".join(params),
        )
    Console().print(table)
