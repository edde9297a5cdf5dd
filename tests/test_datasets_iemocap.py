"""IEMOCAP is licensed per user: tested on a small fixture written in the IEMOCAP_full_release layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emocli.core.errors import ConfigError, DatasetError
from emocli.datasets import load_dataset
from emocli.datasets.iemocap import IemocapAdapter

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
EVALUATORS = "C-E2:\tNeutral;\t()\nC-E3:\tFrustration;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"

# dialog -> [(start, end, utterance, code, text)] in the (unsorted) order of the evaluation file
DIALOGS = {
    1: {
        "Ses01F_impro01": [
            (6.2901, 8.2357, "Ses01F_impro01_F000", "neu", "Excuse me."),
            (10.01, 11.3925, "Ses01F_impro01_F001", "hap", "Yeah."),
            (7.5712, 10.4750, "Ses01F_impro01_M000", "fru", "Do you have your forms?"),
            (14.8872, 18.0175, "Ses01F_impro01_M001", "xxx", "Yeah, I can't hear you."),
            (20.0, 21.5, "Ses01F_impro01_M002", "exc", "Great!"),
        ],
    },
    5: {
        "Ses05M_script01_1": [
            (1.0, 2.0, "Ses05M_script01_1_M000", "sad", "Oh."),
            (2.5, 4.0, "Ses05M_script01_1_F000", "ang", "Stop it."),
            (4.5, 5.0, "Ses05M_script01_1_F001", "sur", "What?"),
            (5.5, 6.0, "Ses05M_script01_1_M001", "oth", "Hm."),
        ],
    },
}


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def evaluation_line(start, end, utterance, code) -> str:
    return f"[{start:.4f} - {end:.4f}]\t{utterance}\t{code}\t[2.5000, 3.0000, 3.5000]\n"


def make_release(root: Path, with_media: bool = True) -> Path:
    for session, dialogs in DIALOGS.items():
        folder = root / f"Session{session}"
        for dialog, utterances in dialogs.items():
            write(
                folder / "dialog" / "EmoEvaluation" / f"{dialog}.txt",
                HEADER + "".join(evaluation_line(s, e, u, c) + EVALUATORS for s, e, u, c, _ in utterances),
            )
            write(folder / "dialog" / "EmoEvaluation" / "Categorical" / f"{dialog}_e2_cat.txt", "junk\n")
            write(
                folder / "dialog" / "transcriptions" / f"{dialog}.txt",
                "".join(f"{u} [{s:08.4f}-{e:08.4f}]: {t}\n" for s, e, u, _, t in utterances)
                + "M: [BREATHING]\n",
            )
            if with_media:
                for _, _, utterance, _, _ in utterances:
                    write(folder / "sentences" / "wav" / dialog / f"{utterance}.wav")
                write(folder / "dialog" / "avi" / "DivX" / f"{dialog}.avi")
                write(folder / "dialog" / "wav" / f"{dialog}.wav")
    return root


@pytest.fixture
def release(tmp_path) -> Path:
    return make_release(tmp_path / "IEMOCAP_full_release")


def test_six_classes(release):
    samples = load_dataset("iemocap", release)
    assert samples.labels.names == ("happiness", "sadness", "neutral", "anger", "excitement", "frustration")
    table = samples.table
    assert list(table["sample_id"]) == [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_M000",
        "Ses01F_impro01_F001",
        "Ses01F_impro01_M002",
        "Ses05M_script01_1_M000",
        "Ses05M_script01_1_F000",
    ]  # fmt: skip  (by start time; xxx, sur, oth dropped)
    assert list(table["label"]) == ["neutral", "frustration", "happiness", "excitement", "sadness", "anger"]
    assert list(table["position"]) == [0, 1, 2, 3, 0, 1]
    assert list(table["dialogue_id"]) == ["Ses01F_impro01"] * 4 + ["Ses05M_script01_1"] * 2
    assert list(table["speaker"]) == ["Ses01F", "Ses01M", "Ses01F", "Ses01M", "Ses05M", "Ses05F"]
    assert list(table["gender"]) == ["female", "male", "female", "male", "male", "female"]
    assert list(table["split"]) == ["train"] * 4 + ["test"] * 2
    assert list(table["fold"]) == [0] * 4 + [4] * 2
    assert list(table["session"]) == [1] * 4 + [5] * 2
    assert list(table["dialog_type"]) == ["improvised"] * 4 + ["scripted"] * 2
    first = table.iloc[0]
    assert first["start_s"] == pytest.approx(6.2901) and first["end_s"] == pytest.approx(8.2357)
    assert first["text"] == "Excuse me." and first["emotion_code"] == "neu"
    assert (first["valence"], first["arousal"], first["dominance"]) == (2.5, 3.0, 3.5)
    # one timeline per row: the dialogue's wav and avi, cut at the segment
    assert first["audio_path"] == str((release / "Session1/dialog/wav/Ses01F_impro01.wav").resolve())
    assert first["video_path"] == str((release / "Session1/dialog/avi/DivX/Ses01F_impro01.avi").resolve())
    assert first["sentence_wav"] == str(
        (release / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").resolve()
    )
    assert first["dialog_video"] == first["video_path"] and first["dialog_start_s"] == first["start_s"]
    assert set(samples.protocols) == {"split", "fold"} and samples.notes == []


def test_four_classes_merge_excitement_into_happy(release):
    table = IemocapAdapter(classes=4).load(release).table
    assert IemocapAdapter(classes="4").load(release).labels.names == ("neutral", "happy", "sad", "angry")
    assert list(table["sample_id"]) == [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_F001",
        "Ses01F_impro01_M002",
        "Ses05M_script01_1_M000",
        "Ses05M_script01_1_F000",
    ]  # fmt: skip  (frustration dropped too)
    assert list(table["label"]) == ["neutral", "happy", "happy", "sad", "angry"]
    assert list(table["position"]) == [0, 1, 2, 0, 1]


def test_sentence_media_option_and_parent_root(release):
    table = IemocapAdapter(media="sentence").load(release.parent).table  # the folder holding the release
    assert (table["audio_path"] == table["sentence_wav"]).all()
    assert all(Path(p).name == f"{i}.wav" for p, i in zip(table["audio_path"], table["sample_id"]))
    assert table["video_path"].isna().all() and table["start_s"].isna().all() and table["end_s"].isna().all()
    assert table["dialog_start_s"].notna().all() and table["dialog_video"].notna().all()


def test_dialog_media_falls_back(release):
    (release / "Session1/dialog/wav/Ses01F_impro01.wav").unlink()  # the avi's audio track is used
    for path in (release / "Session5/dialog").glob("*/**/Ses05M_script01_1.*"):
        if path.suffix in (".wav", ".avi"):
            path.unlink()  # no dialogue media: the utterance wavs, whole
    samples = IemocapAdapter().load(release)
    table = samples.table.set_index("sample_id")
    assert table.loc["Ses01F_impro01_F000", "audio_path"] == table.loc["Ses01F_impro01_F000", "video_path"]
    assert table.loc["Ses01F_impro01_F000", "audio_path"].endswith("DivX/Ses01F_impro01.avi")
    five = table[table["session"] == 5]
    assert (five["audio_path"] == five["sentence_wav"]).all() and five["start_s"].isna().all()
    assert any("2 utterances have no dialogue wav or avi" in note for note in samples.notes)


def test_missing_media_leave_paths_empty(tmp_path):
    root = make_release(tmp_path, with_media=False)
    table = IemocapAdapter().load(root).table
    assert len(table) == 6
    assert table["audio_path"].isna().all() and table["video_path"].isna().all()
    assert table["sentence_wav"].isna().all()
    assert table["text"].notna().all()


def test_missing_transcription_leaves_text_empty(release):
    (release / "Session5/dialog/transcriptions/Ses05M_script01_1.txt").unlink()
    table = IemocapAdapter().load(release).table
    assert table.loc[table["session"] == 5, "text"].isna().all()
    assert table.loc[table["session"] == 1, "text"].notna().all()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[6.2901 - ]\tSes01F_impro01_F009\tneu\t[2.5, 2.5, 2.5]\n", "line 3: not an utterance line"),
        (
            "[6.2901 - 8.2357]\tSes01F_impro01_F009\tcontempt\t[2.5, 2.5, 2.5]\n",
            "line 3: unknown emotion code 'contempt'",
        ),
        (
            "[6.2901 - 8.2357]\tSes01F_impro02_F009\tneu\t[2.5, 2.5, 2.5]\n",
            "does not belong to dialog 'Ses01F_impro01'",
        ),
        (
            "[6.2901 - 8.2357]\tSes01F_impro01_F009\tneu\t[2.5, high, 2.5]\n",
            r"\[V, A, D\] should be three numbers",
        ),
    ],
)
def test_malformed_evaluation_names_file_and_line(release, line, problem):
    path = release / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    path.write_text(HEADER + line, encoding="utf-8")
    with pytest.raises(DatasetError, match=problem) as error:
        IemocapAdapter().load(release)
    assert error.value.path == path


def test_no_sessions_or_no_evaluations_are_errors(tmp_path, release):
    with pytest.raises(DatasetError, match="no IEMOCAP sessions found"):
        IemocapAdapter().load(tmp_path / "empty")
    write(release / "Session3" / "dialog" / "transcriptions" / "x.txt")
    with pytest.raises(DatasetError, match="no EmoEvaluation") as error:
        IemocapAdapter().load(release)
    assert error.value.path == release / "Session3" / "dialog" / "EmoEvaluation"


def test_no_usable_label_is_an_error(tmp_path):
    path = write(
        tmp_path / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt",
        HEADER + evaluation_line(1, 2, "Ses02F_impro01_F000", "xxx"),
    )
    with pytest.raises(DatasetError, match="no utterance with a 6-class label among 1"):
        IemocapAdapter().load(tmp_path)
    assert path.exists()


def test_bad_classes_option():
    with pytest.raises(ConfigError, match="option classes='5'"):
        IemocapAdapter(classes="5")


def test_module_imports_no_torch():
    code = "import sys, emocli.datasets.iemocap; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
