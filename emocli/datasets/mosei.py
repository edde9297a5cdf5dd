"""CMU-MOSEI (Zadeh et al., ACL 2018): YouTube monologue segments, six emotions and sentiment.

(Longer than most modules: the dataset circulates in three forms, aligned arrays, the SDK's .csd files and a
segment index, which this one adapter reads into the same sample table.)

Two layouts, either or both under the root (option `layout` picks one; "auto" prefers the aligned file):

(a) aligned: `train_valid_test.pt`, the torch-saved dict of HHMPN / TAILOR / MMER / SMILE. Each split
    data[split] holds 'src-text' N x [60, 300] (GloVe), 'src-audio' N x [60, 74] (COVAREP),
    'src-visual' N x [60, 35] (FACET) and 'tgt' (id lists [BOS=2, ids..., EOS=3]); data['dict']['tgt'] is
    the label vocabulary. Multi-label emotions; the features ship as PrecomputedFeatures. The file has
    no video ids: samples are "{split}/{i}".
(b) segments: `CMU_MOSEI_Labels.csv` (segment index: file, index, start, end, label2a, label2b, label6,
    label7, split) with `cmu_mosei_std_folds.json` (the SDK's standard video-id folds). Samples
    "{file}[{index}]" with start_s/end_s; media {file}.mp4 / {file}.wav anywhere under the root; the SDK's
    .csd files (HDF5 `<sequence>/data/<video>/{features, intervals}`) under the root become
    PrecomputedFeatures averaged over each segment, and CMU_MOSEI_Labels.csd gives the multi-label
    emotions (task "emotions").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from emocli.core.errors import DatasetError
from emocli.core.io import file_fingerprint, read_json
from emocli.core.paths import resolved
from emocli.core.samples import PrecomputedFeatures, SampleSet
from emocli.core.types import Features, LabelMap
from emocli.datasets.base import (
    ALLOW_PICKLE_HELP,
    AdapterOptions,
    Checksum,
    DatasetAdapter,
    DefaultExtractor,
    GatedAccess,
    Licence,
    RemoteFile,
)
from emocli.datasets.pickled import load_pickled

ALIGNED_FILE = "train_valid_test.pt"
SEGMENTS_FILE = "CMU_MOSEI_Labels.csv"
FOLDS_FILE = "cmu_mosei_std_folds.json"
SPLITS = ("train", "valid", "test")
FOLD_KEYS = {"standard_train_fold": "train", "standard_valid_fold": "valid", "standard_test_fold": "test"}
CSV_SPLITS = {0: "train", 1: "valid", 2: "test"}  # 3 = in no standard fold
SEGMENT_COLUMNS = ("file", "index", "start", "end", "label2a", "label2b", "label6", "label7", "split")

# Aligned file: target vocabulary constants of HHMPN's preprocessing.
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS = {"<blank>", "<pad>", "<unk>", "<s>", "</s>", "<bos>", "<eos>", "<PAD>", "<UNK>", "<BOS>",
                  "<EOS>"}  # fmt: skip
ALIGNED_MODALITIES = (  # key, feature name, modality, description
    ("src-text", "glove", "text", "GloVe 300-d word vectors, word-aligned (60 steps)"),
    (
        "src-audio",
        "covarep",
        "audio",
        "COVAREP 74-d acoustic features averaged per word (60 steps); -inf -> 0",
    ),
    ("src-visual", "facet", "visual", "FACET 35-d facial features averaged per word (60 steps)"),
)

# The six emotions in the order of the SDK's label vector (after sentiment) and of label6.
EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
SENTIMENT_TASKS = {
    "label7": ("highly_negative", "negative", "weakly_negative", "neutral", "weakly_positive", "positive",
               "highly_positive"),  # values -3..3
    "label2a": ("negative", "non_negative"),  # values 0, 1
    "label2b": ("negative", "neutral", "positive"),  # values -1, 0, 1
}  # fmt: skip
_VALUE_RANGES = {
    "label6": range(0, 6),
    "label7": range(-3, 4),
    "label2a": range(0, 2),
    "label2b": range(-1, 2),
    "split": range(0, 4),
}
_OFFSETS = {"label6": 0, "label7": 3, "label2a": 0, "label2b": 1}  # value + offset = class index

# SDK computational sequences: file-name fragment -> (feature name, modality); None: not features.
CSD_KINDS = (
    ("timestampedwordvectors", ("glove", "text")),
    ("glove", ("glove", "text")),
    ("covarep", ("covarep", "audio")),
    ("facet", ("facet", "visual")),
    ("openface", ("openface", "visual")),
    ("labels", None),
    ("timestampedwords", None),
    ("timestampedphones", None),
)


class MoseiOptions(AdapterOptions):
    layout: Literal["auto", "aligned", "segments"] = "auto"
    """"aligned": train_valid_test.pt; "segments": CMU_MOSEI_Labels.csv + std folds; "auto": aligned
    when the file is there, else segments."""
    task: Literal["auto", "emotions", "label6", "label7", "label2a", "label2b"] = "auto"
    """"emotions": multi-label over the six emotions (aligned file, or segments with CMU_MOSEI_Labels.csd);
    "label6": single-label argmax emotion; "label7" / "label2a" / "label2b": sentiment classes.
    "auto": emotions for the aligned file, label6 for segments."""
    aligned_file: str = ALIGNED_FILE
    """Name (or path relative to the root) of the aligned torch file."""
    find_media: bool = True
    """segments: search the root for {video}.mp4 / {video}.wav."""
    read_csd: bool = True
    """segments: read the SDK .csd feature files found under the root."""
    emotion_threshold: float = 0.0
    """segments with task "emotions": an emotion is present when its intensity is above this."""
    allow_pickle: bool = Field(False, description=ALLOW_PICKLE_HELP)


def _walk(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(folder) / f for f in files if not f.startswith(".") and f.lower().endswith(suffixes)
        )
    return sorted(found)


def _find(root: Path, name: str) -> Path | None:
    """root/name, else the first file of that name below root."""
    if (root / name).is_file():
        return root / name
    for path in _walk(root, (name.lower(),)):
        if path.name == name:
            return path
    return None


def _source(path: Path, description: str, **more) -> dict:
    return {"file": str(path), "fingerprint": file_fingerprint(path), "description": description, **more}


# ----------------------------------------------------------------------------------------------------
# (a) the aligned torch file


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _label_vocabulary(data: dict, path: Path) -> dict[int, str] | None:
    """id -> name from data['dict']['tgt'] (a name->id or id->name dict, or a list); None when absent."""
    vocabulary = data.get("dict", {}).get("tgt") if isinstance(data.get("dict"), dict) else None
    if vocabulary is None:
        return None
    if isinstance(vocabulary, (list, tuple)):
        pairs = dict(enumerate(vocabulary))
    elif isinstance(vocabulary, dict):
        items = list(vocabulary.items())
        if all(isinstance(k, str) and _is_int(v) for k, v in items):
            pairs = {int(v): k for k, v in items}
        elif all(_is_int(k) and isinstance(v, str) for k, v in items):
            pairs = {int(k): v for k, v in items}
        else:
            raise DatasetError("data['dict']['tgt'] is neither a name->id nor an id->name mapping", path=path)
    else:
        raise DatasetError(f"data['dict']['tgt'] is a {type(vocabulary).__name__}, not a mapping", path=path)
    return {i: str(name) for i, name in sorted(pairs.items()) if i > EOS and str(name) not in SPECIAL_TOKENS}


def _arrays(values, path: Path, where: str) -> list[np.ndarray]:
    """A split's feature list/tensor [N, T, D] as a list of float32 [T, D] arrays."""
    if hasattr(values, "detach"):  # a torch tensor [N, T, D]
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray) and values.ndim == 3:
        block = np.ascontiguousarray(values, dtype=np.float32)
        return list(block)
    items = [
        np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32) for v in values
    ]
    for i, item in enumerate(items):
        if item.ndim != 2:
            raise DatasetError(
                f"{where} sample {i}: expected a [steps, dim] array, got shape {item.shape}", path=path
            )
    return items


