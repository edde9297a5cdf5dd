from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emocli.core.errors import DatasetError
from emocli.datasets import ADAPTERS, adapter_class, load_dataset
from emocli.datasets.manifest import ManifestAdapter


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, records: list) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


@pytest.fixture
def media(tmp_path) -> Path:
    for name in ("clips/a.wav", "clips/b.wav", "clips/c.mp4", "clips/d.flac"):
        touch(tmp_path / name)
    return tmp_path


def test_csv_manifest(media):
    outside = touch(media.parent / f"{media.name}_elsewhere" / "e.wav")
    path = write(
        media / "manifest.csv",
        "Audio,video,text,label,split,fold,speaker,dialogue_id,position,start_s,end_s,mood\n"
        "clips/a.wav,,hello,happy,train,0,spk1,d1,0,0.5,2.25,calm\n"
        ",clips/c.mp4,,sad,dev,1,spk2,d1,1,,,\n"
        ',,only text,"angry",test,,,,,,,tense\n'
        f"{outside},,,happy,,,,,,,,\n",
    )
    with pytest.raises(DatasetError, match=r"row 4: audio .*e\.wav lies outside the manifest's folder"):
        load_dataset("manifest", path)  # a file elsewhere is read only when the user says so
    samples = load_dataset("manifest", path, allow_outside=True)
    table = samples.table
    assert list(table["sample_id"]) == ["a", "c", "row3", "e"]
    assert samples.labels.names == ("angry", "happy", "sad") and samples.labels.task == "single_label"
    assert list(table["label"]) == ["happy", "sad", "angry", "happy"]
    assert table.loc[0, "audio_path"] == str((media / "clips/a.wav").resolve())
    assert table.loc[1, "video_path"] == str((media / "clips/c.mp4").resolve()) and pd.isna(
        table.loc[1, "audio_path"]
    )
    assert table.loc[3, "audio_path"] == str(outside)
    assert list(table["split"].fillna("-")) == ["train", "valid", "test", "-"]
    assert list(table["fold"].fillna(-1)) == [0, 1, -1, -1]
    assert (
        table.loc[0, "start_s"] == 0.5 and table.loc[0, "end_s"] == 2.25 and pd.isna(table.loc[1, "start_s"])
    )
    assert (
        table.loc[1, "position"] == 1
        and table.loc[0, "speaker"] == "spk1"
        and table.loc[1, "dialogue_id"] == "d1"
    )
    assert table.loc[2, "text"] == "only text" and pd.isna(table.loc[0, "video_path"])
    assert list(table["mood"].fillna("-")) == ["calm", "-", "tense", "-"]
    assert list(table.columns[13:]) == ["mood"]
    assert set(samples.protocols) == {"split", "fold"}
    assert samples.root == path


def test_label_names_option_orders_the_classes(media):
    path = write(media / "m.csv", "audio,label\nclips/a.wav,sad\nclips/b.wav,happy\n")
    samples = ManifestAdapter(label_names=["neutral", "happy", "sad"]).load(path)
    assert samples.labels.names == ("neutral", "happy", "sad")


def test_multi_label_csv_and_tsv(media):
    path = write(
        media / "m.csv", "audio,labels\nclips/a.wav,happy;surprise\nclips/b.wav,\nclips/d.flac, sad \n"
    )
    samples = ManifestAdapter().load(path)
    assert samples.labels.task == "multi_label" and samples.labels.names == ("happy", "sad", "surprise")
    assert [list(x) for x in samples.table["labels"]] == [["happy", "surprise"], [], ["sad"]]
    assert samples.table["label"].isna().all()
    tsv = write(media / "m.tsv", "audio\tlabels\tnote\nclips/a.wav\thappy;sad\tx, y\n")
    table = ManifestAdapter().load(tsv).table
    assert list(table["labels"].iloc[0]) == ["happy", "sad"] and table["note"].iloc[0] == "x, y"


def test_jsonl_manifest(media):
    path = jsonl(
        media / "m.jsonl",
        [
            {"sample_id": "one", "audio": "clips/a.wav", "labels": ["happy", "sad"], "score": 0.5},
            "",
            {"video": "clips/c.mp4", "labels": [], "start_s": 1, "end_s": 2.5, "tags": ["x"]},
            {"text": "hi", "labels": "sad;angry", "split": "valid"},
        ],
    )
    samples = ManifestAdapter().load(path)
    table = samples.table
    assert list(table["sample_id"]) == ["one", "c", "row3"]
    assert [list(x) for x in table["labels"]] == [["happy", "sad"], [], ["sad", "angry"]]
    assert samples.labels.names == ("angry", "happy", "sad")
    assert table.loc[1, "start_s"] == 1.0 and table.loc[1, "end_s"] == 2.5
    assert table.loc[0, "score"] == 0.5 and table.loc[1, "tags"] == ["x"]


