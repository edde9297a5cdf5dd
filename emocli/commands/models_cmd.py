"""`emo models`: the registry as a table, with parameter counts of the reference configurations."""

from __future__ import annotations

import typer

COLUMNS = ("model", "paper", "task", "unit", "modalities", "inputs", "spiking", "reference parameters")


def registry_rows(count: bool) -> list[tuple[str, ...]]:
    """One row per registry model. By default the original models' published counts (which the reference
    configurations reproduce: tested), read from the registry's catalog without importing torch; `count`
    builds each reference configuration on torch's meta device (no weights allocated) and counts it."""
    from emocli.models.registry import catalog

    rows = []
    for info in catalog():
        params = []
        for reference, expected in info["references"].items():
            if count:
                from emocli.models.base import count_parameters_of
                from emocli.models.registry import get_model

                entry = get_model(info["name"])
                params.append(f"{reference}: {count_parameters_of(entry.model_class, entry.config(reference)):,}")
            elif expected is not None:
                approx = "≈" if info["reference_tolerance"] else ""
                params.append(f"{reference}: {approx}{expected:,}")
        rows.append(
            (
                info["name"],
                f"{info['title']} ({info['paper']})",
                info["task"],
                info["input_unit"],
                ", ".join(info["modalities"]),
                ", ".join(info["input_kinds"]),
                "yes" if info["spiking"] else "no",
                "; ".join(params),
            )
        )
    return rows


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def models(
    count: bool = typer.Option(False, help="Build each reference configuration (on the meta device) to count its parameters."),
    markdown: bool = typer.Option(False, help="Print a Markdown table (the one in the README)."),
    pretrained: bool = typer.Option(False, "--pretrained", help="List the trained models shipped with emo instead."),
) -> None:
    """List the registry models: task, modalities, input kinds, and parameter counts."""
    if pretrained:
        _pretrained()
        return
    rows = registry_rows(count)
    if markdown:
        typer.echo(markdown_table(rows))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # pipes and logs: no terminal width to respect, keep rows on one line
        console = Console(width=110)
    table = Table(title="emo model registry")
    compact = [column for column in COLUMNS if column != "paper"]  # titles are listed below the table
    for column in compact:
        table.add_column("params" if column == "reference parameters" else column)
    for row in rows:
        table.add_row(*(value for column, value in zip(COLUMNS, row) if column != "paper"))
    console.print(table)
    for row in rows:
        console.print(f"[bold]{row[0]}[/]: {row[1]}", highlight=False)


def _pretrained() -> None:
    """The models shipped inside the package: name, what it is, where its card is."""
    import json

    from rich.console import Console
    from rich.table import Table

    from emocli.runs.hub import pretrained_folder, pretrained_names

    table = Table(title="pretrained models (emo predict --model NAME)")
    for column in ("name", "what", "card"):
        table.add_column(column)
    for name in pretrained_names():
        folder = pretrained_folder(name)
        spec = folder / "bundle.json"
        what = json.loads(spec.read_text())["description"].split(".")[0] if spec.is_file() else "a trained run"
        table.add_row(name, what, str(folder / "README.md"))
    Console().print(table)
