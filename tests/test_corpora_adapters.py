"""The adapters of corpora labelled by their own file names or label files (TESS, URDU, nEMO, EMOVO, ASED,
CASIA, TurEV-DB; FER2013 and CK+48 faces): on tiny generated files named as each release names them, and on
the real corpora where `$EMO_<NAME>_ROOT` points to a copy (docs/DATASETS.md says what each holds)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from emocli.core.errors import DatasetError
from emocli.core.types import SHARED_EMOTIONS
from emocli.datasets import adapter_class, load_dataset
from emocli.datasets.casia import SENTENCE_FILE
from emocli.datasets.common import speaker_folds

CORPORA = ("tess", "urdu", "nemo", "emovo", "ased", "casia", "turev", "fer2013", "ckplus")


def _wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(160, dtype=np.float32), 16000, format="WAV")  # 0.01 s
    return buffer.getvalue()


WAV = _wav()


def write_files(root: Path, names: list[str], body: bytes = WAV) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return root


def image_bytes(suffix: str, value: int = 128) -> bytes:
    ok, encoded = cv2.imencode(suffix, np.full((8, 8), value, np.uint8))
    assert ok
    return encoded.tobytes()


def by_id(samples):
    return samples.table.set_index("sample_id")


def assert_whole_speakers(table) -> None:
    assert (table.groupby("speaker")["fold"].nunique() == 1).all()
    assert (table.groupby("speaker")["split"].nunique() == 1).all()


def assert_one_error_naming(root: Path, dataset: str, file_name: str, match: str) -> None:
    with pytest.raises(DatasetError, match=match) as error:
        load_dataset(dataset, root)
    assert error.value.path.name == file_name and "\n" not in str(error.value)


@pytest.mark.parametrize("name", CORPORA)
def test_each_corpus_declares_its_classes_on_the_shared_emotions(name):
    adapter = adapter_class(name)
    assert adapter.shared_labels and set(adapter.shared_labels.values()) <= set(SHARED_EMOTIONS)
    assert adapter.licence is not None and not adapter.remote_files
    modality = "visual" if name in ("fer2013", "ckplus") else "audio"
    assert [d.modality for d in adapter.default_extraction] == [modality]


# ------------------------------------------------------------------------------------------------ TESS


def test_tess_speaker_from_its_folder_word_in_the_carrier_phrase(tmp_path):
    root = write_files(tmp_path / "tess", [
        "OAF_angry/OAF_back_angry.wav", "OAF_neutral/OA_bite_neutral.wav",
        "YAF_pleasant_surprise/YAF_bar_ps.wav", "YAF_fear/YAF_neat_fear.wav",
    ])
    table = by_id(load_dataset("tess", root))
    assert table.loc["OAF_bite_neutral", "speaker"] == "OAF"  # the release's misnamed OA_bite_neutral.wav
    assert table.loc["OAF_bite_neutral", "text"] == "Say the word bite"
    assert table.loc["YAF_bar_ps", "label"] == "surprised" and table.loc["YAF_neat_fear", "label"] == "fearful"
    assert table.loc["OAF_back_angry", "fold"] == 0 and table.loc["YAF_bar_ps", "fold"] == 1
    assert set(table.loc[table["speaker"] == "YAF", "split"]) == {"test"}
    assert set(table["language"]) == {"en"} and table.loc["OAF_back_angry", "age"] == 64


def test_tess_foreign_names_and_disagreeing_folders_are_one_error(tmp_path):
    write_files(tmp_path / "a", ["OAF_angry/OAF_back_angry.wav", "OAF_angry/OAF_back_angri.wav"])
    assert_one_error_naming(tmp_path / "a", "tess", "OAF_back_angri.wav", "not a TESS file name")
    write_files(tmp_path / "b", ["OAF_sad/OAF_back_angry.wav"])
    assert_one_error_naming(tmp_path / "b", "tess", "OAF_back_angry.wav", "file name says angry, its folder OAF_sad")


# ------------------------------------------------------------------------------------------------ URDU


def test_urdu_speakers_gender_and_whole_speaker_folds(tmp_path):
    names = []
    for speaker in ("SM1", "SM2", "SF1", "SF2", "SM5", "SF9", "SM4"):
        for i, (letter, folder) in enumerate((("A", "Angry"), ("H", "Happy"), ("N", "Neutral"), ("S", "Sad"))):
            names.append(f"{folder}/{speaker}_F{i + 1}_{letter}{len(names):02d}.wav")
    samples = load_dataset("urdu", write_files(tmp_path / "urdu", names))
    table = by_id(samples)
    assert table.loc["SM1_F1_A00", "label"] == "angry" and table.loc["SM1_F1_A00", "gender"] == "male"
    assert table.loc["SF1_F3_N10", "speaker"] == "SF1" and table.loc["SF1_F3_N10", "gender"] == "female"
    assert_whole_speakers(samples.table)
    assert samples.table["fold"].nunique() == 5 and set(samples.table["language"]) == {"ur"}
    assert set(samples.table.loc[samples.table["fold"] == 4, "split"]) == {"test"}
    assert any("not the release's 400 utterances" in note for note in samples.notes)


def test_urdu_foreign_names_are_one_error(tmp_path):
    write_files(tmp_path / "a", ["Angry/SM1_F10_A010.wav", "Angry/SM1_F11_X011.wav"])
    assert_one_error_naming(tmp_path / "a", "urdu", "SM1_F11_X011.wav", "unknown URDU emotion letter 'X'")
    write_files(tmp_path / "b", ["Happy/SM1_F10_A010.wav"])
    assert_one_error_naming(tmp_path / "b", "urdu", "SM1_F10_A010.wav", "says angry, its folder Happy")
    write_files(tmp_path / "c", ["Angry/speaker1_angry.wav"])
    assert_one_error_naming(tmp_path / "c", "urdu", "speaker1_angry.wav", "not an URDU file name")


# ------------------------------------------------------------------------------------------------ nEMO

NEMO_HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"


def write_nemo(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """rows: (speaker, emotion, sentence number, text), written as the release writes data.tsv."""
    lines = [NEMO_HEADER]
    for speaker, emotion, number, text in rows:
        file_id = f"{speaker}_{emotion}_{number}.wav"
        write_files(root, [f"samples/{file_id}"])
        gender = "female" if speaker in ("EB0", "IC0", "KD0", "MK0") else "male"
        lines.append(f"{file_id}\t{emotion}\t{text}\t{text.lower().rstrip('.')}\t        {speaker}\t{gender}\t27\n")
    (root / "data.tsv").write_text("".join(lines), encoding="utf-8")
    return root


def test_nemo_labels_texts_and_speakers_from_its_label_file(tmp_path):
    root = write_nemo(tmp_path / "nemo", [
        ("EB0", "neutral", "13", "Interesuje mnie historia Polski."),
        ("WR0", "surprised", "64", "Ucho wykrywa dźwięki o różnej częstotliwości."),
        ("KD0", "sadness", "2", "Kupiłem nową szafę."), ("TP0", "anger", "2", "Kupiłem nową szafę."),
    ])
    table = by_id(load_dataset("nemo", root))
    assert table.loc["WR0_surprised_64", "text"] == "Ucho wykrywa dźwięki o różnej częstotliwości."
    assert table.loc["EB0_neutral_13", "speaker"] == "EB0" and table.loc["EB0_neutral_13", "gender"] == "female"
    assert table.loc["KD0_sadness_2", "label"] == "sad" and table.loc["TP0_anger_2", "label"] == "angry"
    assert table.loc["KD0_sadness_2", "fold"] == table.loc["TP0_anger_2", "fold"] == 4
    assert table.loc["TP0_anger_2", "split"] == "test" and table.loc["EB0_neutral_13", "split"] == "train"
    assert set(table["language"]) == {"pl"} and table.loc["EB0_neutral_13", "sentence"] == "13"


def test_nemo_bad_rows_are_one_error_naming_the_label_file_and_row(tmp_path):
    root = write_nemo(tmp_path / "nemo", [("EB0", "neutral", "1", "Tak."), ("EB0", "boredom", "2", "Nie.")])
    with pytest.raises(DatasetError, match="row 2: unknown emotion 'boredom'") as error:
        load_dataset("nemo", root)
    assert error.value.path.name == "data.tsv"
    root = write_nemo(tmp_path / "twice", [("EB0", "neutral", "1", "Tak."), ("EB0", "neutral", "1", "Tak.")])
    with pytest.raises(DatasetError, match="row 2: EB0_neutral_1.wav is listed twice"):
        load_dataset("nemo", root)
    root = write_nemo(tmp_path / "missing", [("EB0", "neutral", "1", "Tak.")])
    (root / "samples" / "EB0_neutral_1.wav").unlink()
    with pytest.raises(DatasetError, match="row 1: EB0_neutral_1.wav: its audio .* is not there"):
        load_dataset("nemo", root)


# ------------------------------------------------------------------------------------------------ EMOVO


def test_emovo_italian_codes_actors_and_paired_folds(tmp_path):
    root = write_files(tmp_path / "EMOVO", [
        "f1/dis-f1-b1.wav", "m1/gio-m1-l2.wav", "f3/pau-f3-n5.wav", "m3/tri-m3-d1.wav", "m2/rab-m2-b3.wav",
    ])
    table = by_id(load_dataset("emovo", root))
    assert table.loc["gio-m1-l2", "label"] == "happy" and table.loc["pau-f3-n5", "label"] == "fearful"
    assert table.loc["rab-m2-b3", "label"] == "angry" and table.loc["tri-m3-d1", "label"] == "sad"
    assert table.loc["dis-f1-b1", "fold"] == table.loc["gio-m1-l2", "fold"] == 0
    assert set(table.loc[["pau-f3-n5", "tri-m3-d1"], "split"]) == {"test"}
    assert table.loc["pau-f3-n5", "gender"] == "female" and table.loc["pau-f3-n5", "sentence"] == "n5"
    assert set(table["language"]) == {"it"} and table["text"].isna().all()


def test_emovo_foreign_names_are_one_error(tmp_path):
    write_files(tmp_path / "a", ["f1/dis-f1-b1.wav", "f1/ang-f1-b1.wav"])
    assert_one_error_naming(tmp_path / "a", "emovo", "ang-f1-b1.wav", "unknown EMOVO emotion 'ang'")
    write_files(tmp_path / "b", ["f2/dis-f1-b1.wav"])
    assert_one_error_naming(tmp_path / "b", "emovo", "dis-f1-b1.wav", "says actor f1, its folder f2")


# ------------------------------------------------------------------------------------------------ ASED


def test_ased_codes_capital_letters_and_each_speakers_gender(tmp_path):
    names = ["05Angry/a5-03-01-02-50.wav", "04Sad/S4-04-02-01-29.wav", "01Neutral/n1-01-01-01-29.wav",
             "03Happy/h3-01-01-02-29.wav",  # speaker 29's one file under the other gender code
             "02Fearful/f2-05-02-01-07.wav", "01Neutral/n1-02-01-02-12.wav", "03Happy/h3-03-02-01-33.wav",
             "02Fearful/f2-01-01-02-41.wav"]
    samples = load_dataset("ased", write_files(tmp_path / "ased", names))
    table = by_id(samples)
    assert table.loc["s4-04-02-01-29", "label"] == "sad" and table.loc["a5-03-01-02-50", "label"] == "angry"
    assert set(table.loc[table["speaker"] == "29", "gender"]) == {"female"}  # the code most of their files carry
    assert table.loc["a5-03-01-02-50", "gender"] == "male" and table.loc["a5-03-01-02-50", "repetition"] == 1
    assert table.loc["f2-05-02-01-07", "sentence"] == "05" and set(table["language"]) == {"am"}
    assert_whole_speakers(samples.table)


def test_ased_foreign_names_are_one_error(tmp_path):
    write_files(tmp_path / "a", ["05Angry/a5-03-01-02-50.wav", "05Angry/x5-03-01-02-50.wav"])
    assert_one_error_naming(tmp_path / "a", "ased", "x5-03-01-02-50.wav", "unknown ASED emotion code 'x5'")
    write_files(tmp_path / "b", ["01Neutral/a5-03-01-02-50.wav"])
    assert_one_error_naming(tmp_path / "b", "ased", "a5-03-01-02-50.wav", "says angry, its folder 01Neutral")
    write_files(tmp_path / "c", ["05Angry/a5-03-01-03-50.wav"])
    assert_one_error_naming(tmp_path / "c", "ased", "a5-03-01-03-50.wav", "unknown ASED gender code '03'")


# ------------------------------------------------------------------------------------------------ CASIA


def test_casia_folders_give_speaker_and_emotion_and_the_sentence_list_the_text(tmp_path):
    root = write_files(tmp_path / "CASIA database", [
        "wangzhe/angry/201.wav", "liuchanhg/surprise/202.wav", "ZhaoZuoxiang/fear/201.wav", "zhaoquanyin/sad/250.wav",
    ])
    (root / SENTENCE_FILE).write_bytes("201. 就是下雨也去。\r\n202. 我马上拿来。\r\n".encode("gb18030"))
    samples = load_dataset("casia", root.parent)
    table = by_id(samples)
    assert table.loc["wangzhe-angry-201", "text"] == "就是下雨也去。"
    assert table.loc["liuchanhg-surprise-202", "label"] == "surprised"
    assert table.loc["ZhaoZuoxiang-fear-201", ["label", "split"]].tolist() == ["fearful", "test"]
    assert table["fold"].nunique() == 4 and set(table["language"]) == {"zh"}
    assert any("no text for sentence(s) 250" in note for note in samples.notes)
    (root / SENTENCE_FILE).unlink()
    assert any(f"no {SENTENCE_FILE}" in note for note in load_dataset("casia", root).notes)


def test_casia_foreign_folders_are_one_error(tmp_path):
    write_files(tmp_path / "a", ["wangzhe/angry/201.wav", "wangzhe/bored/201.wav"])
    assert_one_error_naming(tmp_path / "a", "casia", "201.wav", "not a CASIA file: .* got wangzhe/bored/201.wav")


# ------------------------------------------------------------------------------------------------ TurEV-DB


def test_turev_reads_the_sound_source_only(tmp_path):
    root = write_files(tmp_path / "TurEV-DB", [
        "Sound Source/Angry/1157_kz_acik.wav", "Sound Source/Calm/1234_sk_acik.wav",
        "Sound Source/Happy/1358_mt_cay.wav", "Sound Source/Sad/7895_hl_ogul1.wav",
        "Model Output for Test Data/testEmotions500HighPass/sound/Angry/1157_kz_acik.wav",
    ])
    table = by_id(load_dataset("turev", root))
    assert len(table) == 4 and table.loc["7895_hl_ogul1", "word"] == "ogul"
    assert table.loc["1234_sk_acik", "label"] == "calm" and table.loc["1157_kz_acik", "fold"] == 0
    assert table.loc["7895_hl_ogul1", "split"] == "test" and table.loc["1358_mt_cay", "split"] == "train"
    assert set(table["language"]) == {"tr"} and table["text"].isna().all()
    assert len(load_dataset("turev", root / "Sound Source").table) == 4
    assert adapter_class("turev").shared_labels["calm"] == "neutral"


def test_turev_foreign_names_are_one_error(tmp_path):
    write_files(tmp_path / "a", ["Calm/1234_kz_acik.wav"])
    assert_one_error_naming(tmp_path / "a", "turev", "1234_kz_acik.wav", "says angry, its folder Calm")
    write_files(tmp_path / "b", ["Angry/9999_kz_acik.wav"])
    assert_one_error_naming(tmp_path / "b", "turev", "9999_kz_acik.wav", "not a TurEV-DB file name")


# ------------------------------------------------------------------------------------------------ FER2013


def test_fer2013_classes_from_folders_splits_from_usage(tmp_path):
    root = tmp_path / "fer2013"
    write_files(root, ["train/angry/Training_3908.jpg", "test/happy/PrivateTest_10077120.jpg",
                       "test/fear/PublicTest_5.jpg", "train/surprise/Training_3908.jpg",
                       "test/disgust/PrivateTest_7.jpg", "test/disgust/PrivateTest_7.jpg0.jpg"], image_bytes(".jpg"))
    samples = load_dataset("fer2013", root)
    table = by_id(samples)
    assert len(table) == 5  # the augmented copy is skipped
    assert table.loc["happy/PrivateTest_10077120", "split"] == "test"
    assert table.loc["fear/PublicTest_5", ["label", "split"]].tolist() == ["fearful", "valid"]
    assert table.loc["surprise/Training_3908", "label"] == "surprised"
    assert table.loc["angry/Training_3908", "video_path"].endswith("Training_3908.jpg")
    assert table["audio_path"].isna().all() and table["speaker"].isna().all()
    assert samples.labels.names == ("angry", "disgust", "fearful", "happy", "sad", "surprised", "neutral")
    assert any("skipped 1 augmented" in note for note in samples.notes)


def test_fer2013_public_test_can_train_heads_of_models_trained_on_its_training_part(tmp_path):
    root = tmp_path / "fer2013"
    write_files(root, ["train/angry/Training_1.jpg", "test/fear/PublicTest_5.jpg", "test/happy/PrivateTest_7.jpg"],
                image_bytes(".jpg"))
    table = by_id(load_dataset("fer2013", root, train_part="PublicTest"))
    assert list(table.index) == ["fear/PublicTest_5", "happy/PrivateTest_7"]
    assert table["split"].tolist() == ["train", "test"]
    write_files(tmp_path / "ckplus", ["CK+48/happy/S010_004_00000017.png", "CK+48/anger/S011_001_00000010.png"],
                image_bytes(".png"))
    from emocli.datasets.corpora import CorporaAdapter, CorporaOptions

    options = CorporaOptions.parse("corpora", {"kind": "faces", "members.fer2013.train_part": "PublicTest"})
    faces = CorporaAdapter(options).load(tmp_path).table.set_index("sample_id")
    assert faces.loc["fer2013/fear/PublicTest_5", "split"] == "train" and "fer2013/angry/Training_1" not in faces.index
    assert faces.loc["fer2013/fear/PublicTest_5", "speaker"] == "fer2013/fear/PublicTest_5"  # no one is named
    assert set(faces["corpus"]) == {"fer2013", "ckplus"}


def test_fer2013_foreign_names_are_one_error(tmp_path):
    write_files(tmp_path / "a", ["test/happy/PrivateTest_1.jpg", "test/happy/face.jpg"], image_bytes(".jpg"))
    assert_one_error_naming(tmp_path / "a", "fer2013", "face.jpg", "not a FER2013 image name")
    write_files(tmp_path / "b", ["test/joy/PrivateTest_1.jpg"], image_bytes(".jpg"))
    assert_one_error_naming(tmp_path / "b", "fer2013", "PrivateTest_1.jpg", "not in a FER2013 class folder")


# ------------------------------------------------------------------------------------------------ CK+48


def test_ckplus_subjects_fold_whole_and_contempt_is_not_shared(tmp_path):
    folders = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
    names = [f"CK+48/{folders[s % 7]}/S{100 + s:03d}_00{s % 3 + 1}_{frame:08d}.png"
             for s in range(10) for frame in (11, 12, 13)]
    samples = load_dataset("ckplus", write_files(tmp_path, names, image_bytes(".png")))
    table = by_id(samples)
    assert table.loc["S101_002_00000012", "label"] == "contempt" and table.loc["S105_003_00000011", "label"] == "sad"
    assert table.loc["S100_001_00000013", "speaker"] == "S100" and table.loc["S100_001_00000013", "frame"] == 13
    assert_whole_speakers(samples.table)
    assert samples.table["fold"].nunique() == 5 and "contempt" not in adapter_class("ckplus").shared_labels


def test_ckplus_foreign_names_are_one_error(tmp_path):
    write_files(tmp_path, ["CK+48/happy/S010_006_00000013.png", "CK+48/happy/S10_6_13.png"], image_bytes(".png"))
    assert_one_error_naming(tmp_path, "ckplus", "S10_6_13.png", "not a CK\\+ image name")


# ------------------------------------------------------------------------------------------------ folds


def test_speaker_folds_keep_speakers_whole_and_do_not_depend_on_order():
    speakers = [f"s{i % 13}" for i in range(200)]
    labels = [("a", "b", "c")[(i * 7) % 3] for i in range(200)]
    folds = speaker_folds(speakers, labels, 5)
    assert set(folds) == set(speakers) and sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    assert speaker_folds(speakers[::-1], labels[::-1], 5) == folds
    assert sorted(speaker_folds(["x", "x", "y"], ["a", "b", "a"], 5).values()) == [0, 1]  # fewer speakers than folds
    assert speaker_folds(["x"], ["a"], 5) == {"x": 0}


# ------------------------------------------------------------------------------------------------ real corpora
# What the copies hold (docs/DATASETS.md): per class and number of speakers, as read.

REAL = {
    "tess": ({"neutral": 400, "happy": 400, "sad": 400, "angry": 400, "fearful": 400, "disgust": 400,
              "surprised": 400}, 2),
    "urdu": ({"angry": 100, "happy": 100, "neutral": 100, "sad": 100}, 29),
    "nemo": ({"neutral": 809, "happy": 749, "sad": 769, "angry": 749, "fearful": 736, "surprised": 669}, 9),
    "emovo": (dict.fromkeys(("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"), 84), 6),
    "ased": ({"neutral": 522, "fearful": 510, "happy": 486, "sad": 470, "angry": 486}, 65),
    "casia": (dict.fromkeys(("neutral", "happy", "sad", "angry", "fearful", "surprised"), 200), 4),
    "turev": ({"angry": 487, "calm": 408, "happy": 357, "sad": 483}, 6),
    "ckplus": ({"angry": 135, "contempt": 54, "disgust": 177, "fearful": 75, "happy": 207, "sad": 84,
                "surprised": 249}, 118),
}


def real_root(name: str) -> Path:
    variable = f"EMO_{name.upper()}_ROOT"
    root = os.environ.get(variable)
    if not root or not Path(root).is_dir():
        pytest.skip(f"{name} not available: set ${variable} to a copy (docs/DATASETS.md)")
    return Path(root)


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL))
def test_the_real_corpus_reads_as_released(name):
    samples = load_dataset(name, real_root(name))
    counts, speakers = REAL[name]
    table = samples.table
    assert table["label"].value_counts().to_dict() == counts and not samples.notes
    assert table["speaker"].nunique() == speakers
    assert_whole_speakers(table)
    per_fold = table["fold"].value_counts()
    assert per_fold.min() >= 0.25 * per_fold.max()  # no fold is a sliver
    assert set(table.loc[table["fold"] == table["fold"].max(), "split"]) == {"test"}


@pytest.mark.realdata
def test_the_real_fer2013_private_test_has_the_release_counts():
    samples = load_dataset("fer2013", real_root("fer2013"))
    private = samples.table[samples.table["split"] == "test"]
    assert private["label"].value_counts().to_dict() == {
        "angry": 491, "disgust": 55, "fearful": 528, "happy": 879, "sad": 594, "surprised": 416, "neutral": 626}
    assert not any("PrivateTest" in note for note in samples.notes)