def test_json_array_manifest(media):
    path = write(
        media / "m.json", json.dumps([{"Audio": "clips/a.wav", "Label": "happy"}, {"text": "x", "label": 3}])
    )
    table = ManifestAdapter().load(path).table
    assert list(table["sample_id"]) == ["a", "row2"] and list(table["label"]) == ["happy", "3"]
    path = write(media / "m.csv", "Audio_Path,label\nclips/a.wav,happy\n")  # the sample table's name
    assert ManifestAdapter().load(path).table.loc[0, "audio_path"] == str((media / "clips/a.wav").resolve())


def test_task_option_converts_columns(media):
    path = write(media / "m.csv", "audio,label\nclips/a.wav,happy\nclips/b.wav,sad\n")
    samples = ManifestAdapter(task="multi_label").load(path)
    assert samples.labels.task == "multi_label" and [list(x) for x in samples.table["labels"]] == [
        ["happy"],
        ["sad"],
    ]
    path = write(media / "n.csv", "audio,labels\nclips/a.wav,happy\nclips/b.wav,sad;happy\n")
    with pytest.raises(DatasetError, match="2 labels .* but the task is single_label") as error:
        ManifestAdapter(task="single_label").load(path)
    assert error.value.row == "2"


def test_unlabelled_manifest_for_prediction(media):
    path = write(media / "m.csv", "audio\nclips/a.wav\nclips/b.wav\n")
    with pytest.raises(DatasetError, match="missing required column: label"):
        ManifestAdapter().load(path)
    samples = ManifestAdapter(require_labels=False).load(path)
    assert samples.table["label"].isna().all() and samples.labels.names == ()


def test_check_media_off(tmp_path):
    path = write(tmp_path / "m.csv", "audio,label\nmissing.wav,happy\n")
    table = ManifestAdapter(check_media=False).load(path).table
    assert table.loc[0, "audio_path"] == str(tmp_path.resolve() / "missing.wav")


# -------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("second", "problem"),
    [
        ("clips/b.wav,,0", "empty label"),
        ("clips/zz.wav,happy,0", "audio file not found: clips/zz.wav"),
        ("clips/a.wav,happy,1", r"duplicate sample_id 'a' \(also row 1\)"),
        ("clips/b.wav,happy,abc", "start_s 'abc' is not a number"),
        ("clips/b.wav,happy,-1", "start_s '-1' is negative"),
        ("clips/b.wav,happy,1,x", "4 fields but the header has 3 columns"),
    ],
)
def test_single_problem_names_the_row(media, second, problem):
    path = write(media / "m.csv", f"audio,label,start_s\nclips/a.wav,happy,0\n{second}\n")
    with pytest.raises(DatasetError, match=problem) as error:
        ManifestAdapter().load(path)
    assert error.value.path == path and error.value.row == "2"
    assert f"{path}, row 2:" in str(error.value)


def test_all_problems_are_reported_together(media):
    path = write(
        media / "m.csv",
        "audio,text,label,split,fold,start_s,end_s\n"
        "clips/a.wav,,happy,train,0,0,1\n"  # row 1: fine
        "clips/nope.wav,,happy,train,0,,\n"  # row 2: missing media
        ",,sad,train,,,\n"  # row 3: no content
        "clips/b.wav,,,train,,,\n"  # row 4: empty label
        "clips/d.flac,,fear,later,x,2,1\n"  # row 5: split, fold, end before start
        ",some text,happy,valid,,,\n",  # row 6: fine
    )
    with pytest.raises(DatasetError) as error:
        ManifestAdapter(label_names=["happy", "sad", "fear"]).load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: 6 problems: row 2: audio file not found: clips/nope.wav")
    for part in (
        "row 3: no audio, video or text",
        "row 4: empty label",
        "row 5: split 'later' is not one of train, valid, test",
        "row 5: fold 'x' is not a non-negative integer",
        "row 5: end_s 1.0 is not after start_s 2.0",
    ):
        assert part in message
    assert "row 1:" not in message and "row 6:" not in message


