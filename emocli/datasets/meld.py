"""MELD (Poria et al., ACL 2019): multi-party conversations from Friends, 7 emotions per utterance.

Reads the official annotation CSVs (train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv) and, when
they are under the root, the released utterance videos `dia{d}_utt{u}.mp4` of each split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from emocli.core.errors import DatasetError
from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.datasets.base import (
    AdapterOptions,
    Checksum,
    DatasetAdapter,
    DefaultExtractor,
    Licence,
    RemoteFile,
)

EMOTIONS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")  # MultiEMO's order
SPLIT_FILES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
COLUMNS = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
)  # fmt: skip
# The folders the official MELD.Raw archives unpack to.
OFFICIAL_VIDEO_DIRS = {
    "train_splits": "train",
    "dev_splits_complete": "valid",
    "output_repeated_splits_test": "test",
}
_SPLIT_WORDS = {"train": "train", "dev": "valid", "valid": "valid", "val": "valid", "validation": "valid",
                "test": "test"}  # fmt: skip
_VIDEO_NAME = re.compile(r"^dia(\d+)_utt(\d+)\.mp4$", re.IGNORECASE)
_TIME = re.compile(r"^(\d+):(\d\d):(\d\d)[,.](\d+)$")

SplitName = Literal["train", "valid", "test"]


class MeldOptions(AdapterOptions):
    splits: list[SplitName] = ["train", "valid", "test"]
    """Which splits to read (their CSVs must exist)."""
    video_dirs: dict[SplitName, str] = {}
    """Split -> folder of its dia{d}_utt{u}.mp4 files (relative to the root, or absolute); overrides the
    search for that split."""
    find_videos: bool = True
    """Search the root for the utterance videos (turn off to read the CSVs only, e.g. on a slow disk)."""


def read_utf8_csv(path: Path):
    """A CSV as a DataFrame of strings; DatasetError naming the byte offset when it is not UTF-8."""
    import io

    import pandas as pd

    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read the file: {error.strerror or error}", path=path) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DatasetError(
            f"not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} (line {line}) cannot be "
            "decoded; save the file as UTF-8",
            path=path,
        ) from None
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"not a readable CSV: {error}", path=path) from None


def _seconds(stamps, path: Path, first_row: int, column: str):
    """'HH:MM:SS,mmm' strings -> seconds (NA where empty); DatasetError naming the row of a bad one."""
    import pandas as pd

    parts = stamps.str.strip().str.extract(_TIME)
    empty = stamps.str.strip() == ""
    bad = parts[0].isna() & ~empty
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DatasetError(
            f"{column} {stamps.iloc[i]!r} is not a time like 00:16:16,059", path=path, row=first_row + i
        )
    hours, minutes, seconds = (pd.to_numeric(parts[k]) for k in range(3))
    fraction = pd.to_numeric("0." + parts[3], errors="coerce")
    return (hours * 3600 + minutes * 60 + seconds + fraction).astype("Float64")


def _read_split(path: Path, split: str):
    import pandas as pd

    if not path.is_file():
        raise DatasetError(f"MELD {split} annotations are missing (expected {path.name})", path=path)
    frame = read_utf8_csv(path)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"header (row 0): missing column(s) {', '.join(missing)}; MELD CSVs have {', '.join(COLUMNS)}",
            path=path,
        )
    if frame.empty:
        raise DatasetError("no rows", path=path)
    rows = pd.RangeIndex(1, len(frame) + 1)  # 1-based data rows, as in the error messages

    emotion = frame["Emotion"].str.strip().str.lower()
    unknown = ~emotion.isin(EMOTIONS)
    if unknown.any():
        i = int(unknown.to_numpy().nonzero()[0][0])
        raise DatasetError(
            f"unknown emotion {frame['Emotion'].iloc[i]!r} (Sr No. {frame['Sr No.'].iloc[i]}); "
            f"MELD emotions are {', '.join(EMOTIONS)}",
            path=path,
            row=int(rows[i]),
        )
    ids = {}
    for column in ("Dialogue_ID", "Utterance_ID"):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        bad = values.isna() | (values < 0) | (values % 1 != 0)
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DatasetError(
                f"{column} {frame[column].iloc[i]!r} is not a non-negative integer",
                path=path,
                row=int(rows[i]),
            )
        ids[column] = values.astype("int64")
    duplicated = pd.DataFrame(ids).duplicated(keep=False)
    if duplicated.any():
        where = duplicated.to_numpy().nonzero()[0][:2]
        raise DatasetError(
            f"dialogue {ids['Dialogue_ID'].iloc[where[0]]} utterance {ids['Utterance_ID'].iloc[where[0]]} "
            f"appears twice (rows {rows[where[0]]} and {rows[where[1]]})",
            path=path,
            row=int(rows[where[1]]),
        )

    table = pd.DataFrame(
        {
            "dialogue": ids["Dialogue_ID"],
            "position": ids["Utterance_ID"],
            "speaker": frame["Speaker"].str.strip(),
            "split": split,
            "label": emotion,
            "text": frame["Utterance"],
            "sentiment": frame["Sentiment"].str.strip().str.lower().astype("string"),
            "season": pd.to_numeric(frame["Season"].str.strip(), errors="coerce").astype("Int64"),
            "episode": pd.to_numeric(frame["Episode"].str.strip(), errors="coerce").astype("Int64"),
            "episode_start_s": _seconds(frame["StartTime"], path, 1, "StartTime"),
            "episode_end_s": _seconds(frame["EndTime"], path, 1, "EndTime"),
            "sr_no": pd.to_numeric(frame["Sr No."].str.strip(), errors="coerce").astype("Int64"),
        }
    )
    return table


def _split_of_folder(relative: Path) -> str | None:
    """The split a video folder belongs to: an official folder name, else a split word in its path."""
    for part in reversed(relative.parts):
        if part in OFFICIAL_VIDEO_DIRS:
            return OFFICIAL_VIDEO_DIRS[part]
    for part in reversed(relative.parts):
        for word in re.split(r"[^a-z]+", part.lower()):
            if word in _SPLIT_WORDS:
                return _SPLIT_WORDS[word]
    return None


def _videos_in(folder: Path) -> dict[tuple[int, int], Path]:
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _VIDEO_NAME.match(entry.name)
            if match and entry.is_file():
                found[(int(match[1]), int(match[2]))] = Path(entry.path)
    return found


def find_videos(root: Path, splits, explicit: dict[str, str], notes: list[str]) -> dict[str, dict]:
    """Split -> {(dialogue, utterance): mp4 path}, from the official folders or any folder under root
    whose path names the split; explicit folders (option video_dirs) win."""
    videos: dict[str, dict] = {split: {} for split in splits}
    for split, folder in explicit.items():
        path = Path(folder).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_dir():
            raise DatasetError(f"video folder of the {split} split does not exist", path=path)
        if split in videos:
            videos[split] = _videos_in(path)
    candidates = []  # (official?, depth, folder, split)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if not any(_VIDEO_NAME.match(name) for name in files):
            continue
        relative = Path(folder).relative_to(root)
        split = _split_of_folder(relative)
        if split is None:
            notes.append(
                f"{folder} holds dia*_utt*.mp4 videos but its path names no split; ignored "
                "(rename it or set the video_dirs option)"
            )
            continue
        candidates.append((relative.name not in OFFICIAL_VIDEO_DIRS, len(relative.parts), folder, split))
    for _, _, folder, split in sorted(candidates, reverse=True):  # official and shallow folders win
        if split in videos and split not in explicit:
            videos[split].update(_videos_in(Path(folder)))
    return videos


# The annotation CSVs at the last commit of declare-lab/MELD that changed them (cp1252 -> UTF-8); the
# sha256 values are of the files at that commit (git blob ids 91dd39cd, 357d4a5f, b91dbd63).
MELD_COMMIT = "ca3e1266db4cc4a4e802156e2f721c4cd114a696"
MELD_CSV_SOURCE = f"computed from the file at declare-lab/MELD commit {MELD_COMMIT[:12]}"
# The utterance videos: the Hugging Face copy of the authors' MELD.Raw.tar.gz, whose git-LFS pointer
# publishes its sha256 and size (commit 9abc51ee). Its three split archives sit inside it.
MELD_RAW_COMMIT = "9abc51ee7903424ffb971297608aa6d3d0de3bfa"


def _meld_csv(name: str, size: int, sha256: str) -> RemoteFile:
    return RemoteFile(
        url=f"https://raw.githubusercontent.com/declare-lab/MELD/{MELD_COMMIT}/data/MELD/{name}",
        name=name,
        size=size,
        checksum=Checksum(algorithm="sha256", value=sha256, source=MELD_CSV_SOURCE),
        description="annotation CSV: utterance, speaker, emotion, sentiment, dialogue and utterance ids, times",
    )


# Utterances of the official annotation CSVs (the files of MELD_COMMIT).
OFFICIAL_ROWS = {"train": 9_989, "valid": 1_109, "test": 2_610}


class MeldAdapter(DatasetAdapter):
    name = "meld"
    summary = "MELD conversations (Friends): 7 emotions per utterance, text + utterance videos"
    needs_on_disk = (
        "train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv (the official annotation CSVs); "
        "optionally the utterance videos dia{d}_utt{u}.mp4 in train_splits/, dev_splits_complete/, "
        "output_repeated_splits_test/ (or any folder under the root whose path names the split)"
    )
    Options = MeldOptions
    licence = Licence(
        name="GPL-3.0",
        url="https://github.com/declare-lab/MELD/blob/master/LICENSE",
        meaning="copyleft: what you redistribute from it stays GPL-3.0, with attribution (dialogue from Friends)",
    )
    remote_files = (
        _meld_csv("train_sent_emo.csv", 1_119_290, "d2fa2d6529cf03cac2989efec05c9b27d8fd2f4c8fc5974c7ae88aa537fa02db"),
        _meld_csv("dev_sent_emo.csv", 121_640, "2e89c6f8aa182d6f62f8c6331aece905ac7273ca4999660bfb5213e1d0370c1c"),
        _meld_csv("test_sent_emo.csv", 294_526, "8d37103938f7067600839fe29d5a114a6cd1bcdafb75bec101e06464c5006888"),
        RemoteFile(
            url=f"https://huggingface.co/datasets/declare-lab/MELD/resolve/{MELD_RAW_COMMIT}/MELD.Raw.tar.gz",
            name="MELD.Raw.tar.gz",
            size=10_878_146_150,
            checksum=Checksum(
                algorithm="sha256",
                value="a56b4407d574195cbce470d86f9c9d72fcfea59b0e34502ecd4babee4a5c613e",
                source=f"the git-LFS pointer of declare-lab/MELD on Hugging Face, commit {MELD_RAW_COMMIT[:7]}",
            ),
            unpack="tar",
            optional=True,
            description="the utterance videos (train/dev/test archives inside, unpacked too)",
        ),
    )
    default_extraction = (DefaultExtractor(modality="text", preset="minilm"),)

    def load(self, root: Path) -> SampleSet:
        import pandas as pd

        root = Path(root)
        if not root.is_dir():
            raise DatasetError("MELD root is not a folder", path=root)
        splits = [s for s in ("train", "valid", "test") if s in self.options.splits]
        if not splits:
            raise DatasetError("the splits option names no split", path=root)
        for split in self.options.video_dirs:
            if split not in splits:
                raise DatasetError(f"video_dirs names split {split!r}, which is not read", path=root)
        notes: list[str] = []
        tables = [_read_split(root / SPLIT_FILES[split], split) for split in splits]
        for split, part in zip(splits, tables):
            if len(part) != OFFICIAL_ROWS[split]:  # a copy cut short at a line end still parses
                notes.append(f"{SPLIT_FILES[split]}: {len(part):,} utterances where the official file has "
                             f"{OFFICIAL_ROWS[split]:,} (a partial copy, or another version)")
        table = pd.concat(tables, ignore_index=True)
        order = {s: i for i, s in enumerate(("train", "valid", "test"))}
        table["_split_order"] = table["split"].map(order)
        table = table.sort_values(["_split_order", "dialogue", "position"], kind="stable").drop(
            columns="_split_order"
        )
        dia = "dia" + table["dialogue"].astype(str)
        table["dialogue_id"] = table["split"] + "/" + dia
        table["sample_id"] = table["dialogue_id"] + "_utt" + table["position"].astype(str)

        if self.options.find_videos or self.options.video_dirs:
            videos = find_videos(root, splits, dict(self.options.video_dirs), notes)
            paths = [
                str(videos[s].get((d, u)).resolve()) if (d, u) in videos[s] else None
                for s, d, u in zip(table["split"], table["dialogue"], table["position"])
            ]
            table["video_path"] = pd.array(paths, dtype="string")
            table["audio_path"] = table["video_path"]  # the audio comes from the mp4's track
            for split in splits:
                n_found = int(table.loc[table["split"] == split, "video_path"].notna().sum())
                n_rows = int((table["split"] == split).sum())
                if videos[split] and n_found < n_rows:
                    notes.append(f"{split}: {n_rows - n_found} of {n_rows} utterances have no video file")
        table = table.drop(columns="dialogue")

        return SampleSet(
            dataset=self.name,
            root=root,
            table=table,
            labels=LabelMap(names=EMOTIONS, task="single_label"),
            protocols={
                "split": "official MELD splits: train (train_sent_emo.csv), valid (dev_sent_emo.csv), "
                "test (test_sent_emo.csv); weighted F1 on test is the metric of record",
            },
            options=self.options.model_dump(mode="json"),
            notes=notes,
        )
