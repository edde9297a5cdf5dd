from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from emocli.core.errors import ConfigError, DatasetError
from emocli.datasets import load_dataset
from emocli.datasets.ravdess import EMOTIONS, RavdessAdapter


def touch(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ---------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real(ravdess_root):
    return load_dataset("ravdess", ravdess_root)


@pytest.mark.realdata
def test_real_counts_labels_and_protocols(real):
    table = real.table
    assert len(table) == 1440
    assert real.labels.names == EMOTIONS and real.labels.task == "single_label"
    counts = table["label"].value_counts().to_dict()
    assert counts == {"neutral": 96, **{name: 192 for name in EMOTIONS[1:]}}
    assert table["fold"].value_counts().to_dict() == {0: 240, 1: 240, 2: 240, 3: 240, 4: 240}
    assert table["fold"].isna().sum() == 240
    assert (table.loc[table["fold"].isna(), "actor"] >= 21).all()
    assert table["split"].value_counts().to_dict() == {"train": 1200, "test": 240}
    assert set(table.loc[table["split"] == "test", "actor"]) == {21, 22, 23, 24}
    # fold i holds out actors 4i+1..4i+4
    for fold in range(5):
        assert set(table.loc[table["fold"] == fold, "actor"]) == {4 * fold + a for a in (1, 2, 3, 4)}
    assert table["speaker"].nunique() == 24 and table["speaker"].str.fullmatch(r"actor_\d\d").all()
    assert set(real.protocols) == {"split", "fold"}


@pytest.mark.realdata
def test_real_paths_and_clip_keys_match_the_action_unit_table(real, ravdess_root):
    table = real.table
    assert table["sample_id"].is_unique
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in table["audio_path"])
    assert all(Path(p).name.startswith("03-01-") for p in table["audio_path"])
    assert table["video_path"].isna().all()  # the shared copy has no videos
    clips = pd.read_parquet(ravdess_root / "openface_au.parquet", columns=["clip"])["clip"]
    assert set(table["clip_key"]) == set(clips)
    assert (table["clip_key"] == "01-" + table["sample_id"]).all()
    row = table.set_index("sample_id").loc["01-05-02-01-02-12"]  # angry, strong, statement 1, rep 2, actor 12
    assert row["label"] == "angry" and row["intensity"] == "strong" and row["statement"] == 1
    assert row["repetition"] == 2 and row["actor"] == 12 and row["gender"] == "female"
    assert row["speaker"] == "actor_12" and row["fold"] == 2 and row["split"] == "train"
    assert Path(row["audio_path"]).name == "03-01-05-02-01-02-12.flac"


# ------------------------------------------------------------------------------------------------ fixtures


def test_audio_and_video_files_of_one_clip_are_one_sample(tmp_path):
    wav = touch(tmp_path, "Audio_Speech_Actor_12/Actor_12/03-01-05-01-02-01-12.wav")
    mp4 = touch(tmp_path, "Video_Speech_Actor_12/Actor_12/01-01-05-01-02-01-12.mp4")
    only_video = touch(tmp_path, "deep/er/01-01-08-02-01-02-22.MP4")
    touch(tmp_path, "Video_Speech_Actor_12/Actor_12/02-01-05-01-02-01-12.mp4")  # video only: skipped
    touch(tmp_path, "Audio_Song_Actor_12/03-02-03-01-01-01-12.wav")  # song: skipped by default
    touch(tmp_path, "Actor_12/._03-01-05-01-02-01-12.wav")  # macOS fork: ignored
    touch(tmp_path, "README.txt")
    samples = RavdessAdapter().load(tmp_path)
    table = samples.table.set_index("sample_id")
    assert list(table.index) == ["01-05-01-02-01-12", "01-08-02-01-02-22"]
    first = table.loc["01-05-01-02-01-12"]
    assert first["audio_path"] == str(wav.resolve()) and first["video_path"] == str(mp4.resolve())
    assert first["clip_key"] == "01-01-05-01-02-01-12"
    assert first["label"] == "angry" and first["fold"] == 2 and first["split"] == "train"
    assert first["text"] == "Dogs are sitting by the door"
    second = table.loc["01-08-02-01-02-22"]
    assert second["audio_path"] == second["video_path"] == str(only_video.resolve())
    assert second["label"] == "surprised" and pd.isna(second["fold"]) and second["split"] == "test"
    assert second["gender"] == "female" and second["intensity"] == "strong"


