"""A hostile corpus of edge cases (issue 23): names that are paths, numbers that are not numbers, subtitles
and transcripts as people and tools really write them, structured files nested or sized to break their
readers, folders that loop, terminals that cannot encode, writers that race or are killed, and odd media and
text. Each case gives a correct result or one line naming the file and the cause, with a non-zero exit;
the file tree is compared before and after every case that could write where it should not.

The run cases use the one tiny run conftest.py trains per test process (hostile_run).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from hostile import assert_one_line_error, emo, speech_like, tree, write_wav
from media import write_video

from emocli.core.errors import ConfigError, DatasetError, EmoError
from emocli.runs import layout

TRAIN = ["--folds", "0", "--seeds", "1", "--modalities", "audio", "--set", "epochs=1", "--set", "model.video_dim=16",
         "--set", "model.transformer_layers=1", "--set", "model.transformer_heads=2"]
DEEP = 100_000  # levels: far past Python's recursion limit


@pytest.fixture
def run(hostile_run, tmp_path) -> Path:
    copy = tmp_path / "copy" / hostile_run["root"].name
    shutil.copytree(hostile_run["root"], copy)
    return copy


@pytest.fixture
def store(hostile_run, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(hostile_run["store"], copy)
    return copy


# ----------------------------------------------------------------------------------- names are names


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", ".hidden", "", "x\x1b[2Jy", "n" * 101, "-rf", "a\\b"])
def test_a_run_name_is_a_name_and_nothing_is_written_outside(hostile_run, tmp_path, monkeypatch, capsys, name):
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, "train", "cfnsr", "--features", hostile_run["store"], "--out",
                  tmp_path / "runs", "--name", name, *TRAIN)
    assert_one_line_error(outcome, None, "--name")
    assert tree(tmp_path) == before and "\x1b" not in outcome.err


def test_a_search_name_is_a_name(hostile_run, tmp_path, monkeypatch, capsys):
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, "tune", "cfnsr", "--features", hostile_run["store"], "--out", tmp_path / "r",
                  "--grid", "optimizer.lr=1e-3", "--name", "../../tune-escaped", *TRAIN)
    assert_one_line_error(outcome, None, "--name '../../tune-escaped' is a path")
    assert tree(tmp_path) == before


def test_a_dataset_name_read_from_a_store_is_a_name(store, tmp_path, monkeypatch, capsys):
    """A crafted store says its dataset is "../../evil": the run directory would have left --out."""
    samples = store / "samples.parquet"
    table = pq.read_table(samples)
    metadata = dict(table.schema.metadata)
    dataset = json.loads(metadata[b"emo.dataset"])
    metadata[b"emo.dataset"] = json.dumps({**dataset, "dataset": "../../evil"}).encode()
    pq.write_table(table.replace_schema_metadata(metadata), samples)
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, "train", "cfnsr", "--features", store, "--out", tmp_path / "runs", *TRAIN)
    assert_one_line_error(outcome, None, f"the dataset name of {store.resolve()} '../../evil' is a path")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["info", "failures"])
def test_a_feature_set_name_is_a_name(store, monkeypatch, capsys, command):
    outcome = emo(monkeypatch, capsys, "store", command, store, "../../etc")
    assert_one_line_error(outcome, None, "feature set '../../etc' is a path")


# ------------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "0.01", "1e9"])
def test_the_window_is_a_finite_number_in_range(hostile_run, tmp_path, monkeypatch, capsys, value):
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], hostile_run["wav"], "--window", value,
                  "-o", tmp_path / "p.csv")
    assert_one_line_error(outcome, None, f"--window {float(value)}: give a number from 0.1 to 3600")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("args, cause", [
    (("evaluate", "RUN", "--threshold", "nan"), "--threshold nan: give a number from 0 to 1"),
    (("evaluate", "RUN", "--threshold", "1.5"), "--threshold 1.5: give a number from 0 to 1"),
    (("evaluate", "RUN", "--threshold", "-0.1"), "--threshold -0.1: give a number from 0 to 1"),
    (("export", "UNIT", "--tolerance", "nan"), "--tolerance nan: give a number more than 0 and at most 1"),
    (("export", "UNIT", "--tolerance", "0"), "--tolerance 0.0: give a number more than 0 and at most 1"),
    (("export", "UNIT", "--frames", "0"), "--frames 0: give a number from 1 to 30000"),
    (("export", "UNIT", "--frames", "1000000000"), "--frames 1000000000: give a number from 1 to 30000"),
    (("predict", "UNIT", "x.wav", "--workers", "-1"), "--workers -1: give a number from 0 to 256"),
    (("predict", "UNIT", "x.wav", "--workers", "100000"), "--workers 100000: give a number from 0 to 256"),
    (("extract", "--dataset", "ravdess", "--workers", "1000000"), "--workers 1000000: give a number from 0 to 256"),
    (("tune", "cfnsr", "-f", "STORE", "--grid", "epochs=1", "--trials", "0"), "--trials 0: give a number at least 1"),
    (("demo", "--pipeline", "--clips", "1000000"), "--clips 1000000: give a number from 8 to 1000"),
    (("predict", "UNIT", "x.wav", "--executor", "ray", "--task-cpus", "nan"), "--task-cpus nan: give a number from"),
    (("extract", "--dataset", "ravdess", "--task-memory", "inf"), "--task-memory inf: give a number from 0.001"),
])
def test_numeric_options_are_checked_before_any_work(hostile_run, tmp_path, monkeypatch, capsys, args, cause):
    monkeypatch.chdir(tmp_path)
    given = {"RUN": hostile_run["root"], "UNIT": hostile_run["unit"], "STORE": hostile_run["store"]}
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, *(given.get(a, a) for a in args))
    assert_one_line_error(outcome, None, cause)
    assert tree(tmp_path) == before


def test_the_python_api_checks_the_window_too(hostile_run):
    from emocli.prediction.predictor import Predictor

    with pytest.raises(ConfigError, match="the window must be from 0.1 to 3600 seconds, not nan"):
        Predictor(hostile_run["unit"]).predict([hostile_run["wav"]], window_s=float("nan"))


# ---------------------------------------------------------------------------------------- subtitles


def cues_of(tmp_path: Path, text: str | bytes, suffix: str = ".srt"):
    from emocli.prediction.segments import read_transcript

    path = tmp_path / f"t{suffix}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_transcript(path)


@pytest.mark.parametrize("text, cause", [
    ("1\n-00:00:01,000 --> 00:00:02,000\nnegative\n", "line 2: malformed cue timing"),
    ("1\n00:00:02,000 --> 00:00:01,000\nreversed\n", "line 2: the cue ends (1.000 s) before it starts (2.000 s)"),
    ("1\n00:00:02,000 --> 00:00:02,000\nzero length\n", "line 2: the cue ends (2.000 s) before it starts"),
    ("1\n00:00:01,000 -> 00:00:02,000\none arrow short\n", "line 1: expected a cue timing"),
    ("\n\n\n", "the transcript holds no text"),
    ("1\n00:00:00,000 --> 00:00:01,000\n<i></i>\n", "the transcript holds no text"),  # only styling
])
def test_broken_cues_are_refused_naming_the_line(tmp_path, text, cause):
    with pytest.raises(DatasetError, match=cause.replace("(", r"\(").replace(")", r"\)")):
        cues_of(tmp_path, text)


def test_entities_are_decoded_and_styling_removed(tmp_path):
    text = ("1\n00:00:00,500 --> 00:00:01,500\n<font color=\"#ff0000\">Tom &amp; Jerry</font> {\\an8}&lt;i&gt;x&lt;/i&gt;\n"
            "&quot;q&quot;&nbsp;<c.loud>LOUD</c> &#233;t&eacute; <v Bob>hi</v>\n")
    (cue,) = cues_of(tmp_path, text)
    assert cue.text == 'Tom & Jerry <i>x</i> "q" LOUD été hi' and (cue.start_s, cue.end_s) == (0.5, 1.5)


def test_a_bom_crlf_and_vtt_without_header_are_read(tmp_path):
    srt = "\ufeff1\r\n00:00:00,000 --> 00:00:01,000\r\nfirst\r\n\r\n2\r\n00:00:01,000 --> 00:00:02,000\r\nsecond\r\n"
    assert [c.text for c in cues_of(tmp_path, srt)] == ["first", "second"]
    vtt = "00:00.000 --> 00:01.000 align:start\nno header\n\nNOTE a comment\n\n00:01.000 --> 00:02.500\nnext\n"
    assert [(c.text, c.end_s) for c in cues_of(tmp_path, vtt, ".vtt")] == [("no header", 1.0), ("next", 2.5)]


@pytest.mark.parametrize("data, cause", [
    ("1\n00:00:00,000 --> 00:00:01,000\nGrüße\n".encode("utf-16"), "not UTF-8"),
    (b"1\n00:00:00,000 --> 00:00:01,000\n\xff\xfe\xfd\n", "not UTF-8 (byte offset 32, line 3)"),
])
def test_subtitles_that_are_not_utf8_are_one_line(tmp_path, data, cause):
    with pytest.raises(DatasetError, match=cause.replace("(", r"\(").replace(")", r"\)")):
        cues_of(tmp_path, data)


def test_a_subtitle_file_too_large_to_be_one_is_refused_unread(tmp_path):
    from emocli.prediction.segments import read_transcript

    huge = tmp_path / "huge.srt"
    with open(huge, "wb") as handle:
        handle.truncate(300 * 2**20)  # sparse: nothing is written, and nothing must be read
    with pytest.raises(DatasetError, match="is 314,572,800 bytes; emo reads at most 268,435,456"):
        read_transcript(huge)


def test_overlapping_cues_are_predicted_each_with_a_note(hostile_run, tmp_path, monkeypatch, capsys):
    wav = write_wav(tmp_path / "clip.wav", speech_like(3.0))
    (tmp_path / "clip.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nfirst\n\n"
                                       "2\n00:00:01,000 --> 00:00:03,000\nsecond, over the first\n")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], wav, "-q", "-o", tmp_path / "p.csv")
    assert outcome.code == 0, outcome
    assert "1 pair(s) of cues overlap (first: 0.000-2.000 s and 1.000-3.000 s)" in " ".join(outcome.err.split())
    assert pd.read_csv(tmp_path / "p.csv")[["start_s", "end_s"]].values.tolist() == [[0.0, 2.0], [1.0, 3.0]]


def test_audio_shorter_than_the_video_is_segmented_on_what_exists(hostile_run, tmp_path, monkeypatch, capsys):
    video = write_video(tmp_path / "dubbed.mp4", seconds=6.0, fps=5, audio=speech_like(2.0))
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], video, "--window", "1", "-q",
                  "-o", tmp_path / "p.csv")
    assert outcome.code == 0, outcome  # no failed segments past the audio's end
    said = " ".join(outcome.err.split())
    assert "the streams differ in length (audio 2.0 s, video 6.0 s); only the first 2.0 s" in said
    assert pd.read_csv(tmp_path / "p.csv")["end_s"].max() <= 2.1


def test_an_empty_subtitle_beside_audio_costs_only_its_cues(hostile_run, tmp_path, monkeypatch, capsys):
    wav = write_wav(tmp_path / "clip.wav", speech_like(3.0))
    (tmp_path / "clip.srt").write_text("")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], wav, "--window", "1", "-q",
                  "-o", tmp_path / "p.csv")
    assert outcome.code == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 3
    assert "the transcript holds no text; its subtitles are not used" in " ".join(outcome.err.split())


# -------------------------------------------------------------------------------- structured files


def test_a_deeply_nested_json_manifest_is_one_line(tmp_path):
    from emocli.datasets.manifest import ManifestAdapter

    deep = tmp_path / "m.json"
    deep.write_text("[" * DEEP + "]" * DEEP)
    with pytest.raises(DatasetError, match="nested more than 64 levels deep"):
        ManifestAdapter().load(deep)
    lines = tmp_path / "m.jsonl"
    lines.write_text('{"text": "fine", "label": "a"}\n' + '{"text": ' + "[" * DEEP + "]" * DEEP + "}\n")
    with pytest.raises(DatasetError, match=r"m.jsonl, row 2 \(line 2\): nested more than 64 levels deep"):
        ManifestAdapter().load(lines)


def test_a_jsonl_manifest_mixing_lists_and_text_in_a_column_is_stored(tmp_path):
    from test_store import TextStats

    from emocli.datasets.manifest import ManifestAdapter
    from emocli.features.store import FeatureStore

    manifest = tmp_path / "m.jsonl"
    rows = [{"text": "one two", "label": "a", "tags": ["x", "y"]}, {"text": "three", "label": "b", "tags": "z"},
            {"text": "four", "label": "a", "tags": {"k": 1}}, {"text": "five", "label": "b", "tags": 7}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = ManifestAdapter().load(manifest)
    assert samples.table["tags"].tolist() == ['["x", "y"]', "z", '{"k": 1}', "7"]
    store = FeatureStore(tmp_path / "store")
    store.extract(samples, [TextStats()], workers=0, progress=False)
    assert store.find(modality="text")[0].n_rows == 4


@pytest.mark.parametrize("case", ["recipe", "preset", "set", "config"])
def test_deeply_nested_toml_and_json_are_one_line(hostile_run, run, tmp_path, monkeypatch, capsys, case):
    nested = "[" * DEEP + "]" * DEEP
    if case == "recipe":
        (tmp_path / "r.toml").write_text(f"name = 'x'\nvalue = {nested}\n")
        outcome = emo(monkeypatch, capsys, "run", tmp_path / "r.toml")
        assert_one_line_error(outcome, tmp_path / "r.toml", "nested more than 64 levels deep")
    elif case == "preset":
        (tmp_path / "p.toml").write_text(f"epochs = 1\nvalue = {nested}\n")
        outcome = emo(monkeypatch, capsys, "train", "cfnsr", "-f", hostile_run["store"], "--preset",
                      tmp_path / "p.toml", "--out", tmp_path / "runs", *TRAIN)
        assert_one_line_error(outcome, tmp_path / "p.toml", "nested more than 64 levels deep")
    elif case == "set":
        outcome = emo(monkeypatch, capsys, "train", "cfnsr", "-f", hostile_run["store"], "--set", f"epochs={nested}",
                      "--out", tmp_path / "runs", *TRAIN)
        assert_one_line_error(outcome, None, "nested more than 64 levels deep")
    else:
        unit = layout.unit_dir(run, 1, 0)
        (unit / layout.CONFIG).write_text('{"model": ' + nested + "}")
        outcome = emo(monkeypatch, capsys, "evaluate", unit)
        assert_one_line_error(outcome, unit / layout.CONFIG, "nested more than 64 levels deep")
    assert not (tmp_path / "runs").exists()


def test_a_recipe_that_is_a_pipe_or_too_large_is_refused_unread(tmp_path, monkeypatch, capsys):
    os.mkfifo(tmp_path / "pipe.toml")
    assert_one_line_error(emo(monkeypatch, capsys, "run", tmp_path / "pipe.toml"), tmp_path / "pipe.toml", "named pipe")
    with open(tmp_path / "huge.toml", "wb") as handle:
        handle.truncate(20 * 2**20)
    assert_one_line_error(emo(monkeypatch, capsys, "run", tmp_path / "huge.toml"), tmp_path / "huge.toml",
                          "is 20,971,520 bytes; emo reads at most 16,777,216")


def test_a_metrics_log_nested_too_deep_is_an_error_unless_it_is_the_torn_last_line(run, tmp_path):
    unit = layout.unit_dir(run, 1, 0)
    records = (unit / layout.METRICS).read_text()
    (unit / layout.METRICS).write_text(records + "[" * DEEP + "\n")  # the last line, cut short: skipped
    assert len(layout.read_jsonl(unit / layout.METRICS)) == len(records.splitlines())
    (unit / layout.METRICS).write_text("[" * DEEP + "]" * DEEP + "\n" + records)
    with pytest.raises(EmoError, match="line 1: nested more than 64 levels deep"):
        layout.read_jsonl(unit / layout.METRICS)


@pytest.mark.parametrize("spec", ["{", "pipe", '{"extractor": {"modality": "audio"}}'])
def test_a_stray_feature_set_folder_does_not_stop_the_store(hostile_run, store, tmp_path, monkeypatch, capsys, spec):
    from emocli.features.store import FeatureStore

    stray = store / "audio__copied__000000000000"
    stray.mkdir()
    if spec == "pipe":
        os.mkfifo(stray / "spec.json")
    else:
        (stray / "spec.json").write_text(spec)
    (found,) = FeatureStore(store).feature_sets()
    assert found.extractor == "opensmile"
    outcome = emo(monkeypatch, capsys, "store", "info", store)
    assert outcome.code == 0 and "skipped:" in outcome.err and "audio__copied__000000000000/spec.json" in outcome.err
    trained = emo(monkeypatch, capsys, "train", "cfnsr", "-f", store, "--out", tmp_path / "runs", *TRAIN)
    assert trained.code == 0, trained


# ---------------------------------------------------------------------------------------- file systems


def ravdess_folder(root: Path) -> Path:
    actor = root / "Actor_01"
    actor.mkdir(parents=True)
    for emotion in ("01", "03"):
        write_wav(actor / f"03-01-{emotion}-01-01-01-01.wav", speech_like(0.3))
    return root


def test_links_that_loop_in_a_dataset_folder_are_listed_and_skipped(tmp_path):
    from emocli.datasets import load_dataset

    root = ravdess_folder(tmp_path / "ravdess")
    loop = root / "Actor_01" / "03-01-05-01-01-01-01.wav"
    loop.symlink_to(loop)  # a clip name that loops on itself
    (root / "Actor_01" / "up").symlink_to("..")  # a folder link back up: walked once, not for ever
    samples = load_dataset("ravdess", root)
    assert sorted(samples.table["label"]) == ["happy", "neutral"]
    assert any("a symbolic link that loops; skipped" in note and str(loop) in note for note in samples.notes)


def test_a_dataset_root_that_loops_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    outcome = emo(monkeypatch, capsys, "extract", "--dataset", "ravdess", "--root", tmp_path / "loop", "--no-download")
    assert outcome.code == 2 and "Traceback" not in outcome.err and len(outcome.errors) == 1


def test_a_folder_of_media_with_loops_pipes_and_devices(hostile_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "media"
    folder.mkdir()
    write_wav(folder / "real.wav", speech_like(1.0))
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    os.mkfifo(folder / "pipe.wav")
    (folder / "zero.wav").symlink_to("/dev/zero")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], folder, "-q", "-o", tmp_path / "p.csv")
    assert outcome.code == 0, outcome
    assert pd.read_csv(tmp_path / "p.csv")["input"].tolist() == [str(folder / "real.wav")]


@pytest.mark.parametrize("make", ["pipe", "device"])
def test_a_pipe_or_device_given_as_an_input_is_refused_unread(hostile_run, tmp_path, monkeypatch, capsys, make):
    path = tmp_path / "input.wav"
    os.mkfifo(path) if make == "pipe" else path.symlink_to("/dev/zero")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], path, "-q")
    assert outcome.code == 1 and f"failed: {path}: not a regular file" in " ".join(outcome.err.split())


# ------------------------------------------------------------------------------------------ terminals


def ascii_streams(monkeypatch) -> tuple[io.BytesIO, io.BytesIO]:
    """stdout and stderr that encode ASCII only, as with LANG=C or a pipe into an old tool."""
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="ascii", errors="strict", write_through=True))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="ascii", errors="strict", write_through=True))
    monkeypatch.setenv("COLUMNS", "200")
    return out, err


def run_main(monkeypatch, *args) -> int:
    from emocli.cli import main

    monkeypatch.setattr(sys, "argv", ["emo", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0


def test_a_terminal_that_cannot_encode_gets_plain_text(hostile_run, tmp_path, monkeypatch):
    wav = write_wav(tmp_path / "clip.wav", speech_like(1.0))
    (tmp_path / "clip.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nGrüße aus Köln, 表情\n", encoding="utf-8")
    out, err = ascii_streams(monkeypatch)
    code = run_main(monkeypatch, "predict", hostile_run["unit"], wav, "-o", tmp_path / "p.csv")
    table = out.getvalue().decode("ascii")  # decodes: every byte written is ASCII
    assert code == 0 and "Gr??e aus K?ln, ??" in table
    assert pd.read_csv(tmp_path / "p.csv")["text"].tolist() == ["Grüße aus Köln, 表情"]  # the file keeps it


def test_an_error_on_a_terminal_that_cannot_encode_is_still_one_line(tmp_path, monkeypatch):
    out, err = ascii_streams(monkeypatch)
    code = run_main(monkeypatch, "evaluate", tmp_path / "Résultats_表")
    lines = err.getvalue().decode("ascii").splitlines()
    assert code == 2 and len(lines) == 1 and "R?sultats_?: not a run directory" in lines[0]


def test_text_from_a_manifest_is_shown_without_its_escapes(hostile_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    write_wav(tmp_path / "a.wav", speech_like(1.0))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "text": "\x1b[2J\x1b]0;owned\x07clean\x00text\r\nnext"}) + "\n")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], manifest)
    assert outcome.code == 0 and "\x1b" not in outcome.out and "\x00" not in outcome.out
    assert "cleantext  next" in outcome.out


# ------------------------------------------------------------------------ writers that race or are killed


def test_writers_racing_for_one_output_each_leave_a_whole_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from emocli.core.io import write_with

    target = tmp_path / "predictions.csv"
    tables = [pd.DataFrame({"writer": [k] * 20_000, "value": np.arange(20_000)}) for k in range(4)]

    def write(table):
        return write_with(target, lambda temporary: table.to_csv(temporary, index=False))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, tables * 3))
    written = pd.read_csv(target)
    assert len(written) == 20_000 and written["writer"].nunique() == 1  # one writer's table, whole
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


@contextmanager
def killed_after(process: subprocess.Popen, seconds: float):
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def test_a_writer_killed_mid_write_leaves_no_part_file_under_the_name(tmp_path):
    """kill -9 while the predictions are written: the output is absent (or the earlier whole file), never cut."""
    target = tmp_path / "predictions.csv"
    target.write_text("earlier,whole\n1,2\n")
    script = textwrap.dedent(f"""
        import time
        from emocli.core.io import write_with

        def slow(temporary):
            with open(temporary, "w") as handle:
                handle.write("input,segment\\n")
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)

        write_with({str(target)!r}, slow)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    with killed_after(process, 120):  # a stuck child never hangs the suite
        assert process.stdout.readline().strip() == "writing"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert target.read_text() == "earlier,whole\n1,2\n"
    (leftover,) = [p for p in tmp_path.iterdir() if p != target]
    assert leftover.name.startswith(".predictions.csv.") and leftover.name.endswith(".tmp")  # hidden, never read
    from emocli.core.io import write_text

    write_text(target, "the next run's whole file\n")  # the next writer clears what the killed one left
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_predict_killed_by_a_signal_leaves_no_output(hostile_run, tmp_path):
    """The real command, killed (SIGKILL) while it works: no prediction file appears under the name."""
    wav = write_wav(tmp_path / "long.wav", speech_like(30.0))
    out = tmp_path / "p.csv"
    process = subprocess.Popen([sys.executable, "-m", "emocli", "predict", str(hostile_run["unit"]), str(wav),
                                "--window", "0.1", "-q", "-o", str(out)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    with killed_after(process, 120):
        assert process.stderr.readline().startswith("model:")  # loaded; extracting 300 segments
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists()


# ------------------------------------------------------------------------------------ odd media and text


def test_audio_whose_rate_changes_mid_stream_is_read_at_one_rate(tmp_path):
    import av

    from emocli.features.audio.io import load_audio

    def adts(path: Path, rate: int) -> bytes:
        with av.open(str(path), "w", format="adts") as container:
            stream = container.add_stream("aac", rate=rate, layout="mono")
            signal_ = speech_like(1.0, rate)[None, :]
            size = stream.codec_context.frame_size or 1024
            for start in range(0, signal_.shape[1], size):
                chunk = np.zeros((1, size), np.float32)
                part = signal_[:, start : start + size]
                chunk[:, : part.shape[1]] = part
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = rate
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return path.read_bytes()

    joined = tmp_path / "joined.aac"
    joined.write_bytes(adts(tmp_path / "a.aac", 16000) + adts(tmp_path / "b.aac", 24000))
    signal_, rate = load_audio(joined)
    assert rate == 16000 and 1.9 < len(signal_) / rate < 2.3  # two seconds, not 1 s + 1.5 s mislabelled


@pytest.mark.parametrize("make, ok", [
    (lambda p: write_wav(p.with_suffix(".mp3"), speech_like(1.0), fmt="WAV"), True),  # a WAV named .mp3
    (lambda p: write_video(p.with_suffix(".mp4"), seconds=1.0, audio=speech_like(1.0)), True),
    (lambda p: write_wav(p.with_suffix(".wav"), np.zeros(0, np.float32)), False),
    (lambda p: write_wav(p.with_suffix(".wav"), np.full(16000, np.nan, np.float32), subtype="FLOAT"), None),
])
def test_odd_media_are_predicted_or_one_failure(hostile_run, tmp_path, monkeypatch, capsys, make, ok):
    path = make(tmp_path / "clip")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], path, "-q", "-o", tmp_path / "p.csv")
    assert "Traceback" not in outcome.err
    failed = [line for line in outcome.err.splitlines() if line.startswith("failed:")]
    if ok:
        assert outcome.code == 0 and not failed
    elif ok is False:
        assert outcome.code == 1 and len(failed) == 1 and str(path) in failed[0]
    else:  # NaN samples: predicted from features that are finite, or refused as one failure
        assert outcome.code in (0, 1) and len(failed) <= 1
        if outcome.code == 0:
            assert np.isfinite(pd.read_csv(tmp_path / "p.csv").filter(like="prob_").to_numpy()).all()


