"""Your own data: a manifest file (CSV, TSV or JSON lines) listing one sample per row.

Columns (names are case-insensitive; see docs/DATASETS.md):

    audio, video, text        at least one per row; media paths relative to the manifest's folder
    label | labels            one label (single-label), or several (multi-label; ';'-separated in CSV,
                              a list in JSONL)
    sample_id                 default: the audio (else video) file stem, else "row<N>"
    split, fold, speaker, dialogue_id, position, start_s, end_s    optional
    anything else             kept as extra columns

Problems are collected over the whole file and reported together, each with its 1-based data row
(and, for JSON lines, the line), so a manifest can be fixed in one pass.

Labels are compared without case and surrounding spaces: 'HAPPY ', 'Happy' and 'happy' are one class,
named by its first spelling in the file (or by its spelling in the label_names option), and a note says
which spellings were merged. Hand-written manifests spell a class several ways far more often than they
mean two classes that differ only in case.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from emocli.core.errors import DatasetError
from emocli.core.io import MAX_DEPTH, TEXT_LIMIT, check_depth, nesting_depth, read_bytes
from emocli.core.paths import resolved
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import AdapterOptions, DatasetAdapter, DefaultExtractor

MEDIA = ("audio", "video")
CONTENT = ("audio", "video", "text")
KNOWN = (
    "sample_id", "audio", "video", "text", "label", "labels", "split", "fold", "speaker", "dialogue_id",
    "position", "start_s", "end_s",
)  # fmt: skip
SPLIT_NAMES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "validation": "valid",
               "test": "test"}  # fmt: skip
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
LABEL_SEPARATOR = ";"


class ManifestOptions(AdapterOptions):
    label_names: list[str] | None = None
    """The classes, in order (index = position). A label outside it is an error; labels match it without
    case. Default: the sorted set of labels in the manifest (spellings differing only in case are one
    class, named as first spelled)."""
    task: Literal["single_label", "multi_label"] | None = None
    """Default: single_label with a `label` column, multi_label with a `labels` column."""
    require_labels: bool = True
    """False: label/labels may be absent or empty (data to predict on)."""
    check_media: bool = True
    """Report media files that do not exist."""
    allow_outside: bool = False
    """Let rows name media outside the manifest's folder (after following links). Refused by default: a
    manifest someone else wrote could otherwise make emo open any file on the machine."""
    max_problems: int = 20
    """How many problems one error message lists (all are counted)."""


class _Problems:
    def __init__(self, path: Path, jsonl: bool, limit: int):
        self.path, self.jsonl, self.limit = path, jsonl, max(1, limit)
        self.items: list[tuple[str, str]] = []  # (where, problem)
        self.remedies: dict[str, None] = {}  # said once, after the problems

    def add(self, row: int, line: int, problem: str) -> None:
        where = f"{row} (line {line})" if self.jsonl else f"{row}"
        self.items.append((where, problem))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        remedies = "".join(f" ({remedy})" for remedy in self.remedies)
        if len(self.items) == 1:
            where, problem = self.items[0]
            raise DatasetError(problem + remedies, path=self.path, row=where)
        shown = "; ".join(f"row {where}: {problem}" for where, problem in self.items[: self.limit])
        more = f" (first {self.limit} listed)" if len(self.items) > self.limit else ""
        raise DatasetError(f"{len(self.items)} problems{more}: {shown}{remedies}", path=self.path)


def _decode(path: Path) -> str:
    data = read_bytes(path, TEXT_LIMIT, DatasetError)  # a regular file of bounded size: no FIFO, no /dev/zero
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetError("UTF-16 text (it starts with a UTF-16 byte order mark); save the manifest as UTF-8", path=path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DatasetError(
            f"not UTF-8: byte 0x{data[error.start]:02x} at byte offset {error.start} (line {line}) cannot be "
            "decoded; save the manifest as UTF-8",
            path=path,
        ) from None


def _records_csv(text: str, delimiter: str, path: Path, problems: _Problems):
    """(row, line, {column: value}) for each data row; the header's columns."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError("the manifest is empty (no header)", path=path) from None
    except csv.Error as error:
        raise DatasetError(f"header: not valid CSV ({error})", path=path) from None
    columns = [_canonical(c) for c in header]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DatasetError(f"header: column(s) {', '.join(duplicated)} appear twice", path=path)
    if "" in columns:
        raise DatasetError(f"header: column {columns.index('') + 1} has no name", path=path)
    records, row = [], 0
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            row += 1
            problems.add(row, line, f"not valid CSV ({error})")
            continue
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        row += 1
        if len(fields) > len(columns):
            problems.add(row, line, f"{len(fields)} fields but the header has {len(columns)} columns")
            continue
        records.append((row, line, dict(zip(columns, fields))))
    return records, columns