def test_song_channel_option(tmp_path):
    touch(tmp_path, "03-01-03-01-01-01-01.flac")
    touch(tmp_path, "03-02-03-01-01-01-01.flac")
    song = RavdessAdapter(vocal_channel="song").load(tmp_path).table
    assert list(song["sample_id"]) == ["02-03-01-01-01-01"] and list(song["vocal_channel"]) == ["song"]
    both = RavdessAdapter(vocal_channel="both").load(tmp_path).table
    assert sorted(both["sample_id"]) == ["01-03-01-01-01-01", "02-03-01-01-01-01"]


def test_canonical_columns_come_first(tmp_path):
    touch(tmp_path, "03-01-01-01-01-01-01.wav")
    table = RavdessAdapter().load(tmp_path).table
    assert list(table.columns[:13]) == [
        "sample_id", "dialogue_id", "position", "speaker", "split", "fold", "label", "labels", "text",
        "audio_path", "video_path", "start_s", "end_s",
    ]  # fmt: skip
    assert list(table.columns[13:]) == [
        "clip_key", "actor", "gender", "vocal_channel", "intensity", "statement", "repetition", "language",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("03-01-05-01-02-12.wav", "7 two-digit fields"),
        ("03-01-05-01-02-01-12-01.wav", "7 two-digit fields"),
        ("03-01-5-01-02-01-12.wav", "7 two-digit fields"),
        ("03-01-09-01-02-01-12.wav", "unknown emotion code '09'"),
        ("04-01-05-01-02-01-12.wav", "unknown modality code '04'"),
        ("03-03-05-01-02-01-12.wav", "unknown vocal channel code '03'"),
        ("03-01-05-03-02-01-12.wav", "unknown intensity code '03'"),
        ("03-01-05-01-02-01-25.wav", "unknown actor code '25'"),
        ("03-01-05-01-02-01-12.mp4", "must be .wav or .flac"),
    ],
)
def test_malformed_names_are_errors_naming_the_file(tmp_path, name, problem):
    touch(tmp_path, "03-01-01-01-01-01-01.wav")
    bad = touch(tmp_path, f"Actor_12/{name}")
    with pytest.raises(DatasetError, match=problem) as error:
        RavdessAdapter().load(tmp_path)
    assert error.value.path == bad
    assert str(bad) in str(error.value)


def test_two_files_for_one_clip_is_an_error(tmp_path):
    touch(tmp_path, "a/03-01-01-01-01-01-01.wav")
    touch(tmp_path, "b/03-01-01-01-01-01-01.flac")
    with pytest.raises(DatasetError, match="two files for clip 01-01-01-01-01-01"):
        RavdessAdapter().load(tmp_path)


def test_empty_or_missing_folder_is_an_error(tmp_path):
    touch(tmp_path, "notes.txt")
    touch(tmp_path, "02-01-01-01-01-01-01.mp4")  # video only: nothing to read
    with pytest.raises(DatasetError, match="no RAVDESS clips found") as error:
        RavdessAdapter().load(tmp_path)
    assert error.value.path == tmp_path
    with pytest.raises(DatasetError, match="not a folder"):
        RavdessAdapter().load(tmp_path / "absent")


def test_unknown_option_is_rejected():
    with pytest.raises(ConfigError, match="unknown option 'vocal'.*its options: vocal_channel"):
        RavdessAdapter(vocal="song")


def test_module_imports_no_torch():
    code = "import sys, emocli.datasets.ravdess; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
