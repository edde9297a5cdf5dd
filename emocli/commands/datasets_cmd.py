"""`emo datasets`: the adapters and what each needs on disk."""

from __future__ import annotations


def datasets() -> None:
    """List the dataset adapters and the files each one reads."""
    from rich.console import Console
    from rich.table import Table

    from emocli.datasets import ADAPTERS, adapter_class

    table = Table(title="emo dataset adapters")
    for column in ("dataset", "what", "needs on disk"):
        table.add_column(column)
    for name in ADAPTERS:
        adapter = adapter_class(name)
        table.add_row(name, adapter.summary, adapter.needs_on_disk)
    Console().print(table)