def load_aligned(path: Path, allow_pickle: bool = False):
    # train_valid_test.pt of HHMPN / TAILOR / MMER / SMILE: a pickled dict of lists, tensors and arrays,
    # read as plain data only unless the user allows full unpickling (see datasets/pickled.py).
    data = load_pickled(path, "aligned MOSEI file", allow_pickle=allow_pickle)
    if not isinstance(data, dict):
        raise DatasetError(f"expected a dict with train/valid/test, got a {type(data).__name__}", path=path)
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise DatasetError(
            f"missing split(s) {', '.join(missing)} (keys: {', '.join(map(str, data))})", path=path
        )

    notes: list[str] = []
    vocabulary = _label_vocabulary(data, path)
    rows, values = [], {key: {} for key, *_ in ALIGNED_MODALITIES}
    dims: dict[str, int] = {}
    steps: dict[int, np.ndarray] = {}
    seen_ids: set[int] = set()
    for split in SPLITS:
        part = data[split]
        keys = [key for key, *_ in ALIGNED_MODALITIES] + ["tgt"]
        absent = [k for k in keys if not (isinstance(part, dict) and k in part)]
        if absent:
            raise DatasetError(f"data[{split!r}] lacks {', '.join(absent)}", path=path)
        n = len(part["tgt"])
        arrays = {}
        for key, *_ in ALIGNED_MODALITIES:
            arrays[key] = _arrays(part[key], path, f"data[{split!r}][{key!r}]")
            if len(arrays[key]) != n:
                raise DatasetError(
                    f"data[{split!r}][{key!r}] has {len(arrays[key])} samples but 'tgt' has {n}", path=path
                )
            for i, array in enumerate(arrays[key]):
                if dims.setdefault(key, array.shape[1]) != array.shape[1]:
                    raise DatasetError(
                        f"data[{split!r}][{key!r}] sample {i} has dim {array.shape[1]}, others {dims[key]}",
                        path=path,
                    )
        for i in range(n):
            target = part["tgt"][i]
            ids = [int(x) for x in (target.tolist() if hasattr(target, "tolist") else target)]
            emotion_ids = [x for x in ids if x not in (PAD, UNK, BOS, EOS)]
            for x in emotion_ids:
                if vocabulary is not None and x not in vocabulary:
                    raise DatasetError(
                        f"data[{split!r}]['tgt'][{i}] has label id {x}, "
                        "which data['dict']['tgt'] does not name",
                        path=path,
                    )
            seen_ids.update(emotion_ids)
            sample_id = f"{split}/{i}"
            rows.append({"sample_id": sample_id, "split": split, "_ids": sorted(set(emotion_ids))})
            for key, *_ in ALIGNED_MODALITIES:
                array = arrays[key][i]
                if key == "src-audio":
                    array[np.isneginf(array)] = 0.0  # COVAREP's log features hold -inf (as MMER/SMILE do)
                times = steps.setdefault(len(array), np.arange(len(array), dtype=np.float64))
                values[key][sample_id] = Features(array, times)

    if vocabulary is None:
        vocabulary = {i: f"label_{i - EOS - 1}" for i in sorted(seen_ids)}
        notes.append(
            "data['dict']['tgt'] is absent: label names are label_0.. in id order (ids 4.. of 'tgt'); "
            "HHMPN's documented order is happy, sad, anger, surprise, disgust, fear, but its id map varies"
        )
    names = tuple(vocabulary[i] for i in sorted(vocabulary))
    for row in rows:
        row["labels"] = [vocabulary[x] for x in row.pop("_ids")]
    precomputed = [
        PrecomputedFeatures(
            name=feature,
            modality=modality,
            kind="sequence",
            dim=dims[key],
            values=values[key],
            source=_source(
                path, description + "; times = step index (word-aligned steps, not seconds)", key=key
            ),
        )
        for key, feature, modality, description in ALIGNED_MODALITIES
    ]
    return rows, LabelMap(names=names, task="multi_label"), precomputed, notes


