"""Per-clip features computed elsewhere and stored as a table, e.g. OpenFace action units per RAVDESS clip.

The table (Parquet or CSV) has one row per clip: a key column and numeric feature columns. Each sample
is joined on one of its columns (`sample_key`, e.g. the dataset's `clip_key`); keys are compared as
strings, so a numeric key column matches a string sample column.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from emocli.core.errors import ConfigError, ExtractionError
from emocli.core.io import file_fingerprint
from emocli.core.types import Features
from emocli.features.base import Extractor, ExtractorParams


class ClipTableParams(ExtractorParams):
    path: str = Field(description="Parquet (.parquet/.pq) or CSV table, one row per clip")
    key_column: str = Field("clip", description="the table's key column")
    sample_key: str = Field("clip_key", description="the sample-table column holding each sample's key")
    columns: tuple[str, ...] | None = Field(None, description="feature columns; None: every numeric one")


class ClipTableExtractor(Extractor):
    """One vector per sample: its row of the table, restricted to `columns`."""

    name = "clip-table"
    modality = "visual"
    kind = "vector"
    Params = ClipTableParams
    params: ClipTableParams
    reads_new_media = False  # a new video has no row in the table

    def __init__(self, params: ClipTableParams | None = None, **overrides: Any):
        super().__init__(params, **overrides)
        self.path = Path(self.params.path)
        self._rows: dict[str, np.ndarray] | None = None
        self._columns: list[str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None, "_columns": None}

    @property
    def dim(self) -> int:
        return len(self.feature_names())

    def feature_names(self) -> list[str]:
        self._load()
        return list(self._columns)

    def input_fingerprint(self, sample: Mapping[str, Any]) -> str:
        try:
            table = file_fingerprint(self.path)
        except OSError as error:
            raise ExtractionError(f"cannot read feature table: {error.strerror}", path=self.path) from error
        return f"{table}:{self._key(sample)}"

    def extract(self, sample: Mapping[str, Any]) -> Features:
        rows = self._load()
        key = self._key(sample)
        if key not in rows:
            raise ExtractionError(f"no row with {self.params.key_column} = {key!r}", path=self.path)
        values = rows[key]
        if not np.isfinite(values).all():
            missing = [c for c, v in zip(self._columns, values) if not np.isfinite(v)]
            raise ExtractionError(
                f"row {self.params.key_column} = {key!r} has missing values in {', '.join(missing)}",
                path=self.path,
            )
        return Features(values)

    def _key(self, sample: Mapping[str, Any]) -> str:
        import pandas as pd

        key = sample.get(self.params.sample_key)
        if key is None or pd.isna(key):
            raise ExtractionError(
                f"sample has no {self.params.sample_key!r} to look up in the feature table",
                row=sample.get("sample_id"),
            )
        return str(key)

    def _load(self) -> dict[str, np.ndarray]:
        """Read the table once: key -> float32 row of the feature columns."""
        if self._rows is not None:
            return self._rows
        import pandas as pd

        if not self.path.is_file():
            raise ConfigError("feature table not found", path=self.path)
        try:
            if self.path.suffix.lower() in {".parquet", ".pq"}:
                table = pd.read_parquet(self.path)
            else:
                table = pd.read_csv(self.path)
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read feature table: {error}", path=self.path) from error

        key_column = self.params.key_column
        if key_column not in table.columns:
            raise ConfigError(
                f"no key column {key_column!r} (columns: {', '.join(table.columns)})", path=self.path
            )
        if self.params.columns is None:
            numeric = pd.api.types.is_numeric_dtype
            columns = [c for c in table.columns if c != key_column and numeric(table[c])]
        else:
            columns = list(self.params.columns)
            absent = [c for c in columns if c not in table.columns]
            if absent:
                raise ConfigError(f"no column(s) {', '.join(absent)}", path=self.path)
            not_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c])]
            if not_numeric:
                raise ConfigError(f"column(s) {', '.join(not_numeric)} are not numeric", path=self.path)
        if not columns:
            raise ConfigError("no numeric feature columns", path=self.path)

        keys = table[key_column].astype(str)
        duplicated = keys[keys.duplicated()]
        if len(duplicated):
            raise ConfigError(
                f"key {duplicated.iloc[0]!r} appears more than once in {key_column!r}", path=self.path
            )
        values = table[columns].to_numpy(dtype=np.float32, na_value=np.nan)
        self._columns = columns
        self._rows = dict(zip(keys, values))
        return self._rows
