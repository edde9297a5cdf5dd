"""The Parquet feature store: features of one dataset, keyed by (input, extractor, params, versions).

(Longer than most modules: the write path, the read path and the compaction share one on-disk format of
parts and failures, and one lock-free commit protocol; they are kept in one file so that format is read
in one place.)

Layout (docs/FEATURE_STORE.md tells the whole story)::

    STORE/
      samples.parquet                 the dataset's canonical sample table; provenance in its metadata
      <modality>__<extractor>__<fp>/  one feature set per extractor configuration (Extractor.feature_set_name)
        spec.json                     extractor.spec(), the dataset's describe(), creation time
        parts/<key>.parquet           committed rows: sample_id, input_fingerprint, values[, times]
        failures/<key>.parquet        committed failures: sample_id, input_fingerprint, error, traceback, ...

Rows are only ever added, each part written to a temporary file and renamed into place, so a killed run
loses at most the chunk it was writing. Part keys sort in commit order; readers keep the latest event of
each sample (a row or a failure) and sort by sample_id, so resumed, repeated and sharded runs all read
back as the same table. When a run wrote anything, its feature sets are compacted into one part each.

Writers (extract, compact, merge) hold the store's file lock (`.writer.lock`), so two runs into one store
take turns instead of compacting each other's parts away; readers take no lock. Nothing that is not
finite is written: feature values are checked at every commit and at every merge. A write that fails
(a full disk, a read-only folder) is one error naming the file and the cause, leaves no temporary file
and keeps every part committed before it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import read_json
from emocli.core.paths import check_name
from emocli.core.samples import SAMPLE_COLUMNS, PrecomputedFeatures, SampleSet, normalize_table
from emocli.core.types import Features
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.presets import feature_set_label, preset_of
from emocli.features.runner import ExtractionRunner, SampleFailure, hub_progress_bars, progress_bar, sample_records
from emocli.features.sample_index import ADDITION_COLUMN, SampleIndex

if TYPE_CHECKING:
    from rich.progress import Progress

    from emocli.features.ray_runner import RayExecutor

logger = logging.getLogger(__name__)

STORE_FORMAT = "1"
SAMPLES_FILE = "samples.parquet"
SPEC_FILE = "spec.json"
LOCK_FILE = ".writer.lock"
WRITER_FILE = ".writer.json"  # who holds the lock: for the message of a writer that waits
PARTS_DIR = "parts"
FAILURES_DIR = "failures"
META = "emo."  # prefix of our keys in Parquet schema metadata

COMMIT_ROWS = 64  # rows per committed part: what a kill -9 can cost at most, per feature set
COMMIT_SECONDS = 30.0  # ... or this much extraction time, for slow extractors

_SAMPLE_ARROW_TYPES = {
    "string": pa.string(),
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "object": pa.list_(pa.string()),  # `labels`
}
FAILURE_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("input_fingerprint", pa.string()),
        ("path", pa.string()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("traceback", pa.string()),
        ("time", pa.timestamp("ms", tz="UTC")),
    ]
)


# --- shards ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    """Slice `index` of `count` (1-based, like `split -n K/N`), chosen by a stable hash of sample_id."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: K must be between 1 and N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"shard {text!r}: expected K/N, e.g. 2/8") from None
        return cls(index, count)

    def contains(self, sample_id: str) -> bool:
        # sha256, not hash(): Python salts str hashes per process, and shards live on different machines.
        digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def select_samples(table: pd.DataFrame, shard: Shard | None, limit: int | None) -> pd.DataFrame:
    """The rows a run works on: the shard's slice, then its first `limit` rows."""
    if shard is not None:
        table = table[table["sample_id"].map(shard.contains)]
    return table.head(limit) if limit is not None else table


# --- what is stored ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeatureSetInfo:
    """A feature set of a store, as `FeatureStore.feature_sets()` lists it."""

    name: str
    modality: str
    extractor: str
    kind: str  # "vector" or "sequence"
    dim: int
    spec: dict[str, Any]  # the whole spec.json: extractor spec, dataset, created
    n_rows: int
    n_failures: int
    path: Path


@dataclass
class FeatureSetReport:
    """What one run did for one feature set."""

    name: str
    preset: str | None = None  # the shipped preset that makes it, if one does
    extracted: int = 0
    cached: int = 0
    failed: int = 0  # failed in this run
    known_failures: int = 0  # failed before on the same input, not retried
    seconds: float = 0.0
    failures: list[SampleFailure] = field(default_factory=list)

    @property
    def label(self) -> str:
        return feature_set_label(self.name, self.preset)

    def summary(self) -> str:
        text = f"{self.extracted} extracted, {self.cached} cached, {self.failed} failed"
        if self.known_failures:
            text += f", {self.known_failures} failed before (unchanged input; --retry-failures retries them)"
        return text