def _records_jsonl(text: str, problems: _Problems):
    records, columns, row = [], {}, 0
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of objects is accepted too
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"malformed JSON at line {error.lineno}: {error.msg}", path=problems.path
            ) from None
        except RecursionError:
            raise DatasetError(f"nested more than {MAX_DEPTH} levels deep", path=problems.path) from None
        check_depth(items, problems.path, DatasetError)
        lines = [(i + 1, item, None) for i, item in enumerate(items)]
    else:
        lines = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    item = json.loads(line)
                    deep = nesting_depth(item) > MAX_DEPTH
                except json.JSONDecodeError as error:
                    lines.append((number, None, f"malformed JSON: {error.msg} (column {error.colno})"))
                    continue
                except RecursionError:
                    item, deep = None, True
                lines.append((number, None, f"nested more than {MAX_DEPTH} levels deep") if deep else (number, item, None))
    for number, item, error in lines:
        row += 1
        if error is not None:
            problems.add(row, number, error)
            continue
        if not isinstance(item, dict):
            problems.add(row, number, f"expected a JSON object, got {type(item).__name__}")
            continue
        record = {}
        for key, value in item.items():
            name = _canonical(key)
            if name in record:
                problems.add(row, number, f"key {key!r} appears twice (names are case-insensitive)")
            record[name] = value
            columns.setdefault(name, None)
        records.append((row, number, record))
    return records, list(columns)


ALIASES = {"audio_path": "audio", "video_path": "video"}  # the sample table's names work too


def _canonical(name: str) -> str:
    name = str(name).strip()
    lower = name.lower()
    return ALIASES.get(lower, lower if lower in KNOWN else name)


def _text(value: Any) -> str | None:
    """A cell as text; None when empty or null."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value).strip()
    return text or None


def _number(value: Any, column: str, integer: bool) -> tuple[float | int | None, str | None]:
    """(number, problem)."""
    if isinstance(value, bool):
        return None, f"{column} {value!r} is not a number"
    if isinstance(value, (int, float)):
        number = value
    else:
        text = _text(value)
        if text is None:
            return None, None
        try:
            number = float(text)
        except ValueError:
            kind = "a non-negative integer" if integer else "a number"
            return None, f"{column} {text!r} is not {kind}"
    if not math.isfinite(number):
        return None, f"{column} {value!r} is not a finite number"
    if integer:
        if number != int(number) or number < 0:
            return None, f"{column} {value!r} is not a non-negative integer"
        return int(number), None
    if number < 0:
        return None, f"{column} {value!r} is negative"
    return float(number), None


def _label_list(value: Any) -> tuple[list[str], str | None]:
    """Labels of a multi-label cell; (labels, problem)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return [], None
    if isinstance(value, list):
        items = value
    elif isinstance(value, str):
        items = value.split(LABEL_SEPARATOR)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    else:
        return [], f"labels should be a list (or ';'-separated text), got {type(value).__name__}"
    labels = []
    for item in items:
        text = _text(item) if not isinstance(item, (list, dict)) else None
        if text is None:
            return [], f"empty label in labels {value!r}"
        if text not in labels:
            labels.append(text)
    return labels, None


