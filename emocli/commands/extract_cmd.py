"""`emo extract`: dataset -> Parquet feature store (being built)."""

from __future__ import annotations


def extract() -> None:
    """Extract features of a dataset into a Parquet feature store."""
    raise SystemExit("emo extract: not wired yet")