# ----------------------------------------------------------------------------------------------------
# (b) the segment index + standard folds


def _read_folds(path: Path) -> dict[str, str]:
    folds = read_json(path, dict, error=DatasetError)  # a regular file, bounded in size and depth
    missing = [k for k in FOLD_KEYS if k not in folds]
    if missing:
        raise DatasetError(f"missing fold(s) {', '.join(missing)}", path=path)
    split_of: dict[str, str] = {}
    for key, split in FOLD_KEYS.items():
        for video in folds[key]:
            video = str(video)
            if split_of.setdefault(video, split) != split:
                raise DatasetError(f"video {video!r} is in both {split_of[video]} and {split}", path=path)
    return split_of


def read_segments(path: Path):
    """CMU_MOSEI_Labels.csv, validated; DatasetError naming the row (1-based data row) of a bad value."""
    import pandas as pd

    from emocli.datasets.meld import read_utf8_csv

    frame = read_utf8_csv(path)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in SEGMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"header: missing column(s) {', '.join(missing)}", path=path)
    if frame.empty:
        raise DatasetError("no rows", path=path)
    out = pd.DataFrame({"video_id": frame["file"].str.strip()})
    if (out["video_id"] == "").any():
        raise DatasetError(
            "empty file (video id)", path=path, row=int((out["video_id"] == "").to_numpy().argmax()) + 1
        )
    for column in ("index", *_VALUE_RANGES):
        numbers = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        valid = _VALUE_RANGES.get(column)
        bad = numbers.isna() | (numbers % 1 != 0)
        bad |= (numbers < 0) if valid is None else ~numbers.isin(list(valid))
        if bad.any():
            i = int(bad.to_numpy().argmax())
            expected = "a non-negative integer" if valid is None else f"one of {list(valid)}"
            raise DatasetError(f"{column} {frame[column].iloc[i]!r} is not {expected}", path=path, row=i + 1)
        out[column] = numbers.astype("int64")
    for column in ("start", "end"):
        numbers = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        if numbers.isna().any():
            i = int(numbers.isna().to_numpy().argmax())
            raise DatasetError(f"{column} {frame[column].iloc[i]!r} is not a number", path=path, row=i + 1)
        out[column] = numbers.astype("float64")
    backwards = out["end"] < out["start"]
    if backwards.any():
        i = int(backwards.to_numpy().argmax())
        raise DatasetError(f"segment ends ({out['end'].iloc[i]}) before it starts", path=path, row=i + 1)
    duplicated = out.duplicated(["video_id", "index"], keep="first")
    if duplicated.any():
        i = int(duplicated.to_numpy().argmax())
        raise DatasetError(
            f"segment {out['video_id'].iloc[i]}[{out['index'].iloc[i]}] appears twice", path=path, row=i + 1
        )
    return out


