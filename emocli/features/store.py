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
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
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
from emocli.core.samples import SAMPLE_COLUMNS, PrecomputedFeatures, SampleSet, normalize_table
from emocli.core.types import Features
from emocli.features.base import Extractor, ExtractorParams
from emocli.features.runner import ExtractionRunner, SampleFailure, progress_bar, sample_records

if TYPE_CHECKING:
    from rich.progress import Progress

STORE_FORMAT = "1"
SAMPLES_FILE = "samples.parquet"
SPEC_FILE = "spec.json"
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
    extracted: int = 0
    cached: int = 0
    failed: int = 0  # failed in this run
    known_failures: int = 0  # failed before on the same input, not retried
    seconds: float = 0.0
    failures: list[SampleFailure] = field(default_factory=list)

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

    @property
    def n_failed(self) -> int:
        return sum(r.failed + r.known_failures for r in self.feature_sets)

    def summary(self) -> str:
        return "\n".join(f"{r.name}: {r.summary()}" for r in self.feature_sets)


# --- precomputed features as an extractor ------------------------------------------------------------

class PrecomputedExtractor(Extractor):
    """Serves features a dataset ships (SampleSet.precomputed) through the store's ordinary write path."""

    batch_size = 1024  # runs in the main process: the values are already in memory

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
    """A hidden name beside `path`, one per process: two runs extracting other feature sets of the same
    store both rewrite samples.parquet, and must not rename each other's half-written file away."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_atomic(table: pa.Table, path: Path, dictionary: bool = True) -> None:
    """Write to a hidden temporary file, flush it to disk, then rename: readers never see half a file.

    Feature tables pass dictionary=False: float features hardly ever repeat, and Parquet's attempt to
    dictionary-encode them costs 4-7x the write time and leaves the file 20-35 % larger.
    """
    temporary = _temporary(path)
    pq.write_table(table, temporary, use_dictionary=dictionary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_json_atomic(data: dict, path: Path) -> None:
    temporary = _temporary(path)
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temporary, path)


_commit_counter = itertools.count()


def _part_key() -> str:
    """Names that sort in commit order (time, then a per-process counter for commits in the same ns)."""
    return f"{time.time_ns():020d}-{os.getpid():07d}-{next(_commit_counter):06d}"


def _parts(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the store ---------------------------------------------------------------------------------------

class FeatureStore:
    """A directory of feature sets for one dataset; one writer at a time, readers see committed rows."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r})"

    # reading -------------------------------------------------------------------------------------

    def _samples_path(self) -> Path:
        path = self.path / SAMPLES_FILE
        if not path.is_file():
            raise EmoError("not a feature store (no samples.parquet); create it with `emo extract`", path=self.path)
        return path

    def samples(self) -> pd.DataFrame:
        """The dataset's canonical sample table (all samples, whichever were extracted)."""
        path = self._samples_path()
        table = pq.read_table(path).to_pandas()
        table["labels"] = table["labels"].map(lambda labels: [] if labels is None else list(labels))
        return normalize_table(table, source=path)

    def dataset(self) -> dict[str, Any]:
        """Provenance of the samples: SampleSet.describe() of the run that wrote them."""
        metadata = pq.read_schema(self._samples_path()).metadata or {}
        return json.loads(metadata.get(f"{META}dataset".encode(), b"{}"))

    def feature_sets(self) -> list[FeatureSetInfo]:
        """Every feature set of the store, sorted by name."""
        return [self.info(spec.parent.name) for spec in sorted(self.path.glob(f"*/{SPEC_FILE}"))]

    def find(self, modality: str | None = None, extractor: str | None = None) -> list[FeatureSetInfo]:
        return [
            info
            for info in self.feature_sets()
            if (modality is None or info.modality == modality) and (extractor is None or info.extractor == extractor)
        ]

    def info(self, name: str) -> FeatureSetInfo:
        directory = self._feature_set_dir(name)
        spec = json.loads((directory / SPEC_FILE).read_text())
        latest = self._latest_events(directory)
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

        Columns: sample_id, input_fingerprint, values (fixed_size_list<float32>[D] for vectors,
        list<fixed_size_list<float32>[D]> for sequences) and, for sequences, times (list<float64>, seconds).
        """
        directory = self._feature_set_dir(name)
        parts = _parts(directory / PARTS_DIR)
        if not parts:
            return self._empty_table(directory)
        tables = [pq.read_table(p) for p in parts]
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
        parts = _parts(directory / FAILURES_DIR)
        if not parts:
            return FAILURE_SCHEMA.empty_table().to_pandas()
        tables = [pq.read_table(p, schema=FAILURE_SCHEMA) for p in parts]
        table = pa.concat_tables(tables).to_pandas()
        table["part"] = np.repeat([p.stem for p in parts], [t.num_rows for t in tables])
        latest = self._latest_events(directory)
        failed = latest[latest["status"] == "failed"][["sample_id", "part"]]
        table = table.merge(failed, on=["sample_id", "part"])
        return table.drop(columns="part").sort_values("sample_id").reset_index(drop=True)

    def _feature_set_dir(self, name: str) -> Path:
        directory = self.path / name
        if not (directory / SPEC_FILE).is_file():
            known = ", ".join(d.name for d in sorted(self.path.glob(f"*/{SPEC_FILE}"))) or "none"
            raise EmoError(f"no feature set {name!r} (feature sets: {known})", path=self.path)
        return directory

    @staticmethod
    def _empty_table(directory: Path) -> pa.Table:
        spec = json.loads((directory / SPEC_FILE).read_text())["extractor"]
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
                events = pq.read_table(part, columns=["sample_id", "input_fingerprint"]).to_pandas()
                frames.append(events.assign(status=status, part=part.stem))
        if not frames:
            return pd.DataFrame(columns=["sample_id", "input_fingerprint", "status", "part"])
        events = pd.concat(frames, ignore_index=True).sort_values("part", kind="stable")
        return events.drop_duplicates("sample_id", keep="last").reset_index(drop=True)

    # writing -------------------------------------------------------------------------------------

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
    ) -> ExtractionReport:
        """Extract what is missing or stale for `sample_set` with `extractors` (plus the dataset's own
        precomputed features); commit rows in chunks; report what was extracted, cached and failed.

        `shard` ("K/N") restricts the run to a deterministic slice of the samples; `limit` to the first
        `limit` samples of that slice. samples.parquet always holds the whole dataset.
        """
        shard = Shard.parse(shard) if isinstance(shard, str) else shard
        self._write_samples(sample_set)
        everything = list(extractors) + [PrecomputedExtractor(p) for p in sample_set.precomputed]
        names = [e.feature_set_name for e in everything]
        if len(set(names)) != len(names):
            raise ConfigError("the same extractor configuration was given twice")

        selected = sample_set.table
        if shard is not None:
            selected = selected[selected["sample_id"].map(shard.contains)]
        if limit is not None:
            selected = selected.head(limit)

        plans = [self._plan(extractor, sample_set, selected, retry_failures) for extractor in everything]
        display = progress if not isinstance(progress, bool) else progress_bar(progress)
        with display, ExtractionRunner([p.extractor for p in plans if p.todo], workers) as runner:
            for plan in plans:
                plan.start(display, commit_rows)
            for job, index, result in runner.run_jobs([(p.extractor, [record for _, record in p.todo]) for p in plans]):
                plans[job].accept(index, result)
            for plan in plans:
                plan.finish()
        for plan in plans:
            if plan.report.extracted or plan.report.failed:
                self.compact(plan.extractor.feature_set_name)
        return ExtractionReport(self.path, [p.report for p in plans], shard)

    def _write_samples(self, sample_set: SampleSet) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / SAMPLES_FILE
        if path.is_file():
            held = self.dataset().get("dataset")
            if held != sample_set.dataset:
                raise ConfigError(f"this store holds dataset {held!r}, not {sample_set.dataset!r}", path=self.path)
        metadata = {f"{META}dataset": sample_set.describe_json(), f"{META}store_format": STORE_FORMAT}
        _write_atomic(_samples_table(sample_set.table, metadata), path)

    def _plan(
        self, extractor: Extractor, sample_set: SampleSet, selected: pd.DataFrame, retry_failures: bool
    ) -> _FeatureSetRun:
        directory = self.path / extractor.feature_set_name
        for leftover in directory.glob("*/.*.tmp"):  # a temporary part of a run that was killed
            leftover.unlink()
        spec_path = directory / SPEC_FILE
        created = json.loads(spec_path.read_text())["created"] if spec_path.is_file() else _now()
        spec = {
            "extractor": extractor.spec(),
            "feature_names": extractor.feature_names(),
            "dataset": sample_set.describe(),
            "created": created,
        }
        (directory / PARTS_DIR).mkdir(parents=True, exist_ok=True)
        (directory / FAILURES_DIR).mkdir(exist_ok=True)
        _write_json_atomic(spec, spec_path)

        prepared = extractor.prepare(sample_set.table)
        prepared = prepared[prepared["sample_id"].isin(selected["sample_id"])]
        records = sample_records(prepared)
        latest = self._latest_events(directory)
        previous_events = {  # sample_id -> (fingerprint, status); a failed fingerprint reads back as NaN
            sample_id: (fingerprint if isinstance(fingerprint, str) else None, status)
            for sample_id, fingerprint, status in zip(latest["sample_id"], latest["input_fingerprint"], latest["status"])
        }
        run = _FeatureSetRun(extractor, directory, spec, FeatureSetReport(extractor.feature_set_name))
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
        directory = self._feature_set_dir(name)
        old_parts = _parts(directory / PARTS_DIR) + _parts(directory / FAILURES_DIR)
        if len(old_parts) <= 2:
            return
        rows, failures = self.read(name), self.failures(name)
        key = _part_key()
        # The new parts sort after the old ones and hold the same latest events, so a crash at any point
        # here leaves a store that reads back identically.
        if rows.num_rows:
            _write_atomic(rows, directory / PARTS_DIR / f"{key}.parquet", dictionary=False)
        if len(failures):
            _write_atomic(pa.Table.from_pandas(failures, FAILURE_SCHEMA, preserve_index=False), directory / FAILURES_DIR / f"{key}.parquet")
        for part in old_parts:
            part.unlink()

    def merge(self, sources: Iterable[str | os.PathLike | FeatureStore]) -> None:
        """Bring the feature sets of other stores of the same dataset (e.g. shards) into this one."""
        self.path.mkdir(parents=True, exist_ok=True)
        for source in sources:
            source = source if isinstance(source, FeatureStore) else FeatureStore(source)
            theirs = source.samples()
            if (self.path / SAMPLES_FILE).is_file():
                ours = self.samples()
                if source.dataset().get("dataset") != self.dataset().get("dataset") or set(ours["sample_id"]) != set(theirs["sample_id"]):
                    raise ConfigError(f"holds other samples than {self.path} (another dataset or options)", path=source.path)
            else:
                shutil.copy2(source.path / SAMPLES_FILE, self.path / SAMPLES_FILE)
            for info in source.feature_sets():
                target = self.path / info.name
                for sub in (PARTS_DIR, FAILURES_DIR):
                    (target / sub).mkdir(parents=True, exist_ok=True)
                    for part in _parts(info.path / sub):
                        if not (target / sub / part.name).exists():
                            shutil.copy2(part, target / sub / part.name)
                if not (target / SPEC_FILE).exists():
                    shutil.copy2(info.path / SPEC_FILE, target / SPEC_FILE)
        for info in self.feature_sets():
            self.compact(info.name)


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
        self._task = display.add_task(self.report.name, total=len(self.todo), visible=bool(self.todo))

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
