"""The canonical table of samples that every dataset adapter produces.

One row per sample (an utterance, a clip, a segment). Columns, in this order:

| column       | type        | meaning                                                                  |
|--------------|-------------|--------------------------------------------------------------------------|
| sample_id    | str         | unique within the dataset; stable across machines (never a path)         |
| dialogue_id  | str / NA    | conversation the sample belongs to (conversation datasets)                |
| position     | Int64 / NA  | 0-based position of the utterance in its dialogue                         |
| speaker      | str / NA    | speaker or actor id; actor-/speaker-independent folds group on it         |
| split        | str / NA    | "train" / "valid" / "test" of the dataset's standard protocol             |
| fold         | Int64 / NA  | cross-validation fold in which the sample is held out (NA: never held out)|
| label        | str / NA    | single-label target, one of LabelMap.names                                |
| labels       | list[str]   | multi-label targets (empty list: no emotion); [] for single-label data    |
| text         | str / NA    | transcript of the utterance                                               |
| audio_path   | str / NA    | absolute path of the audio (or audio-bearing video) file                  |
| video_path   | str / NA    | absolute path of the video file                                           |
| start_s      | float / NA  | segment start within the media, seconds (NA: whole file)                  |
| end_s        | float / NA  | segment end within the media, seconds (NA: whole file)                    |

Adapters may add dataset-specific columns after these (e.g. RAVDESS's intensity, MELD's sentiment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from emocli.core.errors import DatasetError
from emocli.core.types import FeatureKind, LabelMap

SAMPLE_COLUMNS: dict[str, str] = {
    "sample_id": "string",
    "dialogue_id": "string",
    "position": "Int64",
    "speaker": "string",
    "split": "string",
    "fold": "Int64",
    "label": "string",
    "labels": "object",
    "text": "string",
    "audio_path": "string",
    "video_path": "string",
    "start_s": "Float64",
    "end_s": "Float64",
}


@dataclass
class PrecomputedFeatures:
    """Features that ship with a dataset (MOSEI's aligned GloVe/COVAREP/FACET, NEMu's arrays).

    `values` maps sample_id -> emocli.core.types.Features. The feature store writes them as a feature
    set named `<modality>__precomputed-<name>__<fingerprint of source>`; `input_name` is the model input
    they feed (defaults to the modality; NEMu has two text inputs, "comments" and "lyrics").
    """

    name: str
    modality: str
    kind: FeatureKind
    dim: int
    values: dict
    source: dict  # provenance: file, fingerprint, description
    input_name: str | None = None


@dataclass
class SampleSet:
    """A dataset as a table of samples plus what is needed to read it."""

    dataset: str
    root: Path
    table: pd.DataFrame
    labels: LabelMap
    protocols: dict[str, str] = field(default_factory=dict)  # protocol name -> description
    options: dict = field(default_factory=dict)  # the adapter options used, for provenance
    precomputed: list[PrecomputedFeatures] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know (fallbacks, mismatches)

    def __post_init__(self) -> None:
        self.table = normalize_table(self.table, source=self.root)

    def describe(self) -> dict:
        """Provenance record: what was read and how."""
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "n_samples": int(len(self.table)),
            "labels": self.labels.to_json(),
            "protocols": self.protocols,
            "options": self.options,
            **({"notes": list(self.notes)} if self.notes else {}),
        }

    def describe_json(self) -> str:
        return json.dumps(self.describe(), sort_keys=True)


def normalize_table(table: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Give a table the canonical columns (missing ones as NA) and dtypes, canonical columns first."""
    table = table.copy()
    for column, dtype in SAMPLE_COLUMNS.items():
        if column not in table.columns:
            table[column] = [[] for _ in range(len(table))] if column == "labels" else pd.NA
        if column != "labels":
            table[column] = table[column].astype(dtype)
    if table["sample_id"].isna().any():
        raise DatasetError("some samples have no sample_id", path=source)
    duplicated = table["sample_id"][table["sample_id"].duplicated()]
    if len(duplicated):
        raise DatasetError(f"duplicate sample_id {duplicated.iloc[0]!r}", path=source)
    extras = [c for c in table.columns if c not in SAMPLE_COLUMNS]
    return table[list(SAMPLE_COLUMNS) + extras].reset_index(drop=True)
