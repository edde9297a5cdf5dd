from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from emocli.core.errors import DatasetError
from emocli.datasets import load_dataset
from emocli.datasets.meld import COLUMNS, EMOTIONS, MeldAdapter

FILES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}


def row(sr, d, u, emotion="neutral", speaker="Chandler", text="I’m fine.", start="00:16:16,059",
        end="00:16:21,731"):  # fmt: skip
    return {
        "Sr No.": sr, "Utterance": text, "Speaker": speaker, "Emotion": emotion, "Sentiment": "neutral",
        "Dialogue_ID": d, "Utterance_ID": u, "Season": 8, "Episode": 21, "StartTime": start, "EndTime": end,
    }  # fmt: skip


def write_csv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def small_meld(root: Path) -> Path:
    write_csv(root / FILES["train"], [row(1, 1, 0, "joy"), row(2, 0, 1, "anger", "Monica"), row(3, 0, 0)])
    write_csv(root / FILES["valid"], [row(1, 0, 0, "fear"), row(2, 0, 1, "surprise")])
    write_csv(
        root / FILES["test"], [row(1, 3, 0, "disgust"), row(2, 3, 1, "sadness", text="Line, with “quotes”")]
    )
    return root


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real(meld_root):
    return load_dataset("meld", meld_root)


@pytest.mark.realdata
def test_real_counts_and_labels(real):
    table = real.table
    assert len(table) == 13708
    assert table["split"].value_counts().to_dict() == {"train": 9989, "valid": 1109, "test": 2610}
    assert (
        real.labels.names == EMOTIONS == ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
    )
    test = table[table["split"] == "test"]["label"].value_counts().to_dict()
    assert test == {"neutral": 1256, "joy": 402, "anger": 345, "surprise": 281, "sadness": 208, "disgust": 68,
                    "fear": 50}  # fmt: skip
    dialogues = table.groupby("split")["dialogue_id"].nunique().to_dict()
    assert dialogues == {"train": 1038, "valid": 114, "test": 280}


@pytest.mark.realdata
def test_real_rows_are_ordered_and_complete(real):
    table = real.table
    assert table["sample_id"].is_unique
    order = table["split"].map({"train": 0, "valid": 1, "test": 2})
    dialogue = table["dialogue_id"].str.extract(r"dia(\d+)$")[0].astype(int)
    keys = list(zip(order, dialogue, table["position"]))
    assert keys == sorted(keys)
    first = table.iloc[0]
    assert first["sample_id"] == "train/dia0_utt0" and first["dialogue_id"] == "train/dia0"
    assert first["speaker"] == "Chandler" and first["position"] == 0 and first["label"] == "neutral"
    assert first["text"].startswith("also I was the point person on my company’s transition")
    assert first["episode_start_s"] == pytest.approx(976.059) and first["episode_end_s"] == pytest.approx(
        981.731
    )
    assert first["season"] == 8 and first["episode"] == 21 and first["sentiment"] == "neutral"
    assert table["start_s"].isna().all() and table["end_s"].isna().all()
    assert (
        table["video_path"].isna().all() and table["audio_path"].isna().all()
    )  # no videos in the shared copy
    assert table["text"].notna().all() and table["episode_start_s"].notna().all()
    assert (table["labels"].map(len) == 0).all()
    assert real.notes == []


# ------------------------------------------------------------------------------------------------ fixtures


def test_small_meld_is_sorted_with_ids(tmp_path):
    table = MeldAdapter().load(small_meld(tmp_path)).table
    assert list(table["sample_id"]) == [
        "train/dia0_utt0", "train/dia0_utt1", "train/dia1_utt0", "valid/dia0_utt0", "valid/dia0_utt1",
        "test/dia3_utt0", "test/dia3_utt1",
    ]  # fmt: skip
    assert list(table["label"]) == ["neutral", "anger", "joy", "fear", "surprise", "disgust", "sadness"]
    assert list(table["position"]) == [0, 1, 0, 0, 1, 0, 1]
    assert table.loc[6, "text"] == "Line, with “quotes”"
    assert table.loc[1, "speaker"] == "Monica"


def test_official_video_folders(tmp_path):
    small_meld(tmp_path)
    raw = tmp_path / "MELD.Raw"
    train_video = touch(raw / "train" / "train_splits" / "dia0_utt1.mp4")
    valid_video = touch(raw / "dev" / "dev_splits_complete" / "dia0_utt0.mp4")
    test_video = touch(raw / "test" / "output_repeated_splits_test" / "dia3_utt1.mp4")
    touch(raw / "test" / "output_repeated_splits_test" / "final_videos_testdia3_utt0.mp4")  # not the name
    samples = MeldAdapter().load(tmp_path)
    table = samples.table.set_index("sample_id")
    assert table.loc["train/dia0_utt1", "video_path"] == str(train_video.resolve())
    assert table.loc["train/dia0_utt1", "audio_path"] == str(train_video.resolve())
    assert table.loc["valid/dia0_utt0", "video_path"] == str(valid_video.resolve())
    assert table.loc["test/dia3_utt1", "video_path"] == str(test_video.resolve())
    assert table["video_path"].notna().sum() == 3
    assert any("train: 2 of 3 utterances have no video file" in note for note in samples.notes)