def test_unknown_label_and_problem_limit(media):
    rows = "".join(f"clips/a.wav,r{i},grumpy\n" for i in range(30))
    path = write(media / "m.csv", "audio,sample_id,label\n" + rows)
    with pytest.raises(DatasetError) as error:
        ManifestAdapter(label_names=["happy", "sad"], max_problems=3).load(path)
    message = str(error.value)
    assert (
        "30 problems (first 3 listed): row 1: unknown label 'grumpy': not one of happy, sad; row 2:"
        in message
    )
    assert "row 4:" not in message


def test_jsonl_problems_name_row_and_line(media):
    path = jsonl(
        media / "m.jsonl",
        [
            {"audio": "clips/a.wav", "label": "happy"},
            "",
            '{"audio": "clips/b.wav", "label": "sad"',  # row 2, line 3: malformed
            '["not", "an", "object"]',  # row 3, line 4
            {"audio": "clips/d.flac", "label": "sad", "start_s": "soon"},  # row 4, line 5
            {"audio": "clips/c.mp4", "label": ""},  # row 5, line 6
        ],
    )
    with pytest.raises(DatasetError) as error:
        ManifestAdapter().load(path)
    message = str(error.value)
    assert "4 problems" in message
    assert "row 2 (line 3): malformed JSON" in message
    assert "row 3 (line 4): expected a JSON object, got list" in message
    assert "row 4 (line 5): start_s 'soon' is not a number" in message
    assert "row 5 (line 6): empty label" in message


def test_single_jsonl_problem_uses_the_row_field(media):
    path = jsonl(
        media / "m.jsonl",
        [{"audio": "clips/a.wav", "label": "happy"}, {"audio": "clips/x.wav", "label": "a"}],
    )
    with pytest.raises(DatasetError, match="audio file not found") as error:
        ManifestAdapter().load(path)
    assert error.value.row == "2 (line 2)" and f"{path}, row 2 (line 2): audio file not found" in str(
        error.value
    )


def test_not_utf8_names_the_byte_offset(tmp_path):
    path = tmp_path / "m.csv"
    data = b"audio,label\nsong.wav,happy\ncaf\xe9.wav,sad\n"
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(
        DatasetError, match=rf"not UTF-8: byte 0xe9 at byte offset {offset} \(line 3\)"
    ) as error:
        ManifestAdapter().load(path)
    assert error.value.path == path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "speaker,label\nx,happy\n",
            "header: missing required columns: need at least one of audio, video, text",
        ),
        ("audio,label,labels\na.wav,x,y\n", "both label and labels columns"),
        ("audio,label,Label\na.wav,x,y\n", "column\\(s\\) label appear twice"),
        ("audio,label\n", "no rows"),
        ("", "empty \\(no header\\)"),
    ],
)
def test_header_problems(tmp_path, text, problem):
    path = write(tmp_path / "m.csv", text)
    with pytest.raises(DatasetError, match=problem) as error:
        ManifestAdapter().load(path)
    assert error.value.path == path


def test_wrong_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ManifestAdapter().load(tmp_path)
    with pytest.raises(DatasetError, match="unknown manifest format '.xlsx'"):
        ManifestAdapter().load(write(tmp_path / "m.xlsx", "x"))
    with pytest.raises(DatasetError, match="label_names option lists a name twice"):
        ManifestAdapter(label_names=["a", "a"]).load(write(tmp_path / "m.csv", "text,label\nhi,a\n"))


# ------------------------------------------------------------------------------- all adapters, `emo datasets`


def test_every_adapter_is_registered_and_described():
    for name in ADAPTERS:
        adapter = adapter_class(name)
        assert adapter.name == name
        assert len(adapter.summary) > 20 and len(adapter.needs_on_disk) > 40
        adapter()  # default options are valid


def test_emo_datasets_lists_what_each_adapter_needs():
    from emocli.cli import app

    result = CliRunner().invoke(app, ["datasets"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    needles = ["train_sent_emo.csv", "EmoEvaluation", "cmu_mosei_std_folds.json", "per split (train, valid"]
    for needle in [*ADAPTERS, *needles]:
        assert needle in result.output


def test_adapter_modules_import_no_torch():
    modules = ", ".join(f"emocli.datasets.{name}" for name in ADAPTERS)
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
