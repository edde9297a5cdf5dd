"""Stages whose implementation lands in a later release; they say so instead of failing obscurely."""

from __future__ import annotations

import typer


def _later(stage: str) -> None:
    typer.echo(f"emo {stage}: not available in this release yet (see the README's roadmap).", err=True)
    raise typer.Exit(code=3)


def predict() -> None:
    """Predict emotions on raw media with a trained run (coming in a later release)."""
    _later("predict")
