"""A hostile corpus for runs and the command line: crafted and damaged run folders, wrong label maps,
bad options, unwritable outputs, half-finished training. Every case goes through `emo`'s own entry point
(`emocli.cli.main`, in this process) and ends in one clear line naming the file and the cause, exit code
2, or in a correct result; no crafted run folder gets anything in it imported or unpickled (each plants
a marker that only running its code would create).

One tiny CFN-SR run on eGeMAPS functionals of generated tones (tests/test_predict.py) is trained once;
each case damages its own copy.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hostile import assert_one_line_error, emo, marker_pickle
from test_predict import RATE, SMALL_CFNSR, tone

from emocli.core import io
from emocli.core.errors import EmoError
from emocli.runs import layout

TRAIN = ["--folds", "0", "--seeds", "1", "--modalities", "audio", "--name", "base",
         *[arg for setting in [*SMALL_CFNSR, "epochs=2"] for arg in ("--set", setting)]]


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(hostile_run) -> dict[str, Path]:
    """A finished run (trained by the same `emo train` arguments the resume cases use) and some media
    (conftest.py's hostile_run, trained once per test process)."""
    return hostile_run


@pytest.fixture
def run(base, tmp_path) -> Path:
    """This case's own copy of the run root (the unit is run / "seed=1" / "fold=0")."""
    copy = tmp_path / "copy" / base["root"].name
    shutil.copytree(base["root"], copy)
    return copy


def unit_of(run: Path) -> Path:
    return layout.unit_dir(run, 1, 0)


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------- crafted run folders: data only


def test_the_marker_pickle_would_plant_its_marker(tmp_path):
    """The corpus's pickles are live: an unsafe loader would create the marker (so its absence means something)."""
    marker = tmp_path / "MARKER"
    pickle.loads(marker_pickle(marker))
    assert marker.is_file()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_module_named_in_feature_spec_is_never_imported(run, base, tmp_path, monkeypatch, capsys, command):
    unit = unit_of(run)
    marker = tmp_path / "MARKER"
    (unit / "evil_extractor.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(unit))  # the worst case: the folder is importable
    monkeypatch.chdir(unit)
    for name in ("evil_extractor:Evil", "this:s"):  # a module in the folder; the standard library's `this`
        edit_json(unit / layout.FEATURE_SPEC, lambda spec: spec["inputs"]["audio"]["extractor_spec"].update(extractor=name))
        if command == "predict":
            outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"])
            assert_one_line_error(outcome, unit / layout.FEATURE_SPEC, f"unknown extractor {name!r}")
        else:  # evaluate reads the store's features and never builds an extractor: the run still scores
            outcome = emo(monkeypatch, capsys, "evaluate", unit)
            assert outcome.code == 0 and "reproduces test_metrics.json" in outcome.out
        assert not marker.exists() and "Beautiful is better than ugly" not in outcome.out + outcome.err
    assert "evil_extractor" not in sys.modules


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_model_named_by_module_or_unknown_is_refused(run, base, tmp_path, monkeypatch, capsys, command):
    unit = unit_of(run)
    marker = tmp_path / "MARKER"
    (unit / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(unit))
    for name in ("evil_model:Evil", "evil_model", "transformer"):
        edit_json(unit / layout.CONFIG, lambda config: config.update(model_name=name))
        args = ("predict", unit, base["wav"]) if command == "predict" else ("evaluate", unit)
        outcome = emo(monkeypatch, capsys, *args)
        assert_one_line_error(outcome, unit / layout.CONFIG, f"unknown model {name!r}; choose one of")
    assert not marker.exists() and "evil_model" not in sys.modules


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_pickle_in_place_of_the_weights_is_refused_unopened(run, base, tmp_path, monkeypatch, capsys, command):
    unit = unit_of(run)
    marker = tmp_path / "MARKER"
    (unit / layout.WEIGHTS).write_bytes(marker_pickle(marker))
    args = ("predict", unit, base["wav"]) if command == "predict" else ("evaluate", unit)
    outcome = emo(monkeypatch, capsys, *args)
    assert_one_line_error(outcome, unit / layout.WEIGHTS, "not a readable safetensors file")
    assert not marker.exists()


def test_a_pickle_in_place_of_the_standardisation_is_refused_unopened(run, base, tmp_path, monkeypatch, capsys):
    unit = unit_of(run)
    marker = tmp_path / "MARKER"
    (unit / layout.NORMALIZATION).write_bytes(marker_pickle(marker))
    outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"])
    assert_one_line_error(outcome, unit / layout.NORMALIZATION, "cannot read the feature standardisation")
    assert not marker.exists()


def test_a_pickle_in_place_of_the_checkpoint_is_refused_when_training_resumes(run, base, tmp_path, monkeypatch, capsys):
    unit = unit_of(run)
    marker = tmp_path / "MARKER"
    (unit / layout.CHECKPOINT).write_bytes(marker_pickle(marker))
    (unit / layout.TEST_METRICS).unlink()  # unfinished: the same command resumes it
    (run / layout.RESULTS_JSON).unlink()
    outcome = emo(monkeypatch, capsys, "train", "cfnsr", "--features", base["store"], "--out", run.parent, *TRAIN)
    assert_one_line_error(outcome, unit / layout.CHECKPOINT, "cannot resume from this checkpoint",
                          "pickled objects are never loaded", "delete it")
    assert not marker.exists()
    assert (unit / layout.WEIGHTS).is_file()  # the kept weights are left alone


# ------------------------------------------------------------------------------- damaged and wrong files


def test_truncated_weights(run, base, monkeypatch, capsys):
    unit = unit_of(run)
    weights = (unit / layout.WEIGHTS).read_bytes()
    (unit / layout.WEIGHTS).write_bytes(weights[: len(weights) // 2])
    outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"])
    assert_one_line_error(outcome, unit / layout.WEIGHTS, "not a readable safetensors file")


def test_weights_of_another_model(run, base, monkeypatch, capsys):
    unit = unit_of(run)
    layout.save_weights(torch.nn.Linear(3, 2), unit / layout.WEIGHTS)
    outcome = emo(monkeypatch, capsys, "evaluate", unit)
    assert_one_line_error(outcome, unit / layout.WEIGHTS, "weights do not fit the model built from config.json")


@pytest.mark.parametrize("names, cause", [
    (["low", "mid"], "the model has 3 classes but label_map.json names 2"),
    (["low", "mid", "high", "other"], "the model has 3 classes but label_map.json names 4"),
    (["low", "low", "high"], "a class name is repeated"),
    ([], "names: List should have at least 1 item"),
    ("low,mid,high", "names: Input should be a valid list"),
])
def test_label_maps_of_the_wrong_size_or_shape(run, base, monkeypatch, capsys, names, cause):
    unit = unit_of(run)
    edit_json(unit / layout.LABEL_MAP, lambda label_map: label_map.update(names=names))
    outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"])
    assert_one_line_error(outcome, unit / layout.LABEL_MAP, cause)


@pytest.mark.parametrize("name, content, cause", [
    (layout.CONFIG, "[1, 2]", "expected a JSON object, found an array"),
    (layout.CONFIG, '{"model": {}, "train": {}}', "model_name: Field required"),
    (layout.CONFIG, "{", "not valid JSON"),
    (layout.LABEL_MAP, '{"names": ["a", "b", "c"], "task": "regression"}', "task: Input should be"),
    (layout.FEATURE_SPEC, '{"inputs": {}}', "inputs: Dictionary should have at least 1 item"),
    (layout.FEATURE_SPEC, '{"inputs": {"audio": {"modality": "audio"}}}', "inputs.audio.feature_set: Field required"),
    (layout.FEATURE_SPEC, b"\xff\xfe\x00garbage", "cannot read"),
])
def test_damaged_json_files(run, base, monkeypatch, capsys, name, content, cause):
    unit = unit_of(run)
    path = unit / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    outcome = emo(monkeypatch, capsys, "evaluate", unit)
    assert_one_line_error(outcome, path, cause)


def test_damaged_splits_and_a_missing_file(run, monkeypatch, capsys):
    unit = unit_of(run)
    (unit / layout.SPLITS).write_text('{"test": "t001"}')
    assert_one_line_error(emo(monkeypatch, capsys, "evaluate", unit), unit / layout.SPLITS,
                          "expected a list of sample ids")
    (unit / layout.SPLITS).unlink()
    assert_one_line_error(emo(monkeypatch, capsys, "evaluate", unit), unit / layout.SPLITS,
                          "missing file of a run directory")


def test_standardisation_of_the_wrong_width(run, base, monkeypatch, capsys):
    from safetensors.numpy import save_file

    unit = unit_of(run)
    save_file({"audio.mean": np.zeros(5, np.float32), "audio.scale": np.ones(5, np.float32)},
              str(unit / layout.NORMALIZATION))
    outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"])
    assert_one_line_error(outcome, unit / layout.NORMALIZATION, "audio statistics have shapes (5,) and (5,)",
                          "the input has 88 features")


def test_a_feature_width_that_disagrees_with_the_extractor(run, base, monkeypatch, capsys):
    unit = unit_of(run)
    edit_json(unit / layout.FEATURE_SPEC, lambda spec: spec["inputs"]["audio"]["extractor_spec"]["params"].update(
        feature_set="ComParE_2016"))  # a real parameter, another width (6373)
    outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"])
    assert_one_line_error(outcome, unit / layout.FEATURE_SPEC, "rebuilt from the run gives vector [6373] features",
                          "trained on vector [88]")


def test_a_run_root_without_units(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty-run" / "seed=1").mkdir(parents=True)
    outcome = emo(monkeypatch, capsys, "evaluate", tmp_path / "empty-run")
    assert_one_line_error(outcome, tmp_path / "empty-run", "not a run directory")


def test_a_torn_metrics_log_still_chooses_a_unit(run, base, monkeypatch, capsys):
    """A process killed while appending leaves half a line: a run root is still read, the best unit chosen."""
    unit = unit_of(run)
    with open(unit / layout.METRICS, "a") as log:
        log.write('{"epoch": 3, "valid": {"lo')
    outcome = emo(monkeypatch, capsys, "predict", run, base["wav"], "--quiet")
    assert outcome.code == 0, outcome
    assert f"model: {unit}" in outcome.err


# --------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("device, cause", [
    ("gpu", "--device 'gpu': not a device; use auto, cpu, cuda or cuda:N"),
    ("cuda", "--device cuda: no CUDA GPU is available here; use --device cpu"),
])
def test_a_device_that_is_not_there(run, base, tmp_path, monkeypatch, capsys, device, cause):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    unit = unit_of(run)
    for args in (("predict", unit, base["wav"]), ("evaluate", unit),
                 ("train", "cfnsr", "--features", base["store"], "--out", tmp_path / "new", *TRAIN)):
        outcome = emo(monkeypatch, capsys, *args, "--device", device)
        assert outcome.code == 2 and outcome.errors == [f"error: {cause}"], outcome
    assert not (tmp_path / "new").exists()  # nothing made before the device was known to be missing


@pytest.mark.parametrize("args, option, choices", [
    (("train", "cfnsr", "--features", "x", "--protocol", "papr"), "--protocol", ("standard", "paper")),
    (("evaluate", "x", "--split", "tst"), "--split", ("train", "valid", "test")),
    (("evaluate", "x", "--empty-rule", "none"), "--empty-rule", ("zero", "one")),
])
def test_choice_options_list_their_values(monkeypatch, capsys, args, option, choices):
    outcome = emo(monkeypatch, capsys, *args)
    assert outcome.code == 2 and "Traceback" not in outcome.err
    message = " ".join(outcome.err.replace("│", " ").split())
    assert f"Invalid value for '{option}'" in message
    assert ", ".join(f"'{c}'" for c in choices) in message  # typer lists every valid value


def test_choice_options_are_the_configurations_own():
    """The commands' choices are TrainConfig's (runs/config.py): a new protocol or rule must appear in both."""
    from typing import get_args

    from emocli.commands.evaluate_cmd import EmptyRule, Split
    from emocli.commands.train_cmd import Protocol
    from emocli.core.types import SPLITS
    from emocli.runs.config import TrainConfig

    fields = TrainConfig.model_fields
    assert [p.value for p in Protocol] == list(get_args(fields["protocol"].annotation))
    assert [r.value for r in EmptyRule] == list(get_args(fields["empty_rule"].annotation))
    assert [s.value for s in Split] == list(SPLITS)


# ------------------------------------------------------------------------------------- output folders


def test_predict_checks_its_outputs_before_any_work(run, base, tmp_path, monkeypatch, capsys):
    unit = unit_of(run)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (("-o", blocker / "out.csv"), blocker / "out.csv", f"cannot write here: {blocker} is a file, not a folder"),
        (("-o", tmp_path), tmp_path, "is a folder; give a file name"),
        (("-o", tmp_path / "out.xlsx"), tmp_path / "out.xlsx", "unknown output format '.xlsx'"),
        (("--plot", blocker / "t.png"), blocker / "t.png", "is a file, not a folder"),
        (("--plot", tmp_path / "t.gif"), tmp_path / "t.gif", "unknown plot format '.gif'"),
    ]
    for option, path, cause in cases:
        outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"], *option)
        assert_one_line_error(outcome, path, cause)
        assert outcome.err.strip() == outcome.errors[0]  # the only line: no model was even loaded


def test_an_output_that_fails_late_keeps_the_predictions(run, base, tmp_path, monkeypatch, capsys):
    """The disk fills while the CSV is written: the table is printed, the error names the file and the
    reason, no temporary is left, and the exit code says it."""
    unit = unit_of(run)
    out = tmp_path / "preds" / "out.csv"

    def full_disk(self, path, **options):
        Path(path).write_text("input,seg")  # half a file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"], "-o", out, "--quiet")
    line = assert_one_line_error(outcome, out, "No space left on device")
    assert "the predictions are printed above instead" in line
    assert "single-label (softmax)" in outcome.out and "top 3" in outcome.out  # printed although --quiet
    assert not out.exists() and list(out.parent.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_read_only_output_folders(run, base, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
        unit = unit_of(run)
        outcome = emo(monkeypatch, capsys, "predict", unit, base["wav"], "-o", locked / "out.csv")
        assert_one_line_error(outcome, locked / "out.csv", "Permission denied")
        outcome = emo(monkeypatch, capsys, "train", "cfnsr", "--features", base["store"], "--out", locked / "runs", *TRAIN)
        assert_one_line_error(outcome, locked / "runs", "Permission denied")
        unit.chmod(0o500)
        outcome = emo(monkeypatch, capsys, "evaluate", unit)
        assert_one_line_error(outcome, unit / "evaluation-test.json", "Permission denied")
        unit.chmod(0o700)
    finally:
        locked.chmod(0o700)


def test_evaluate_checks_its_files_first_and_keeps_results_when_a_write_fails(run, monkeypatch, capsys):
    unit = unit_of(run)
    (unit / "evaluation-test.json").mkdir()  # a folder where the file goes
    outcome = emo(monkeypatch, capsys, "evaluate", unit)
    assert_one_line_error(outcome, unit / "evaluation-test.json", "is a folder")
    assert outcome.out == ""  # nothing scored
    (unit / "evaluation-test.json").rmdir()

    def full_disk(path, text):
        raise io.output_error(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr("emocli.runs.layout.write_text", full_disk)
    outcome = emo(monkeypatch, capsys, "evaluate", unit)
    assert_one_line_error(outcome, unit / "evaluation-test.json", "No space left on device",
                          "the results are printed above")
    assert "test accuracy" in outcome.out or "accuracy" in outcome.out


def test_train_into_an_unusable_folder_fails_before_loading_and_leaves_nothing(base, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "runs"
    blocker.write_text("")
    outcome = emo(monkeypatch, capsys, "train", "cfnsr", "--features", base["store"], "--out", blocker, *TRAIN)
    assert_one_line_error(outcome, blocker / "cfnsr-tones-base", f"{blocker} is a file, not a folder")


@pytest.mark.parametrize("extra, cause", [
    (("--folds", "7"), "--folds: the dataset has no fold 7"),
    (("--set", "batch_size=64", "--set", "drop_last=true"), "make no batch of 64 with drop_last"),
    (("--set", "selection.metric=nonsense"), "selection metric 'nonsense' is not recorded"),
])
def test_failed_training_leaves_no_half_run_folder(base, tmp_path, monkeypatch, capsys, extra, cause):
    out = tmp_path / "runs"
    outcome = emo(monkeypatch, capsys, "train", "cfnsr", "--features", base["store"], "--out", out, *TRAIN, *extra)
    assert outcome.code == 2 and len(outcome.errors) == 1 and cause in outcome.errors[0], outcome
    assert not out.exists() or not any(out.iterdir())  # no run folder that would read as "not a run directory"


def test_a_failing_trial_of_a_search_keeps_the_finished_ones_and_no_half_folder(base, tmp_path, monkeypatch, capsys):
    out = tmp_path / "search"
    args = ("tune", "cfnsr", "--features", base["store"], "--out", out, "--grid", "batch_size=8,64",
            *[a for a in TRAIN if a not in ("--name", "base")], "--set", "drop_last=true")
    outcome = emo(monkeypatch, capsys, *args)
    assert outcome.code == 2 and len(outcome.errors) == 1 and "make no batch of 64" in outcome.errors[0], outcome
    (finished,) = out.iterdir()  # the batch_size=8 trial, whole; nothing of the failed one, no report
    assert (finished / layout.RESULTS_JSON).is_file()
    again = emo(monkeypatch, capsys, *args)  # the same search: the finished trial is not trained again
    assert "finished before" not in again.err and "already finished" in again.err


# ------------------------------------------------------------------------------------ inputs to predict


def test_a_manifest_with_a_missing_file_predicts_its_other_rows(base, tmp_path, monkeypatch, capsys):
    manifest = tmp_path / "todo.csv"
    wav = shutil.copy(base["wav"], tmp_path / "tone.wav")  # media inside the manifest's folder (see --allow-outside)
    manifest.write_text(f"sample_id,audio\nthere,{wav}\ngone,{tmp_path / 'gone.wav'}\n")
    out = tmp_path / "out.csv"
    outcome = emo(monkeypatch, capsys, "predict", base["unit"], manifest, "-o", out, "--quiet")
    assert outcome.code == 1, outcome
    assert pd.read_csv(out)["input"].tolist() == [f"{manifest}#there"]
    assert f"failed: {manifest}#gone: {tmp_path / 'gone.wav'}: no such file" in outcome.err


def test_a_bad_sidecar_does_not_fail_a_run_that_reads_no_text(base, tmp_path, monkeypatch, capsys):
    wav = tmp_path / "clip.wav"
    sf.write(wav, tone("low", 3.0, seed=9), RATE)
    wav.with_suffix(".txt").write_bytes(b"\xff\xfe not utf-8")  # a transcript the audio run does not read
    outcome = emo(monkeypatch, capsys, "predict", base["unit"], wav, "--quiet", "-o", tmp_path / "a.csv")
    assert outcome.code == 0 and "failed" not in outcome.err, outcome

    wav.with_suffix(".txt").unlink()
    wav.with_suffix(".srt").write_text("1\n00:00:01,000 --> 00:00:00,500\nbackwards\n")
    outcome = emo(monkeypatch, capsys, "predict", base["unit"], wav, "--window", "1", "-o", tmp_path / "b.csv")
    assert outcome.code == 0, outcome
    assert f"note: {wav}: {wav.with_suffix('.srt')}: line 2: the cue ends" in outcome.err
    assert "cut into --window segments" in outcome.err
    assert len(pd.read_csv(tmp_path / "b.csv")) == 3  # three one-second windows


# ------------------------------------------------------------------------------------- the entry point


def test_an_os_error_no_writer_caught_is_still_one_line(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "/some/disk/file")

    monkeypatch.setattr("emocli.models.registry.catalog", broken)  # what `emo models` reads first
    outcome = emo(monkeypatch, capsys, "models", "--no-count")
    assert outcome.code == 2 and outcome.err.strip() == "error: /some/disk/file: Input/output error"


def test_library_messages_become_one_line_and_brackets_print_as_they_are(monkeypatch, capsys, tmp_path):
    error = EmoError("weights do not fit:\n\tsize mismatch for [a.weight]", path=tmp_path / "[odd] name")
    assert "\n" not in str(error) and "size mismatch for [a.weight]" in str(error)
    outcome = emo(monkeypatch, capsys, "evaluate", tmp_path / "[/odd]")
    assert_one_line_error(outcome, tmp_path / "[/odd]", "not a run directory")