def _storable(column: Any) -> Any:
    """An extra JSONL column as the store's Parquet can hold it: as read when its values share one type; as
    text (lists and objects as JSON) when they mix kinds, a list in one row and text in the next."""
    import pyarrow as pa

    try:
        pa.array(column.tolist(), from_pandas=True)
        return column
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        text = [None if _missing(v) else json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in column]
        return column.__class__(text, index=column.index, dtype="string")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class ManifestAdapter(DatasetAdapter):
    name = "manifest"
    summary = "your own data: a CSV/TSV/JSONL manifest of media files or text with labels"
    needs_on_disk = (
        "one manifest file (.csv, .tsv or .jsonl) with columns audio / video / text (at least one), label or "
        "labels, optionally sample_id, split, fold, speaker, dialogue_id, position, start_s, end_s; "
        "media paths relative to the manifest's folder"
    )
    Options = ManifestOptions
    default_extraction = (
        # Whisper base's encoder: offline, the strongest audio features measured here (docs/FEATURES.md), and
        # free of openSMILE's research-only licence.
        DefaultExtractor(modality="audio", preset="whisper-base"),
        DefaultExtractor(modality="text", preset="minilm"),
    )

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        path = Path(root)
        if not path.is_file():
            raise DatasetError("the manifest file does not exist (give the file, not its folder)", path=path)
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DatasetError(
                f"unknown manifest format {path.suffix!r}: use .csv, .tsv or .jsonl", path=path
            )
        options = self.options
        problems = _Problems(path, jsonl=fmt == "jsonl", limit=options.max_problems)
        text = _decode(path)
        if fmt == "jsonl":
            records, columns = _records_jsonl(text, problems)
        else:
            records, columns = _records_csv(text, "\t" if fmt == "tsv" else ",", path, problems)

        if not records:
            problems.raise_if_any()  # e.g. every JSON line malformed: say that, not "missing columns"
        header = []
        if not any(c in columns for c in CONTENT):
            header.append("missing required columns: need at least one of audio, video, text")
        has_label, has_labels = "label" in columns, "labels" in columns
        if has_label and has_labels:
            header.append("both label and labels columns: keep one (label: one class; labels: several)")
        elif not (has_label or has_labels) and options.require_labels:
            header.append("missing required column: label (one class per sample) or labels (multi-label)")
        if header:
            raise DatasetError(("header: " if fmt != "jsonl" else "") + "; ".join(header), path=path)
        if not records and not problems.items:
            raise DatasetError("the manifest has no rows", path=path)
        task = options.task or ("multi_label" if has_labels else "single_label")
        # casefolded label -> the class name: from label_names, else the first spelling in the file
        spelling: dict[str, str] = {}
        if options.label_names is not None:
            for name in options.label_names:
                name = str(name).strip()
                if name.casefold() in spelling:
                    first = spelling[name.casefold()]
                    twice = f"a name twice ({name!r})" if first == name else f"{first!r} and {name!r}, one class"
                    raise DatasetError(
                        f"the label_names option lists {twice} (labels are compared without case)", path=path
                    )
                spelling[name.casefold()] = name
        spellings_seen: dict[str, set[str]] = {}

        def class_name(label: str) -> str:
            spellings_seen.setdefault(label.casefold(), set()).add(label)
            return spelling.setdefault(label.casefold(), label)

        base = path.resolve().parent  # a symlinked manifest's paths are relative to the file it points to
        folders: dict[str, Path | None] = {}  # each media folder resolved once: rows share a few folders

        def real_path(media: str) -> Path | None:
            """The media path with links followed (None: they loop)."""
            folder, name = os.path.split(media)
            if folder not in folders:
                folders[folder] = resolved(folder)
            if folders[folder] is None:
                return None
            candidate = folders[folder] / name
            return resolved(candidate) if os.path.islink(candidate) else candidate

        exists: dict[str, bool] = {}
        first_row: dict[str, int] = {}
        rows = []
        for row, line, record in records:
            out: dict[str, Any] = {}
            bad = len(problems.items)

            def problem(message: str, row=row, line=line) -> None:
                problems.add(row, line, message)

            for column in MEDIA:
                value = _text(record.get(column))
                if value is None:
                    out[f"{column}_path"] = None
                    continue
                media = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
                if not options.allow_outside:
                    target = real_path(media)
                    if target is None or not target.is_relative_to(base):
                        problem(f"{column} {value} lies outside the manifest's folder")
                        problems.remedies[f"emo reads only media inside {base} unless told otherwise: emo predict "
                                          "--allow-outside, emo extract --option allow_outside=true"] = None
                        out[f"{column}_path"] = media
                        continue
                if options.check_media:
                    if media not in exists:
                        exists[media] = os.path.isfile(media)
                    if not exists[media]:
                        problem(f"{column} file not found: {value} ({media})")
                out[f"{column}_path"] = media
            out["text"] = (
                None if record.get("text") is None or not str(record["text"]).strip() else str(record["text"])
            )
            if out["audio_path"] is None and out["video_path"] is None and out["text"] is None:
                problem("no audio, video or text")

            # labels
            out["label"], out["labels"] = None, []
            if has_labels or has_label:
                raw = record.get("labels" if has_labels else "label")
                if has_labels and task == "multi_label":
                    labels, error = _label_list(raw)
                elif has_labels:  # task single_label from a labels column: exactly one
                    labels, error = _label_list(raw)
                    if error is None and len(labels) > 1:
                        error = f"{len(labels)} labels {labels} but the task is single_label"
                else:
                    label = _text(raw)
                    if isinstance(raw, (list, dict)):
                        labels, error = [], f"label should be one class name, got {type(raw).__name__}"
                    else:
                        labels, error = ([label] if label is not None else []), None
                if error is not None:
                    problem(error)
                elif task == "single_label" and not labels and options.require_labels:
                    problem("empty label")
                else:
                    unknown = [x for x in labels if options.label_names is not None and x.casefold() not in spelling]
                    if unknown:
                        problem(f"unknown label {unknown[0]!r}: not one of {', '.join(options.label_names)}")
                    labels = list(dict.fromkeys(class_name(x) for x in labels if x not in unknown))
                    if task == "single_label":
                        out["label"] = labels[0] if labels else None
                    else:
                        out["labels"] = labels

            # identifiers and protocol columns
            sample_id = _text(record.get("sample_id"))
            if sample_id is None:
                media = out["audio_path"] or out["video_path"]
                sample_id = Path(media).stem if media else f"row{row}"
            if sample_id in first_row:
                problem(f"duplicate sample_id {sample_id!r} (also row {first_row[sample_id]})")
            else:
                first_row[sample_id] = row
            out["sample_id"] = sample_id
            split = _text(record.get("split"))
            if split is not None and split.lower() not in SPLIT_NAMES:
                problem(f"split {split!r} is not one of train, valid, test")
            out["split"] = SPLIT_NAMES.get(split.lower()) if split is not None else None
            for column in ("speaker", "dialogue_id"):
                out[column] = _text(record.get(column))
            for column, integer in (("fold", True), ("position", True), ("start_s", False), ("end_s", False)):
                out[column], error = _number(record.get(column), column, integer)
                if error:
                    problem(error)
            if out["start_s"] is not None and out["end_s"] is not None and out["end_s"] <= out["start_s"]:
                problem(f"end_s {out['end_s']} is not after start_s {out['start_s']}")
            for column, value in record.items():
                if column not in KNOWN:
                    out[column] = _text(value) if fmt != "jsonl" else value
            if len(problems.items) == bad:
                rows.append(out)
        problems.raise_if_any()

        if options.label_names is not None:
            names = tuple(str(name).strip() for name in options.label_names)
        else:
            seen = {r["label"] for r in rows if r["label"] is not None}
            seen.update(x for r in rows for x in r["labels"])
            names = tuple(sorted(seen))
        notes = [
            f"labels {', '.join(repr(s) for s in sorted(variants))} are one class, {spelling[key]!r} "
            "(labels are compared without case)"
            for key, variants in spellings_seen.items()
            if len(variants) > 1 or spelling[key] not in variants
        ]
        table = pd.DataFrame(rows)
        for column in table.columns:
            if column not in KNOWN and column not in ("audio_path", "video_path"):
                table[column] = table[column].astype("string") if fmt != "jsonl" else _storable(table[column])
        protocols = {}
        if table["split"].notna().any():
            protocols["split"] = "the manifest's split column"
        if table["fold"].notna().any():
            protocols["fold"] = "the manifest's fold column: the fold in which each sample is held out"
        return SampleSet(
            dataset=self.name,
            root=path,
            table=table,
            labels=LabelMap(names=names, task=task),
            protocols=protocols,
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
