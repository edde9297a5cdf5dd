"""A store's sample index (samples.parquet) grows by additions; it is never replaced.

Extracting a second sample set into a store (another manifest, another RAVDESS channel) adds its samples
to the index; a sample set the index already holds adds nothing. Each addition is recorded: when, how
many samples it brought, and the adapter's `SampleSet.describe()` of it; each row says which addition
brought it (the `_addition` column, which `FeatureStore.samples()` leaves out). A sample_id that the
index holds with other values (another label, another file) is an error naming the samples and the
values, never a silent overwrite: the features stored for that id were made from what the index says.
The one exception is the protocol of the same source edited: re-reading the folder or manifest that
brought a sample with another `split` or `fold` (a split column added to a manifest) revises those
columns, which no extractor reads, and records the revision (`revisions` in the dataset description).

The store's label map is the union: the classes of the first addition in their order, then classes that
later additions bring, in theirs, so class indices of runs trained on the store stay valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from emocli.core.errors import ConfigError
from emocli.core.samples import SAMPLE_COLUMNS, SampleSet

ADDITION_COLUMN = "_addition"
CONFLICTS_SHOWN = 5
# What a source may revise about its own samples: the protocol, which no extractor reads.
REVISABLE = ("split", "fold")


@dataclass
class SampleIndex:
    """The rows of samples.parquet (with ADDITION_COLUMN), the dataset description and the additions."""

    table: pd.DataFrame
    dataset: dict[str, Any]  # SampleSet.describe() of the first addition, with the union's labels and counts
    additions: list[dict[str, Any]]  # {"time", "n_added", "dataset": describe()}
    revised: dict[str, int] = field(default_factory=dict)  # the last `add`'s revisions: column -> samples

    @classmethod
    def first(cls, table: pd.DataFrame, described: dict[str, Any], when: str | None = None) -> SampleIndex:
        """An index of one addition: a sample table and its SampleSet.describe()."""
        return cls(table.assign(**{ADDITION_COLUMN: 0}), described, [_addition(described, len(table), when)])

    @classmethod
    def of(cls, sample_set: SampleSet) -> SampleIndex:
        return cls.first(sample_set.table, sample_set.describe())

    def add(self, table: pd.DataFrame, described: dict[str, Any], source: str, when: str | None = None) -> int:
        """Add the samples of `table` (described by a SampleSet.describe()) the index lacks; return how many.
        ConfigError (naming `source`) for another dataset, another task, or samples the index holds with
        other values."""
        held_name, new_name = self.dataset.get("dataset"), described.get("dataset")
        if held_name != new_name:
            raise ConfigError(f"this store holds dataset {held_name!r}, not {new_name!r}", path=source)
        labels = _union_labels(self.dataset.get("labels"), described.get("labels"), source)
        new = table.drop(columns=ADDITION_COLUMN, errors="ignore")
        held_ids = set(self.table["sample_id"].tolist())
        shared = pd.Series([sample_id in held_ids for sample_id in new["sample_id"].tolist()], index=new.index)
        same_source = [i for i, a in enumerate(self.additions) if a.get("dataset", {}).get("root") == described.get("root")]
        revisions = _check_agreement(self.table, new[shared], source, same_source)
        self.revised = self._revise(revisions, when)
        added = new[~shared].assign(**{ADDITION_COLUMN: len(self.additions)})
        if added.empty and labels == self.dataset.get("labels"):
            return sum(self.revised.values())
        if not added.empty:
            self.table = _concat(self.table, added)
            self.additions.append(_addition(described, len(added), when))
        self.dataset = {**self.dataset, "labels": labels, "n_samples": int(len(self.table))}
        self.dataset["protocols"] = {**described.get("protocols", {}), **self.dataset.get("protocols", {})}
        return len(added) + sum(self.revised.values())

    def _revise(self, revisions: list[tuple[str, str, Any]], when: str | None) -> dict[str, int]:
        """Apply (sample_id, column, value) revisions; record them; column -> how many samples."""
        counts: dict[str, int] = {}
        if not revisions:
            return counts
        position = {sample_id: i for i, sample_id in enumerate(self.table["sample_id"].tolist())}
        for sample_id, column, value in revisions:
            self.table.loc[self.table.index[position[sample_id]], column] = pd.NA if value is None else value
            counts[column] = counts.get(column, 0) + 1
        record = {"time": when or datetime.now(timezone.utc).isoformat(timespec="seconds"), "samples": counts}
        self.dataset = {**self.dataset, "revisions": [*self.dataset.get("revisions", []), record]}
        return counts

    def metadata(self) -> dict[str, str]:
        return {"dataset": json.dumps(self.dataset, sort_keys=True), "additions": json.dumps(self.additions)}


def _addition(described: dict[str, Any], n_added: int, when: str | None) -> dict[str, Any]:
    return {
        "time": when or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_added": int(n_added),
        "dataset": described,
    }


def _union_labels(held: dict | None, new: dict | None, source: str) -> dict | None:
    if not held or not new:
        return held or new
    if held["task"] != new["task"]:
        raise ConfigError(
            f"this store's samples are {held['task']}, the new ones {new['task']}: one store holds one task",
            path=source,
        )
    names = list(held["names"])
    names += [name for name in new["names"] if name not in names]
    return {**held, "names": names}


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _cells(column: pd.Series) -> np.ndarray:
    """A column as a 1-d array of comparable Python objects: NA of any kind as None, lists as tuples."""
    if column.dtype != object or not column.map(_is_list).any():  # typed columns hold no lists
        return column.to_numpy(dtype=object, na_value=None)
    cells = np.empty(len(column), dtype=object)  # filled one by one: numpy would make tuples a second axis
    for i, value in enumerate(column):
        cells[i] = tuple(value) if _is_list(value) else (None if pd.isna(value) else value)
    return cells


def _check_agreement(held: pd.DataFrame, new: pd.DataFrame, source: str,
                     same_source: list[int]) -> list[tuple[str, str, Any]]:
    """Rows of `new` whose sample_id the index holds must hold the same values in every shared column, but
    for REVISABLE columns of rows that an addition in `same_source` brought: those differences are returned
    as (sample_id, column, new value) revisions."""
    if new.empty:
        return []
    columns = [c for c in new.columns if c in held.columns and c != "sample_id"]
    ours = held.set_index("sample_id").loc[new["sample_id"], columns + [ADDITION_COLUMN]]
    revisable = np.isin(ours[ADDITION_COLUMN].to_numpy(), same_source)
    ids = new["sample_id"].tolist()
    first_difference: dict[int, str] = {}  # row of `new` -> its first column that differs
    revisions: list[tuple[str, str, Any]] = []
    for column in columns:
        mine, theirs = _cells(ours[column]), _cells(new[column])
        for row in np.flatnonzero(mine != theirs):  # None == None; numbers compare by value
            if column in REVISABLE and revisable[row]:
                revisions.append((ids[row], column, theirs[row]))
            elif row not in first_difference:
                first_difference[int(row)] = f"{column}: {_show(mine[row])} in the store, {_show(theirs[row])} now"
    conflicts = [f"{ids[row]} ({difference})" for row, difference in sorted(first_difference.items())]
    if conflicts:
        shown = "; ".join(conflicts[:CONFLICTS_SHOWN])
        more = f" and {len(conflicts) - CONFLICTS_SHOWN} more" if len(conflicts) > CONFLICTS_SHOWN else ""
        raise ConfigError(
            f"{len(conflicts)} samples are in this store's index with other values: {shown}{more}. Their stored "
            "features were made from the index's values; extract into a new store (--out), or delete "
            "samples.parquet to index the dataset anew (stored features are kept and reused)",
            path=source,
        )
    return revisions


def _show(value: Any) -> str:
    if _is_list(value):
        return repr(list(value))
    return "NA" if value is None else repr(value)


def _concat(held: pd.DataFrame, added: pd.DataFrame) -> pd.DataFrame:
    """Rows of both; canonical columns keep their dtypes, extra columns that disagree become text."""
    table = pd.concat([held, added], ignore_index=True, sort=False)
    for column in table.columns:
        if column in SAMPLE_COLUMNS or column == ADDITION_COLUMN:
            continue
        kinds = {type(v) for v in table[column] if not (np.isscalar(v) and pd.isna(v))}
        if len(kinds) > 1:
            table[column] = table[column].map(lambda v: v if np.isscalar(v) and pd.isna(v) else str(v)).astype("string")
    table[ADDITION_COLUMN] = table[ADDITION_COLUMN].astype("int64")
    return table