@dataclass
class ExtractionReport:
    store: Path
    feature_sets: list[FeatureSetReport]
    shard: Shard | None = None
    revised: dict[str, int] = field(default_factory=dict)  # index columns the dataset revised: column -> samples

    @property
    def n_failed(self) -> int:
        return sum(r.failed + r.known_failures for r in self.feature_sets)

    def summary(self) -> str:
        return "\n".join([*(f"{r.label}: {r.summary()}" for r in self.feature_sets), *self.revision_notes()])

    def revision_notes(self) -> list[str]:
        return [f"{column} of {n} samples revised in the index from the dataset (runs trained before read the "
                "old values)" for column, n in self.revised.items()]


# --- precomputed features as an extractor ------------------------------------------------------------

class PrecomputedExtractor(Extractor):
    """Serves features a dataset ships (SampleSet.precomputed) through the store's ordinary write path."""

    batch_size = 1024
    portable = False  # runs in the main process: the values are already in its memory

    class Params(ExtractorParams):
        name: str
        source: dict[str, Any]
        input_name: str | None = None

    def __init__(self, precomputed: PrecomputedFeatures):
        self.precomputed = precomputed
        self.name = f"precomputed-{precomputed.name}"
        self.modality = precomputed.modality
        self.kind = precomputed.kind
        super().__init__(
            self.Params(name=precomputed.name, source=precomputed.source, input_name=precomputed.input_name)
        )
        self._source_fingerprint = hashlib.sha256(
            json.dumps(precomputed.source, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]

    @property
    def dim(self) -> int:
        return self.precomputed.dim

    def input_fingerprint(self, sample) -> str:
        return self._source_fingerprint

    def extract(self, sample) -> Features:
        try:
            return self.precomputed.values[sample["sample_id"]]
        except KeyError:
            raise EmoError(
                f"the dataset ships no {self.precomputed.name} features for this sample",
                path=self.precomputed.source.get("file"),
            ) from None


# --- Arrow conversion --------------------------------------------------------------------------------

def _feature_schema(extractor: Extractor, metadata: dict[str, str]) -> pa.Schema:
    frame = pa.list_(pa.float32(), extractor.dim)
    fields = [pa.field("sample_id", pa.string()), pa.field("input_fingerprint", pa.string())]
    if extractor.kind == "vector":
        fields.append(pa.field("values", frame))
    else:
        fields += [pa.field("values", pa.list_(frame)), pa.field("times", pa.list_(pa.float64()))]
    return pa.schema(fields, metadata=metadata)


def _features_table(
    schema: pa.Schema, kind: str, dim: int, rows: Sequence[tuple[str, str, Features]]
) -> pa.Table:
    ids = pa.array([r[0] for r in rows], pa.string())
    fingerprints = pa.array([r[1] for r in rows], pa.string())
    features = [r[2] for r in rows]
    if kind == "vector":
        flat = np.concatenate([f.values for f in features]) if features else np.empty(0, np.float32)
        values = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
        return pa.Table.from_arrays([ids, fingerprints, values], schema=schema)
    lengths = np.array([len(f.values) for f in features], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    frames = np.concatenate([f.values for f in features]) if features else np.empty((0, dim), np.float32)
    times = np.concatenate([f.times for f in features]) if features else np.empty(0)
    values = pa.ListArray.from_arrays(
        offsets, pa.FixedSizeListArray.from_arrays(pa.array(frames.ravel(), pa.float32()), dim)
    )
    return pa.Table.from_arrays(
        [ids, fingerprints, values, pa.ListArray.from_arrays(offsets, pa.array(times, pa.float64()))],
        schema=schema,
    )


def table_to_features(table: pa.Table) -> dict[str, Features]:
    """Rows of a feature-set table (as `FeatureStore.read` returns it) as sample_id -> Features."""
    ids = table.column("sample_id").to_pylist()
    values = table.column("values").combine_chunks()
    if pa.types.is_fixed_size_list(values.type):  # vectors [N, D]
        matrix = values.flatten().to_numpy().reshape(len(ids), values.type.list_size)
        return {sid: Features(row) for sid, row in zip(ids, matrix, strict=True)}
    dim = values.type.value_type.list_size
    frames = values.flatten().flatten().to_numpy().reshape(-1, dim)
    times = table.column("times").combine_chunks().flatten().to_numpy()
    splits = np.cumsum(pc.list_value_length(values).to_numpy())[:-1]
    return {
        sid: Features(v, t)
        for sid, v, t in zip(ids, np.split(frames, splits), np.split(times, splits), strict=True)
    }


def _samples_table(table: pd.DataFrame, metadata: dict[str, str]) -> pa.Table:
    arrays, names = [], []
    for column in table.columns:
        if column in SAMPLE_COLUMNS:
            series = table[column]
            if column == "labels":
                series = series.map(list)
            array = pa.array(series, type=_SAMPLE_ARROW_TYPES[SAMPLE_COLUMNS[column]], from_pandas=True)
        else:
            array = pa.Array.from_pandas(table[column])
        arrays.append(array)
        names.append(str(column))
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(metadata)


# --- files -------------------------------------------------------------------------------------------

def _temporary(path: Path) -> Path:
    """A hidden name beside `path`, one per process: a reader never mistakes it for a part, and a writer
    that was killed leaves it under a name the next writer recognises and removes."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_error(error: OSError, path: Path) -> EmoError:
    """One line naming the file and the cause of a failed write (ENOSPC, EROFS, EACCES, ...)."""
    code = errno.errorcode.get(error.errno or 0)
    cause = os.strerror(error.errno) if error.errno else str(error)
    return EmoError(
        f"cannot write: {cause}{f' ({code})' if code else ''}; what was committed before is kept, "
        "and the same command resumes from it once the cause is fixed",
        path=path,
    )


@contextlib.contextmanager
def _writing_file(path: Path) -> Iterator[Path]:
    """Yield the temporary name to write `path` through; rename it into place, or remove it on failure."""
    temporary = _temporary(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise write_error(error, path) from None
        raise


def _write_atomic(table: pa.Table, path: Path, dictionary: bool = True) -> None:
    """Write to a hidden temporary file, flush it to disk, then rename: readers never see half a file.

    Feature tables pass dictionary=False: float features hardly ever repeat, and Parquet's attempt to
    dictionary-encode them costs 4-7x the write time and leaves the file 20-35 % larger.
    """
    with _writing_file(path) as temporary:
        pq.write_table(table, temporary, use_dictionary=dictionary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())


def _write_json_atomic(data: dict, path: Path) -> None:
    with _writing_file(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _copy_atomic(source: Path, target: Path) -> None:
    with _writing_file(target) as temporary:
        shutil.copy2(source, temporary)


def _make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(error, path) from None


_commit_counter = itertools.count()


def _part_key() -> str:
    """Names that sort in commit order (time, then a per-process counter for commits in the same ns)."""
    return f"{time.time_ns():020d}-{os.getpid():07d}-{next(_commit_counter):06d}"


def _parts(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


_PART_REMEDY = "delete it and run `emo extract` again to redo its rows"
_SAMPLES_REMEDY = "delete it and run `emo extract` again to index the dataset anew (stored features are reused)"


def _read_part(path: Path, remedy: str = _PART_REMEDY, **options: Any) -> pa.Table:
    """A Parquet file of the store; EmoError naming it when it is damaged (FileNotFoundError passes, for
    _retrying)."""
    try:
        return pq.read_table(path, **options)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError, KeyError) as error:
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise EmoError(f"unreadable Parquet file ({detail}); {remedy}", path=path) from None


def _retrying(read: Callable[[], Any]) -> Any:
    """Run a read of parts again when a part vanished under it: a writer compacted the feature set."""
    for attempt in range(3):
        try:
            return read()
        except FileNotFoundError:
            if attempt == 2:
                raise
            time.sleep(0.05)


def nonfinite_samples(table: pa.Table) -> list[str]:
    """sample_ids of the rows of a feature table whose values hold NaN or infinity."""
    values = table.column("values").combine_chunks() if table.num_rows else None
    if values is None:
        return []
    rows = values if pa.types.is_fixed_size_list(values.type) else pc.list_flatten(values)
    flat = pc.list_flatten(rows)
    if len(flat) == 0 or pc.all(pc.is_finite(flat)).as_py():
        return []
    # Locate the rows only when something is wrong: per value -> per frame -> per sample.
    bad = ~np.isfinite(flat.to_numpy(zero_copy_only=False))
    per_frame = np.add.reduceat(bad, np.arange(0, len(bad), rows.type.list_size)) > 0
    if rows is not values:  # sequences: a sample is wrong when any of its frames is
        ends = np.cumsum(pc.list_value_length(values).to_numpy())
        per_frame = np.array([per_frame[a:b].any() for a, b in zip(np.r_[0, ends[:-1]], ends)], dtype=bool)
    ids = table.column("sample_id").to_pylist()
    return [sample_id for sample_id, wrong in zip(ids, per_frame) if wrong]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _spec_fingerprint(extractor_spec: dict[str, Any]) -> str:
    """The fingerprint in a feature set's name, recomputed from its spec.json (as Extractor.fingerprint)."""
    blob = json.dumps({k: v for k, v in extractor_spec.items() if k != "dim"}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _read_spec(directory: Path) -> dict[str, Any]:
    """A feature set's spec.json, checked against the fingerprint in the feature set's name: an edited
    spec would describe (kind, dim, parameters) other features than the parts hold."""
    path = directory / SPEC_FILE
    try:
        spec = read_json(path, dict)  # a regular file of bounded size and depth
        extractor = spec["extractor"]
        modality, name, kind, dim = extractor["modality"], extractor["extractor"], extractor["kind"], int(extractor["dim"])
    except EmoError as error:
        raise EmoError(f"unreadable feature set spec ({error.problem})", path=path) from None
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise EmoError(f"unreadable feature set spec ({type(error).__name__}: {error})", path=path) from None
    if directory.name != f"{modality}__{name}__{_spec_fingerprint(extractor)}" or kind not in ("vector", "sequence", "clip") or dim < 1:
        raise EmoError(
            f"does not describe the feature set {directory.name!r} (edited or copied from another feature set); "
            "restore it, or delete the feature set's folder and extract it again",
            path=path,
        )
    return spec


# --- the store ---------------------------------------------------------------------------------------

class FeatureStore:
    """A directory of feature sets for one dataset; one writer at a time, readers see committed rows."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._held = threading.local()  # per thread: nested writes (extract -> compact) in one hold of the lock

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r})"

    # reading -------------------------------------------------------------------------------------

    def _samples_path(self) -> Path:
        path = self.path / SAMPLES_FILE
        if not path.is_file():
            raise EmoError("not a feature store (no samples.parquet); create it with `emo extract`", path=self.path)
        return path

    def _sample_index(self) -> SampleIndex:
        """samples.parquet with its provenance; stores written before additions were recorded read as one."""
        path = self._samples_path()
        arrow = _read_part(path, remedy=_SAMPLES_REMEDY)
        metadata = arrow.schema.metadata or {}
        table = arrow.to_pandas()
        try:
            dataset = json.loads(metadata.get(f"{META}dataset".encode(), b"{}"))
            additions = json.loads(metadata.get(f"{META}additions".encode(), b"null"))
        except json.JSONDecodeError as error:
            raise EmoError(f"unreadable provenance in the schema metadata ({error})", path=path) from None
        if additions is None:
            additions = [{"time": None, "n_added": len(table), "dataset": dataset}]
        if ADDITION_COLUMN not in table.columns:
            table[ADDITION_COLUMN] = 0
        table["labels"] = table["labels"].map(lambda labels: [] if labels is None else list(labels))
        return SampleIndex(table, dataset, additions)

    def samples(self) -> pd.DataFrame:
        """The dataset's canonical sample table (all samples, whichever were extracted)."""
        index = self._sample_index()
        return normalize_table(index.table.drop(columns=ADDITION_COLUMN), source=self.path / SAMPLES_FILE)

    def dataset(self) -> dict[str, Any]:
        """Provenance of the samples: SampleSet.describe() of the first addition to the index, with the
        label map and sample count of the whole index (`additions()` lists each addition)."""
        path = self._samples_path()
        try:
            metadata = pq.read_schema(path).metadata or {}
        except (pa.ArrowException, OSError) as error:
            raise EmoError(f"unreadable Parquet file ({error}); {_SAMPLES_REMEDY}", path=path) from None
        try:
            return json.loads(metadata.get(f"{META}dataset".encode(), b"{}"))
        except json.JSONDecodeError as error:
            raise EmoError(f"unreadable provenance in the schema metadata ({error})", path=path) from None

    def additions(self) -> list[dict[str, Any]]:
        """Each sample set added to the index, in order: time, n_added, dataset (its describe()) and the
        sample_ids it brought."""
        index = self._sample_index()
        owner = index.table.groupby(ADDITION_COLUMN)["sample_id"].agg(list)
        return [{**addition, "sample_ids": owner.get(i, [])} for i, addition in enumerate(index.additions)]

    def feature_sets(self, strict: bool = False) -> list[FeatureSetInfo]:
        """Every feature set of the store, sorted by name. A folder whose spec.json cannot be read (a stray
        copy, an edit) is left out, and listed by `unreadable()`; with `strict` it is an error."""
        found = []
        for spec in sorted(self.path.glob(f"*/{SPEC_FILE}")):
            if not strict:
                try:
                    _read_spec(spec.parent)
                except EmoError:
                    continue
            found.append(self.info(spec.parent.name))
        return found

    def unreadable(self) -> list[str]:
        """Why each folder that looks like a feature set (it holds a spec.json) is not read as one."""
        problems = []
        for spec in sorted(self.path.glob(f"*/{SPEC_FILE}")):
            try:
                _read_spec(spec.parent)
            except EmoError as error:
                problems.append(str(error))
        return problems

    def find(self, modality: str | None = None, extractor: str | None = None) -> list[FeatureSetInfo]:
        return [
            info
            for info in self.feature_sets()
            if (modality is None or info.modality == modality) and (extractor is None or info.extractor == extractor)
        ]

    def info(self, name: str) -> FeatureSetInfo:
        directory = self._feature_set_dir(name)
        spec = _read_spec(directory)
        latest = _retrying(lambda: self._latest_events(directory))
        n_failures = int((latest["status"] == "failed").sum())
        extractor = spec["extractor"]
        return FeatureSetInfo(
            name=name,
            modality=extractor["modality"],
            extractor=extractor["extractor"],
            kind=extractor["kind"],
            dim=int(extractor["dim"]),
            spec=spec,
            n_rows=len(latest) - n_failures,
            n_failures=n_failures,
            path=directory,
        )

    def read(self, name: str) -> pa.Table:
        """A feature set's rows: the latest per sample_id, sorted by sample_id, provenance in the metadata.

        Columns: sample_id, input_fingerprint, values (`fixed_size_list<float32>[D]` for vectors,
        `list<fixed_size_list<float32>[D]>` for sequences) and, for sequences, times (`list<float64>`, seconds).
        """
        directory = self._feature_set_dir(name)
        return _retrying(lambda: self._read_rows(directory))

    def _read_rows(self, directory: Path) -> pa.Table:
        parts = _parts(directory / PARTS_DIR)
        expected = self._empty_table(directory).schema
        if not parts:
            return expected.empty_table()
        tables = []
        for part in parts:
            table = _read_part(part)
            if not table.schema.equals(expected, check_metadata=False):
                if (table.schema.metadata or {}).get(f"{META}feature_set".encode()) == directory.name.encode():
                    # One of ours: it is the spec that no longer says what the parts hold.
                    said = _read_spec(directory)["extractor"]
                    held = table.schema.field("values").type
                    vector = pa.types.is_fixed_size_list(held)
                    held_dim = held.list_size if vector else held.value_type.list_size
                    raise EmoError(
                        f"says kind {said['kind']!r}, dim {said['dim']} where the feature set's parts hold "
                        f"{'vectors' if vector else 'sequences'} of dim {held_dim} (edited?); restore it, or delete "
                        "the feature set's folder and extract it again",
                        path=directory / SPEC_FILE,
                    )
                raise EmoError(
                    f"not a part of this feature set: its columns are {table.schema.to_string(show_schema_metadata=False)!r} "
                    f"where spec.json says {expected.to_string(show_schema_metadata=False)!r}; remove the file",
                    path=part,
                )
            tables.append(table)
        metadata = tables[-1].schema.metadata
        table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
        part_of_row = np.repeat([p.stem for p in parts], [t.num_rows for t in tables])
        latest = self._latest_events(directory)
        ok = latest[latest["status"] == "ok"]
        wanted = pd.MultiIndex.from_arrays([ok["sample_id"], ok["part"]])
        rows = pd.MultiIndex.from_arrays([table.column("sample_id").to_numpy(zero_copy_only=False), part_of_row])
        table = table.filter(pa.array(rows.isin(wanted)))
        table = table.take(pc.sort_indices(table, [("sample_id", "ascending")]))
        return table.replace_schema_metadata(metadata)

    def read_features(self, name: str) -> dict[str, Features]:
        """sample_id -> Features (vector [D], or sequence [T, D] with frame times) of a feature set."""
        return table_to_features(self.read(name))

    def failures(self, name: str) -> pd.DataFrame:
        """Samples whose latest attempt failed: sample_id, input_fingerprint, path, error_type, message,
        traceback, time."""
        directory = self._feature_set_dir(name)
        return _retrying(lambda: self._read_failures(directory))

    def _read_failures(self, directory: Path) -> pd.DataFrame:
        parts = _parts(directory / FAILURES_DIR)
        if not parts:
            return FAILURE_SCHEMA.empty_table().to_pandas()
        tables = [_read_part(p, schema=FAILURE_SCHEMA) for p in parts]
        table = pa.concat_tables(tables).to_pandas()
        table["part"] = np.repeat([p.stem for p in parts], [t.num_rows for t in tables])
        latest = self._latest_events(directory)
        failed = latest[latest["status"] == "failed"][["sample_id", "part"]]
        table = table.merge(failed, on=["sample_id", "part"])
        return table.drop(columns="part").sort_values("sample_id").reset_index(drop=True)

    def _feature_set_dir(self, name: str) -> Path:
        check_name(name, "feature set", EmoError)  # a name, never a path out of the store
        directory = self.path / name
        if not (directory / SPEC_FILE).is_file():
            known = ", ".join(d.parent.name for d in sorted(self.path.glob(f"*/{SPEC_FILE}"))) or "none"
            raise EmoError(f"no feature set {name!r} (feature sets: {known})", path=self.path)
        return directory

    @staticmethod
    def _empty_table(directory: Path) -> pa.Table:
        spec = _read_spec(directory)["extractor"]
        frame = pa.list_(pa.float32(), int(spec["dim"]))
        fields = [("sample_id", pa.string()), ("input_fingerprint", pa.string())]
        fields += [("values", frame)] if spec["kind"] == "vector" else [("values", pa.list_(frame)), ("times", pa.list_(pa.float64()))]
        return pa.schema(fields).empty_table()

    @staticmethod
    def _latest_events(directory: Path) -> pd.DataFrame:
        """The latest event of each sample: sample_id, input_fingerprint, status ("ok"/"failed"), part."""
        frames = []
        for status, sub in (("ok", PARTS_DIR), ("failed", FAILURES_DIR)):
            for part in _parts(directory / sub):
                events = _read_part(part, columns=["sample_id", "input_fingerprint"]).to_pandas()
                frames.append(events.assign(status=status, part=part.stem))
        if not frames:
            return pd.DataFrame(columns=["sample_id", "input_fingerprint", "status", "part"])
        events = pd.concat(frames, ignore_index=True).sort_values("part", kind="stable")
        return events.drop_duplicates("sample_id", keep="last").reset_index(drop=True)

    # writing -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        """Hold the store's writer lock (waiting, with a message, while another process holds it), and
        clear what killed writers left: temporary files are never part of a store."""
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        from filelock import FileLock, Timeout

        if self.path.is_dir() and not self._made_by_emo():
            # A user's folder: a store's writer would add its files there and clear its hidden *.tmp files.
            raise EmoError("holds files but is not a feature store; give a new or empty folder (emo writes a store "
                           "only there, or into a store it made)", path=self.path)
        _make_dirs(self.path)
        lock_path = self.path / LOCK_FILE
        try:  # a read-only store fails here with its cause, instead of filelock retrying forever
            with open(lock_path, "a"):
                pass
        except OSError as error:
            raise write_error(error, lock_path) from None
        lock = FileLock(lock_path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning("%s", f"{self.path}: another process is writing to this store ({self._holder()}); waiting for it to finish")
            lock.acquire()
        try:
            with contextlib.suppress(EmoError):  # only for the message above: never worth failing a run
                _write_json_atomic(
                    {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "command": sys.argv},
                    self.path / WRITER_FILE,
                )
            self._remove_leftovers()
            self._held.depth = 1
            yield
        finally:
            self._held.depth = 0
            lock.release()

    def _made_by_emo(self) -> bool:
        """An empty folder, or one holding a store's own files (its index, lock, transcripts or a feature set)."""
        from emocli.features.audio.transcribe import TRANSCRIPTS  # written before the first feature set

        if any((self.path / name).exists() for name in (SAMPLES_FILE, LOCK_FILE, TRANSCRIPTS)):
            return True
        if next(self.path.glob(f"*/{SPEC_FILE}"), None) is not None:
            return True
        return next(self.path.iterdir(), None) is None

    def _holder(self) -> str:
        try:
            holder = json.loads((self.path / WRITER_FILE).read_text())
            return f"pid {holder['pid']} on {holder['host']} since {holder['since']}: {' '.join(holder['command'])[:120]}"
        except (OSError, ValueError, KeyError, TypeError):
            return "process unknown"

    def _remove_leftovers(self) -> None:
        """Temporary files of writers that were killed (only ever removed while holding the lock)."""
        for pattern in (".*.tmp", "*/.*.tmp", f"*/{PARTS_DIR}/.*.tmp", f"*/{FAILURES_DIR}/.*.tmp"):
            for leftover in self.path.glob(pattern):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def extract(
        self,
        sample_set: SampleSet,
        extractors: Sequence[Extractor],
        workers: int = 2,
        shard: Shard | str | None = None,
        limit: int | None = None,
        retry_failures: bool = False,
        progress: bool | Progress = True,
        commit_rows: int = COMMIT_ROWS,
        executor: RayExecutor | None = None,
    ) -> ExtractionReport:
        """Extract what is missing or stale for `sample_set` with `extractors` (plus the dataset's own
        precomputed features); commit rows in chunks; report what was extracted, cached and failed.

        `shard` ("K/N") restricts the run to a deterministic slice of the samples; `limit` to the first
        `limit` samples of that slice. samples.parquet always holds the whole dataset, and the samples of
        earlier sample sets extracted into this store (see `additions`). `executor`: a Ray cluster to
        extract on instead of `workers` local processes; this process still writes every commit.
        """
        shard = Shard.parse(shard) if isinstance(shard, str) else shard
        everything = list(extractors) + [PrecomputedExtractor(p) for p in sample_set.precomputed]
        names = [e.feature_set_name for e in everything]
        if len(set(names)) != len(names):
            raise ConfigError("the same extractor configuration was given twice")

        selected = select_samples(sample_set.table, shard, limit)

        with self._writer():
            revised = self._write_samples(sample_set)
            plans = [self._plan(extractor, sample_set, selected, retry_failures) for extractor in everything]
            display = progress if not isinstance(progress, bool) else progress_bar(progress)
            if executor is None:
                runner = ExtractionRunner([p.extractor for p in plans if p.todo], workers)
            else:
                runner = executor.runner(None if progress is False else display.console.print)
            with display, hub_progress_bars(progress is not False), runner:
                for plan in plans:
                    plan.start(display, commit_rows)
                for job, index, result in runner.run_jobs([(p.extractor, [record for _, record in p.todo]) for p in plans]):
                    plans[job].accept(index, result)
                for plan in plans:
                    plan.finish()
            for plan in plans:  # also what a killed run left uncompacted (compact returns at once otherwise)
                self.compact(plan.extractor.feature_set_name)
        return ExtractionReport(self.path, [p.report for p in plans], shard, revised)

    def _write_samples(self, sample_set: SampleSet) -> dict[str, int]:
        """Add `sample_set` to the sample index (see emocli.features.sample_index); the columns it revised."""
        path = self.path / SAMPLES_FILE
        if path.is_file():
            index = self._sample_index()
            if not index.add(sample_set.table, sample_set.describe(), source=str(self.path)):
                return {}
        else:
            index = SampleIndex.of(sample_set)
        self._write_index(index)
        return index.revised

    def _write_index(self, index: SampleIndex) -> None:
        metadata = {f"{META}{key}": value for key, value in index.metadata().items()}
        metadata[f"{META}store_format"] = STORE_FORMAT
        _write_atomic(_samples_table(index.table, metadata), self.path / SAMPLES_FILE)

    def _plan(
        self, extractor: Extractor, sample_set: SampleSet, selected: pd.DataFrame, retry_failures: bool
    ) -> _FeatureSetRun:
        directory = self.path / extractor.feature_set_name
        spec_path = directory / SPEC_FILE
        created = _read_spec(directory)["created"] if spec_path.is_file() else _now()
        spec = {
            "extractor": extractor.spec(),
            "feature_names": extractor.feature_names(),
            "dataset": sample_set.describe(),
            "created": created,
        }
        _make_dirs(directory / PARTS_DIR)
        _make_dirs(directory / FAILURES_DIR)
        _write_json_atomic(spec, spec_path)

        prepared = extractor.prepare(sample_set.table)
        prepared = prepared[prepared["sample_id"].isin(selected["sample_id"])]
        records = sample_records(prepared)
        latest = self._latest_events(directory)
        previous_events = {  # sample_id -> (fingerprint, status); a failed fingerprint reads back as NaN
            sample_id: (fingerprint if isinstance(fingerprint, str) else None, status)
            for sample_id, fingerprint, status in zip(latest["sample_id"], latest["input_fingerprint"], latest["status"])
        }
        preset = preset_of(extractor.name, extractor.identity_params(), sample_set.root)
        run = _FeatureSetRun(extractor, directory, spec, FeatureSetReport(extractor.feature_set_name, preset))
        for record in records:
            try:
                fingerprint = extractor.input_fingerprint(record)
            except Exception as error:  # noqa: BLE001 - e.g. a missing file: recorded like any failure
                fingerprint = None
                failure = SampleFailure.from_exception(record["sample_id"], error, None)
            else:
                failure = None
            previous_fingerprint, previous_status = previous_events.get(record["sample_id"], (None, None))
            unchanged = previous_status is not None and previous_fingerprint == fingerprint
            if unchanged and previous_status == "ok":
                run.report.cached += 1
            elif unchanged and not retry_failures:
                run.report.known_failures += 1
            elif failure is not None:
                run.early_failures.append((fingerprint, failure))
            else:
                run.todo.append((fingerprint, record))
        return run

    def compact(self, name: str) -> None:
        """Rewrite a feature set as one part of rows and one of failures (the latest event per sample)."""
        with self._writer():
            directory = self._feature_set_dir(name)
            old_parts = _parts(directory / PARTS_DIR) + _parts(directory / FAILURES_DIR)
            if len(old_parts) <= 2:
                return
            rows, failures = self.read(name), self.failures(name)
            key = _part_key()
            # The new parts sort after the old ones and hold the same latest events, so a crash at any
            # point here leaves a store that reads back identically.
            if rows.num_rows:
                _write_atomic(rows, directory / PARTS_DIR / f"{key}.parquet", dictionary=False)
            if len(failures):
                _write_atomic(pa.Table.from_pandas(failures, FAILURE_SCHEMA, preserve_index=False), directory / FAILURES_DIR / f"{key}.parquet")
            for part in old_parts:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()

    def merge(self, sources: Iterable[str | os.PathLike | FeatureStore]) -> None:
        """Bring the samples and feature sets of other stores of the same dataset (e.g. shards) into this
        one. Their sample indexes are added to this one's (conflicting rows are an error); their parts
        are checked (the feature set's columns, finite values) before any is copied."""
        sources = [source if isinstance(source, FeatureStore) else FeatureStore(source) for source in sources]
        with self._writer():
            for source in sources:
                self._merge_one(source)
            for info in self.feature_sets():
                self.compact(info.name)

    def _merge_one(self, source: FeatureStore) -> None:
        theirs = source._sample_index()
        if (self.path / SAMPLES_FILE).is_file():
            index = self._sample_index()
            changed = False
            for i, addition in enumerate(theirs.additions):
                rows = theirs.table[theirs.table[ADDITION_COLUMN] == i]
                described = addition.get("dataset") or theirs.dataset
                changed |= bool(index.add(rows, described, source=str(source.path), when=addition.get("time")))
        else:
            index, changed = theirs, True
        infos = source.feature_sets(strict=True)  # a shard's unreadable feature set is not merged away silently
        for info in infos:  # check everything before copying anything
            table = source.read(info.name)
            bad = nonfinite_samples(table)
            if bad:
                raise EmoError(
                    f"feature set {info.name} holds NaN or infinite values for {len(bad)} samples "
                    f"({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); not merged: extract them again",
                    path=source.path,
                )
        if changed:
            self._write_index(index)
        for info in infos:
            target = self.path / info.name
            for sub in (PARTS_DIR, FAILURES_DIR):
                _make_dirs(target / sub)
                for part in _parts(info.path / sub):
                    if not (target / sub / part.name).exists():
                        _copy_atomic(part, target / sub / part.name)
            if not (target / SPEC_FILE).exists():
                _copy_atomic(info.path / SPEC_FILE, target / SPEC_FILE)


@dataclass
class _FeatureSetRun:
    """The work of one feature set in one run, and its commits."""

    extractor: Extractor
    directory: Path
    spec: dict[str, Any]
    report: FeatureSetReport
    todo: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (input fingerprint, sample)
    early_failures: list[tuple[str | None, SampleFailure]] = field(default_factory=list)  # no fingerprint

    def start(self, display: Progress, commit_rows: int) -> None:
        self._started = self._last_commit = time.perf_counter()
        self._display, self._commit_rows, self._received = display, commit_rows, 0
        self._rows: list[tuple[str, str, Features]] = []
        self._failures: list[tuple[str | None, SampleFailure, datetime]] = []
        for fingerprint, failure in self.early_failures:
            self._failed(fingerprint, failure)
        self._task = display.add_task(self.report.label, total=len(self.todo), visible=bool(self.todo))

    def accept(self, index: int, result: Features | SampleFailure) -> None:
        """One result of `todo[index]`; commits every `commit_rows` results or COMMIT_SECONDS."""
        fingerprint, record = self.todo[index]
        if isinstance(result, SampleFailure):
            self._failed(fingerprint, result)
        else:
            self._rows.append((record["sample_id"], fingerprint, result))
            self.report.extracted += 1
        self._display.advance(self._task)
        self._received += 1
        if self._received == len(self.todo):  # feature sets stream side by side: this one is done
            self.report.seconds = time.perf_counter() - self._started
        if len(self._rows) + len(self._failures) >= self._commit_rows or time.perf_counter() - self._last_commit > COMMIT_SECONDS:
            self._commit()
            self._last_commit = time.perf_counter()

    def finish(self) -> None:
        self._commit()

    def _failed(self, fingerprint: str | None, failure: SampleFailure) -> None:
        self._failures.append((fingerprint, failure, datetime.now(timezone.utc)))
        self.report.failed += 1
        self.report.failures.append(failure)

    def _commit(self) -> None:
        key = _part_key()
        if self._rows:
            schema = _feature_schema(self.extractor, self._metadata())
            table = _features_table(schema, self.extractor.kind, self.extractor.dim, self._rows)
            bad = nonfinite_samples(table)
            if bad:  # the runner makes these failures; nothing that writes here may bypass that
                raise EmoError(
                    f"refusing to store NaN or infinite feature values of {', '.join(bad[:5])}", path=self.directory
                )
            _write_atomic(table, self.directory / PARTS_DIR / f"{key}.parquet", dictionary=False)
            self._rows = []
        if self._failures:
            table = pa.Table.from_pylist(
                [
                    {
                        "sample_id": failure.sample_id,
                        "input_fingerprint": fingerprint,
                        "path": None if failure.path is None else str(failure.path),
                        "error_type": failure.error_type,
                        "message": failure.message,
                        "traceback": failure.traceback_tail,
                        "time": when,
                    }
                    for fingerprint, failure, when in self._failures
                ],
                schema=FAILURE_SCHEMA,
            )
            _write_atomic(table, self.directory / FAILURES_DIR / f"{key}.parquet")
            self._failures = []

    def _metadata(self) -> dict[str, str]:
        """Provenance in every Parquet file: a feature file says how it was made on its own."""
        spec = self.spec["extractor"]
        metadata = {
            "feature_set": self.report.name,
            "extractor": spec["extractor"],
            "modality": spec["modality"],
            "kind": spec["kind"],
            "dim": str(spec["dim"]),
            "params": json.dumps(spec["params"], sort_keys=True),
            "versions": json.dumps(spec["versions"], sort_keys=True),
            "dataset": json.dumps(self.spec["dataset"], sort_keys=True),
            "created": _now(),
            "store_format": STORE_FORMAT,
        }
        if self.spec["feature_names"]:
            metadata["feature_names"] = json.dumps(self.spec["feature_names"])
        return {META + key: value for key, value in metadata.items()}