@pytest.mark.parametrize("text", ["\x00\x01\x02", "   \t  ", "\u202e\u2066", "x" * 200_000])
def test_odd_text_for_an_audio_run_is_one_failure(hostile_run, monkeypatch, capsys, text):
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], "--text", text)
    assert outcome.code in (1, 2) and "Traceback" not in outcome.err
    lines = [line for line in outcome.err.splitlines() if line.startswith(("failed:", "error:"))]
    assert len(lines) == 1 and len(lines[0]) < 400 and not set(lines[0]) & set("\x00\x01\x02\u202e\u2066")


def test_a_utf16_transcript_input_is_one_failure(hostile_run, tmp_path, monkeypatch, capsys):
    path = tmp_path / "lines.txt"
    path.write_text("hello\n", encoding="utf-16")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], path)
    assert outcome.code == 1 and f"failed: {path}: not UTF-8 (byte offset 0, line 1)" in " ".join(outcome.err.split())


def test_a_sparse_wav_header_claiming_hours_is_read_only_as_far_as_it_holds(tmp_path):
    from emocli.core.errors import ExtractionError
    from emocli.features.audio.io import load_audio

    path = write_wav(tmp_path / "x.wav", speech_like(0.5))
    data = bytearray(path.read_bytes())
    data[40:44] = (2**31).to_bytes(4, "little")  # the data chunk says two gigabytes
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractionError, match="truncated"):
        load_audio(path)
    assert sf.info(str(path)).frames > 0


def test_a_store_is_never_written_into_a_users_folder(tmp_path):
    from test_store import TextStats

    from emocli.datasets.manifest import ManifestAdapter
    from emocli.features.store import FeatureStore

    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    (mine / ".draft.tmp").write_text("a hidden file a store's writer would clear")
    manifest = tmp_path / "m.csv"
    manifest.write_text("text,label\nhello there,a\nfine,b\n")
    before = tree(mine)
    with pytest.raises(EmoError, match="holds files but is not a feature store"):
        FeatureStore(mine).extract(ManifestAdapter().load(manifest), [TextStats()], workers=0, progress=False)
    assert tree(mine) == before