def _csd_kind(path: Path):
    stem = path.stem.lower().replace("_", "").replace("-", "").replace(" ", "")
    for fragment, kind in CSD_KINDS:
        if fragment in stem:
            return kind
    return "unknown"


def _open_csd(path: Path):
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py ships with the environment
        raise DatasetError("reading .csd files needs h5py (pip install h5py)", path=path) from None
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(f"not an HDF5 computational sequence: {error}", path=path) from None
    groups = [k for k in handle.keys() if "data" in handle[k]]
    if len(groups) != 1:
        handle.close()
        raise DatasetError(
            "expected one computational sequence <name>/data/<video>/{features, intervals}", path=path
        )
    return handle, handle[groups[0]]["data"]


def _csd_video(data, video: str, path: Path):
    entry = data[video]
    try:
        features = np.asarray(entry["features"][()], dtype=np.float64)
        intervals = np.asarray(entry["intervals"][()], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"video {video}: unreadable features/intervals ({error})", path=path) from None
    if features.ndim != 2 or intervals.shape != (len(features), 2):
        raise DatasetError(
            f"video {video}: features {features.shape} and intervals {intervals.shape} do not pair up",
            path=path,
        )
    return features, intervals


def _overlapping(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    return (intervals[:, 0] < end) & (intervals[:, 1] > start)


def segment_features(
    path: Path, segments, name: str, modality: str
) -> tuple[PrecomputedFeatures | None, int]:
    """One vector per segment: the mean of the sequence's frames overlapping [start, end] (-inf/NaN -> 0)."""
    handle, data = _open_csd(path)
    values, dim, missing = {}, None, 0
    with handle:
        for video, group in segments.groupby("video_id", sort=False):
            if video not in data:
                missing += len(group)
                continue
            features, intervals = _csd_video(data, video, path)
            features = np.where(np.isfinite(features), features, 0.0)
            dim = features.shape[1] if dim is None else dim
            if features.shape[1] != dim:
                raise DatasetError(f"video {video}: dim {features.shape[1]}, other videos {dim}", path=path)
            starts = group["start_s"].to_numpy(dtype=np.float64)
            ends = group["end_s"].to_numpy(dtype=np.float64)
            if (np.diff(intervals[:, 0]) >= 0).all() and (np.diff(intervals[:, 1]) >= 0).all():
                # frames in time order: those overlapping [start, end] are the run first..last - 1
                first = np.searchsorted(intervals[:, 1], starts, side="right")
                last = np.searchsorted(intervals[:, 0], ends, side="left")
                sums = np.concatenate([np.zeros((1, dim)), np.cumsum(features, axis=0)])
                for sample_id, lo, hi in zip(group["sample_id"], first, last):
                    if hi <= lo:
                        missing += 1
                        continue
                    values[sample_id] = Features((sums[hi] - sums[lo]) / (hi - lo))
                continue
            for sample_id, start, end in zip(group["sample_id"], starts, ends):
                mask = _overlapping(intervals, start, end)
                if not mask.any():
                    missing += 1
                    continue
                values[sample_id] = Features(features[mask].mean(axis=0))
    if not values:
        return None, missing
    feature = PrecomputedFeatures(
        name=name,
        modality=modality,
        kind="vector",
        dim=int(dim),
        values=values,
        source=_source(path, f"CMU SDK computational sequence {path.name}, frames averaged per segment"),
    )
    return feature, missing


def segment_emotions(path: Path, segments, threshold: float) -> dict[str, list[str]]:
    """sample_id -> emotions above threshold, from CMU_MOSEI_Labels.csd ([sentiment, happy, sad, anger,
    surprise, disgust, fear] per labelled interval; the interval overlapping a segment most is used)."""
    handle, data = _open_csd(path)
    labels = {}
    with handle:
        for video, group in segments.groupby("video_id", sort=False):
            if video not in data:
                continue
            features, intervals = _csd_video(data, video, path)
            if features.shape[1] != 1 + len(EMOTIONS):
                raise DatasetError(
                    f"video {video}: expected 7 label values [sentiment, {', '.join(EMOTIONS)}], "
                    f"got {features.shape[1]}",
                    path=path,
                )
            for sample_id, start, end in zip(group["sample_id"], group["start_s"], group["end_s"]):
                overlap = np.minimum(intervals[:, 1], end) - np.maximum(intervals[:, 0], start)
                best = int(np.argmax(overlap))
                if overlap[best] <= 0:
                    continue
                labels[sample_id] = [e for e, v in zip(EMOTIONS, features[best, 1:]) if v > threshold]
    return labels


# The segment index as s3prl ships it and the CMU Multimodal SDK's standard folds (a Python file of three
# lists, turned into FOLDS_FILE); both pinned to a commit, their sha256 computed from the files there.
S3PRL_COMMIT = "5f1eb812c10a3f0a686bc24662fc8c3ab0e6d18e"
SDK_COMMIT = "4f2eadcd7e7b9e20e83b868cdad385b41830285c"


class MoseiAdapter(DatasetAdapter):
    name = "mosei"
    summary = "CMU-MOSEI segments: 6 emotions (multi-label, aligned features) or argmax emotion/sentiment"
    needs_on_disk = (
        "train_valid_test.pt (aligned GloVe/COVAREP/FACET + multi-label targets, as used by SMILE/MMER), "
        "and/or CMU_MOSEI_Labels.csv + cmu_mosei_std_folds.json (segment index + standard folds), "
        "optionally the SDK's *.csd files and raw {video}.mp4/.wav anywhere under the root"
    )
    Options = MoseiOptions
    licence = Licence(
        name="index Apache-2.0, folds MIT; videos and features: CMU's terms",
        url="https://github.com/CMU-MultiComp-Lab/CMU-MultimodalSDK",
        meaning="the segment index and folds are free to use with attribution; the YouTube videos are not shared",
    )
    remote_files = (
        RemoteFile(
            url=(
                f"https://raw.githubusercontent.com/s3prl/s3prl/{S3PRL_COMMIT}/"
                f"s3prl/downstream/mosei/utility/{SEGMENTS_FILE}"
            ),
            name=SEGMENTS_FILE,
            size=1_051_987,
            checksum=Checksum(
                algorithm="sha256",
                value="f80bef15ec18fc6f362773720e8f79e35bc4f20dc74d5aed3a44d7a097c7715c",
                source=f"computed from the file at s3prl/s3prl commit {S3PRL_COMMIT[:12]}",
            ),
            description="segment index: video, segment, start/end seconds, sentiment classes, argmax emotion",
        ),
        RemoteFile(
            url=(
                f"https://raw.githubusercontent.com/CMU-MultiComp-Lab/CMU-MultimodalSDK/{SDK_COMMIT}/"
                "mmsdk/mmdatasdk/dataset/standard_datasets/CMU_MOSEI/cmu_mosei_std_folds.py"
            ),
            name="cmu_mosei_std_folds.py",
            size=46_028,
            checksum=Checksum(
                algorithm="sha256",
                value="4e13a2f538cf02ab56144eb2a91ca48a4024ce64faaae790ab9ff1c3f399b473",
                source=f"computed from the file at CMU-MultiComp-Lab/CMU-MultimodalSDK commit {SDK_COMMIT[:12]}",
            ),
            unpack="python-literals-json",
            into=FOLDS_FILE,
            description="the SDK's standard train/valid/test video ids",
        ),
    )
    gated = GatedAccess(
        what="CMU-MOSEI's media and features",
        request_url="https://github.com/CMU-MultiComp-Lab/CMU-MultimodalSDK",
        how="the raw YouTube videos are not redistributed (ask the CMU MultiComp Lab); the processed features "
        "(*.csd) are fetched with the CMU Multimodal SDK",
        place="*.csd files, {video}.mp4 / {video}.wav (any depth) or the aligned train_valid_test.pt",
    )
    default_extraction = (DefaultExtractor(modality="audio", preset="compare2016"),)

    def load(self, root: Path) -> SampleSet:
        root = Path(root)
        options = self.options
        if root.is_file() and root.suffix in (".pt", ".pth"):
            aligned, folder = root, root.parent
        elif root.is_dir():
            folder = root
            named = Path(options.aligned_file).expanduser()
            named = named if named.is_absolute() else root / named
            aligned = named if named.is_file() else None
        else:
            raise DatasetError("MOSEI root is neither a folder nor the aligned .pt file", path=root)
        layout = options.layout
        if layout == "auto":
            layout = "aligned" if aligned is not None else "segments"
        if layout == "aligned":
            if aligned is None:
                raise DatasetError(
                    f"the aligned file {options.aligned_file} is not in this folder", path=root
                )
            if options.task not in ("auto", "emotions"):
                raise DatasetError(
                    f"task {options.task!r} needs the segments layout; the aligned file has emotions only",
                    path=aligned,
                )
            return self._aligned(root, aligned)
        return self._segments(root, folder)

    def _aligned(self, root: Path, path: Path) -> SampleSet:
        import pandas as pd

        rows, labels, precomputed, notes = load_aligned(path, allow_pickle=self.options.allow_pickle)
        return SampleSet(
            dataset=self.name,
            root=root,
            table=pd.DataFrame(rows),
            labels=labels,
            protocols={"split": "the aligned file's train/valid/test (16326 / 1871 / 4659 in the release)"},
            options=self.options.model_dump(mode="json"),
            precomputed=precomputed,
            notes=notes,
        )

    def _segments(self, root: Path, folder: Path) -> SampleSet:
        import pandas as pd

        options = self.options
        notes: list[str] = []
        csv_path = _find(folder, SEGMENTS_FILE)
        if csv_path is None:
            raise DatasetError(
                f"no MOSEI data: neither {options.aligned_file} nor {SEGMENTS_FILE} is under this folder",
                path=root,
            )
        segments = read_segments(csv_path)
        csv_split = segments["split"].map(CSV_SPLITS).astype("string")
        folds_path = _find(folder, FOLDS_FILE)
        if folds_path is not None:
            split_of = _read_folds(folds_path)
            split = segments["video_id"].map(split_of).astype("string")
            differs = split.fillna("none") != csv_split.fillna("none")
            if differs.any():
                i = int(differs.to_numpy().argmax())
                notes.append(
                    f"{int(differs.sum())} segments have a split in {FOLDS_FILE} that differs from the "
                    f"split column of {SEGMENTS_FILE} (first: row {i + 1}, {segments['video_id'].iloc[i]}); "
                    "the folds file wins"
                )
        else:
            split = csv_split
            notes.append(f"{FOLDS_FILE} not found: splits come from the split column of {SEGMENTS_FILE}")

        table = pd.DataFrame(
            {
                "sample_id": segments["video_id"] + "[" + segments["index"].astype(str) + "]",
                "split": split,
                "start_s": segments["start"],
                "end_s": segments["end"],
                "video_id": segments["video_id"],
                "segment_index": segments["index"],
                "label2a": segments["label2a"],
                "label2b": segments["label2b"],
                "label6": segments["label6"],
                "label7": segments["label7"],
                "csv_split": csv_split,
            }
        )
        task = "label6" if options.task == "auto" else options.task
        csd_files = _walk(folder, (".csd",)) if options.read_csd or task == "emotions" else []
        precomputed = []
        if task == "emotions":
            label_files = [p for p in csd_files if _csd_kind(p) is None and "label" in p.stem.lower()]
            if not label_files:
                raise DatasetError(
                    "task 'emotions' on segments needs CMU_MOSEI_Labels.csd (the SDK's label sequence) "
                    "under the root; use the aligned file or task label6",
                    path=root,
                )
            emotions = segment_emotions(label_files[0], table, options.emotion_threshold)
            unlabelled = table["sample_id"].map(lambda s: s not in emotions)
            if unlabelled.any():
                notes.append(
                    f"{int(unlabelled.sum())} segments have no interval in {label_files[0].name}; dropped"
                )
                table = table[~unlabelled].reset_index(drop=True)
            table["labels"] = [emotions[s] for s in table["sample_id"]]
            labels = LabelMap(names=EMOTIONS, task="multi_label")
        elif task == "label6":
            table["label"] = table["label6"].map(dict(enumerate(EMOTIONS)))
            labels = LabelMap(names=EMOTIONS, task="single_label")
            notes.append(
                "label6 is the argmax emotion; segments with no emotion at all are labelled happy (0)"
            )
        else:
            names = SENTIMENT_TASKS[task]
            table["label"] = (table[task] + _OFFSETS[task]).map(dict(enumerate(names)))
            labels = LabelMap(names=names, task="single_label")

        if options.read_csd:
            for path in csd_files:
                kind = _csd_kind(path)
                if kind is None:
                    continue
                if kind == "unknown":
                    notes.append(f"{path.name}: unknown computational sequence, not read")
                    continue
                feature, missing = segment_features(path, table, *kind)
                if feature is None:
                    notes.append(f"{path.name}: no frames overlap any segment; not used")
                    continue
                if missing:
                    notes.append(f"{path.name}: {missing} segments have no frames")
                if any(p.name == feature.name and p.modality == feature.modality for p in precomputed):
                    notes.append(
                        f"{path.name}: a second {feature.modality} '{feature.name}' sequence, not used"
                    )
                    continue
                precomputed.append(feature)

        if options.find_media:
            wanted = set(table["video_id"])
            videos, audios = {}, {}
            for path in _walk(folder, (".mp4", ".wav")):
                real = resolved(path)  # None: a link that loops, read as absent
                if path.stem in wanted and real is not None:
                    target = videos if path.suffix.lower() == ".mp4" else audios
                    target.setdefault(path.stem, str(real))
            table["video_path"] = pd.array([videos.get(v) for v in table["video_id"]], dtype="string")
            table["audio_path"] = pd.array(
                [audios.get(v, videos.get(v)) for v in table["video_id"]], dtype="string"
            )
        for column in ("video_id", "csv_split"):
            table[column] = table[column].astype("string")
        for column in ("segment_index", "label2a", "label2b", "label6", "label7"):
            table[column] = table[column].astype("Int64")

        fold_text = (
            f"the CMU SDK standard folds ({FOLDS_FILE})"
            if folds_path
            else f"the split column of {SEGMENTS_FILE}"
        )
        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=labels,
            protocols={
                "split": f"train/valid/test from {fold_text}, by video; segments of videos in no fold: NA",
            },
            options=self.options.model_dump(mode="json"),
            precomputed=precomputed,
            notes=notes,
        )