def test_other_video_folders_named_by_split(tmp_path):
    small_meld(tmp_path)
    touch(tmp_path / "videos" / "Test-clips" / "dia3_utt0.mp4")
    touch(tmp_path / "videos" / "dev" / "dia0_utt1.mp4")
    touch(tmp_path / "misc" / "dia0_utt0.mp4")  # which split? ignored, with a note
    samples = MeldAdapter().load(tmp_path)
    table = samples.table.set_index("sample_id")
    assert table.loc["test/dia3_utt0", "video_path"].endswith("videos/Test-clips/dia3_utt0.mp4")
    assert table.loc["valid/dia0_utt1", "video_path"].endswith("videos/dev/dia0_utt1.mp4")
    assert pd.isna(table.loc["train/dia0_utt0", "video_path"])
    assert any("misc" in note and "names no split" in note for note in samples.notes)


def test_video_dirs_option_and_find_videos_off(tmp_path):
    small_meld(tmp_path)
    clip = touch(tmp_path / "misc" / "dia0_utt0.mp4")
    table = MeldAdapter(video_dirs={"train": "misc"}).load(tmp_path).table.set_index("sample_id")
    assert table.loc["train/dia0_utt0", "video_path"] == str(clip.resolve())
    touch(tmp_path / "train_splits" / "dia0_utt0.mp4")
    table = MeldAdapter(find_videos=False).load(tmp_path).table
    assert table["video_path"].isna().all()
    with pytest.raises(DatasetError, match="video folder of the test split does not exist"):
        MeldAdapter(video_dirs={"test": "nowhere"}).load(tmp_path)


def test_splits_option(tmp_path):
    write_csv(tmp_path / FILES["test"], [row(1, 0, 0)])
    table = MeldAdapter(splits=["test"]).load(tmp_path).table
    assert list(table["sample_id"]) == ["test/dia0_utt0"]
    with pytest.raises(DatasetError, match="MELD train annotations are missing") as error:
        MeldAdapter().load(tmp_path)
    assert error.value.path == tmp_path / FILES["train"]


# -------------------------------------------------------------------------------------------------- errors


def test_missing_column_names_the_file(tmp_path):
    small_meld(tmp_path)
    bad = write_csv(tmp_path / FILES["valid"], [row(1, 0, 0)], columns=[c for c in COLUMNS if c != "Emotion"])
    with pytest.raises(DatasetError, match="missing column.*Emotion") as error:
        MeldAdapter().load(tmp_path)
    assert error.value.path == bad


def test_unknown_emotion_names_file_and_row(tmp_path):
    small_meld(tmp_path)
    bad = write_csv(tmp_path / FILES["test"], [row(1, 0, 0), row(2, 0, 1), row(7, 0, 2, "contempt")])
    with pytest.raises(DatasetError, match="unknown emotion 'contempt'") as error:
        MeldAdapter().load(tmp_path)
    assert error.value.path == bad and error.value.row == 3
    assert f"{bad}, row 3:" in str(error.value) and "Sr No. 7" in str(error.value)


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        (row(2, "x", 1), "Dialogue_ID 'x' is not a non-negative integer"),
        (row(2, 0, "1.5"), "Utterance_ID '1.5' is not a non-negative integer"),
        (row(2, 0, 1, start="16:16"), "StartTime '16:16' is not a time"),
        (row(2, 0, 0), "appears twice"),
    ],
)
def test_bad_values_name_the_row(tmp_path, bad_row, problem):
    small_meld(tmp_path)
    bad = write_csv(tmp_path / FILES["train"], [row(1, 0, 0), bad_row])
    with pytest.raises(DatasetError, match=problem) as error:
        MeldAdapter().load(tmp_path)
    assert error.value.path == bad and error.value.row == 2


def test_not_utf8_gives_the_byte_offset(tmp_path):
    small_meld(tmp_path)
    path = tmp_path / FILES["train"]
    data = path.read_bytes().replace("I’m".encode(), "I\x92m".encode("latin-1"), 1)
    path.write_bytes(data)
    offset = data.index(b"\x92")
    with pytest.raises(DatasetError, match=f"not UTF-8: byte 0x92 at offset {offset} \\(line 2\\)") as error:
        MeldAdapter().load(tmp_path)
    assert error.value.path == path


def test_root_must_be_a_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        MeldAdapter().load(tmp_path / "absent")


def test_module_imports_no_torch():
    code = "import sys, emocli.datasets.meld; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
