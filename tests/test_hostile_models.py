"""A hostile corpus for what emo loads and writes on the user's behalf (issue 28): model folders, bundles,
hub ids, exports, pushes, trackers, the data home, and the terminal. Every case ends in a correct result or
one line naming the file and the cause (exit code 2); a marker file that only running a folder's code
would create proves nothing ran, and the file trees of every destructive-output case are compared before
and after (tests/hostile.py: tree).

The cases damage copies of the one tiny run conftest.py trains per test process (hostile_run).
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from hostile import assert_one_line_error, emo, marker_pickle, tree

from emocli.core.errors import ConfigError, DatasetError
from emocli.runs import layout


@pytest.fixture
def run(hostile_run, tmp_path) -> Path:
    """This case's own copy of the run root (its unit: run / "seed=1" / "fold=0")."""
    copy = tmp_path / "copy" / hostile_run["root"].name
    shutil.copytree(hostile_run["root"], copy)
    return copy


def unit_of(run: Path) -> Path:
    return layout.unit_dir(run, 1, 0)


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def no_prompt(monkeypatch):
    """stdin is not a consent channel: any question asked (transformers' "run the custom code? [y/N]") fails."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"emo asked the terminal: {args}")

    monkeypatch.setattr(builtins, "input", refuse)


def remote_code_folder(folder: Path, marker: Path) -> Path:
    """A Hugging Face model folder whose config maps its classes to its own Python (auto_map), which
    creates `marker` when imported: what `trust_remote_code=True` (or a `y` at the prompt) would run."""
    folder.mkdir(parents=True)
    code = f"open({str(marker)!r}, 'w').close()\nfrom transformers import BertConfig\nclass EvilConfig(BertConfig):\n    pass\n"
    (folder / "configuration_evil.py").write_text(code)
    (folder / "modeling_evil.py").write_text(code)
    config = {"model_type": "evil", "architectures": ["EvilModel"], "hidden_size": 8, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 30,
              "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ------------------------------------------------------------------------- code from a model folder


@pytest.mark.parametrize("extractor", ["hf-text", "hf-audio", "whisper"])
def test_a_run_naming_a_model_with_its_own_code_is_refused_and_nothing_asked(run, hostile_run, tmp_path, monkeypatch,
                                                                             capsys, no_prompt, extractor):
    """feature_spec.json points an extractor at a folder with remote code: refused before transformers
    reads it, never a question at the terminal, and the folder's code never runs."""
    marker = tmp_path / "MARKER"
    evil = remote_code_folder(tmp_path / "evil-model", marker)
    unit = unit_of(run)
    edit_json(unit / layout.FEATURE_SPEC, lambda spec: spec["inputs"]["audio"].update(
        extractor=extractor, extractor_spec={"extractor": extractor, "params": {"model": str(evil)}}))
    outcome = emo(monkeypatch, capsys, "predict", unit, hostile_run["wav"])
    assert_one_line_error(outcome, evil / "config.json", "auto_map", "emo never runs code from a model folder")
    assert not marker.exists() and "configuration_evil" not in sys.modules


def test_the_text_extractor_refuses_remote_code_in_every_config_it_reads(tmp_path, no_prompt):
    from emocli.features.text.transformer import TransformerTextExtractor

    marker = tmp_path / "MARKER"
    folder = remote_code_folder(tmp_path / "m", marker)
    config = json.loads((folder / "config.json").read_text())
    config.pop("auto_map")
    config["model_type"] = "bert"
    (folder / "config.json").write_text(json.dumps(config))  # the model itself is a plain BERT ...
    (folder / "tokenizer_config.json").write_text(json.dumps(  # ... but its tokenizer names its own code
        {"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}))
    with pytest.raises(ConfigError, match="auto_map") as refused:
        TransformerTextExtractor(model=str(folder))
    assert refused.value.path == folder / "tokenizer_config.json" and not marker.exists()


def test_every_transformers_loader_is_told_never_to_run_remote_code(tmp_path, monkeypatch):
    """Hub ids (nothing on disk to check first): each from_pretrained gets trust_remote_code=False, and a
    config that still names remote code is refused (transformers would otherwise load its own class)."""
    import transformers

    from emocli.features.audio.hf_audio import HfAudioExtractor
    from emocli.features.checkpoints import check_config
    from emocli.features.text.transformer import TransformerTextExtractor

    seen = []

    class Loaded:
        auto_map = {"AutoModel": "modeling_evil.EvilModel"}

    def from_pretrained(location, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return Loaded()

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", from_pretrained)
    for extractor in (TransformerTextExtractor(model="someone/evil"), HfAudioExtractor(model="someone/evil")):
        with pytest.raises(ConfigError, match="someone/evil maps its classes to the model's own Python code"):
            extractor.config  # noqa: B018 - the property loads the config
    assert seen == [False, False]
    assert check_config(object(), "x/y", "x/y") is not None  # a config without auto_map passes


def test_a_model_folder_holding_a_pipe_is_refused_unopened(tmp_path):
    from emocli.features.checkpoints import resolve_checkpoint

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "wav2vec2"}')
    os.mkfifo(folder / "preprocessor_config.json")  # transformers would open it and wait for a writer for ever
    with pytest.raises(ConfigError, match="preprocessor_config.json, which is not a regular file"):
        resolve_checkpoint(str(folder), "speech model")


def test_a_pickled_frames_weights_file_is_one_line_and_runs_nothing(tmp_path):
    import torch

    from emocli.features.visual.frames import _load_state_dict

    marker = tmp_path / "MARKER"
    weights = tmp_path / "frames.pth"
    for content in (marker_pickle(marker), b"not a torch file at all"):
        weights.write_bytes(content)
        with pytest.raises(ConfigError, match=r"is not a file of tensors alone \(torch read it without unpickling"):
            _load_state_dict(torch.nn.Linear(2, 2), weights)
    assert not marker.exists()
    (tmp_path / "w.safetensors").write_bytes(b"\x08" + bytes(7) + b"garbage!")
    with pytest.raises(ConfigError, match="not a readable weights file"):
        _load_state_dict(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")


# ------------------------------------------------------------------------------ what a bundle names


def bundle_of(run: Path, folder: Path, heads: dict | None = None) -> Path:
    """A bundle folder holding the run's unit as its audio head (as emo bundle writes it)."""
    folder.mkdir(parents=True)
    shutil.copytree(unit_of(run), folder / "audio")
    labels = json.loads((unit_of(run) / layout.LABEL_MAP).read_text())["names"]
    spec = {"name": "b", "labels": labels,
            "heads": heads if heads is not None else {"audio": {"unit": "audio", "mapping": {c: c for c in labels}}}}
    (folder / "bundle.json").write_text(json.dumps(spec))
    return folder


def test_a_bundle_loads_its_heads_from_inside_it(run, tmp_path):
    from emocli.prediction.bundle import BundlePredictor

    bundle = bundle_of(run, tmp_path / "bundle")
    assert [h.name for h in BundlePredictor(bundle, device="cpu").heads] == ["audio"]


@pytest.mark.parametrize("unit, cause", [
    ("../outside/unit", "leads outside"),
    ("/absolute/unit", "is not a path relative to"),
    ("~/unit", "is not a path relative to"),
    ("link", "leads outside"),
])
def test_bundle_heads_that_point_outside_the_bundle_are_refused(run, tmp_path, monkeypatch, capsys, unit, cause):
    outside = tmp_path / "outside" / "unit"
    shutil.copytree(unit_of(run), outside)
    labels = json.loads((outside / layout.LABEL_MAP).read_text())["names"]
    bundle = bundle_of(run, tmp_path / "bundle", {"audio": {"unit": unit, "mapping": {c: c for c in labels}}})
    (bundle / "link").symlink_to(outside)
    outcome = emo(monkeypatch, capsys, "predict", "--model", bundle, tmp_path / "x.wav")
    assert_one_line_error(outcome, bundle / "bundle.json", f"heads.audio.unit {unit!r}", cause)


@pytest.mark.parametrize("content, cause", [
    ('{"name": "b", "labels": ["a"], "heads": {}}', "heads: Dictionary should have at least 1 item"),
    ('["not", "an", "object"]', "expected a JSON object, found an array"),
    ("{", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
    ('{"name": "b", "labels": ["a"], "heads": {"../x": {"unit": "x", "mapping": {}}}}', "head '../x' is a path"),
])
def test_damaged_bundle_files_are_one_line(tmp_path, monkeypatch, capsys, content, cause):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(content)
    outcome = emo(monkeypatch, capsys, "predict", "--model", bundle, tmp_path / "x.wav")
    assert_one_line_error(outcome, bundle / "bundle.json", cause)


# ---------------------------------------------------------------------------- outputs never destroy


@pytest.fixture
def spec(run, tmp_path) -> Path:
    labels = json.loads((unit_of(run) / layout.LABEL_MAP).read_text())["names"]
    path = tmp_path / "specs" / "bundle-spec.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"name": "tones", "labels": labels, "heads": {"audio": {"mapping": {c: c for c in labels}}}}))
    return path


def test_emo_bundle_writes_a_new_folder(run, spec, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new-bundle"
    outcome = emo(monkeypatch, capsys, "bundle", spec, "--head", f"audio={run}", "--out", out)
    assert outcome.code == 0, outcome
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "audio", "bundle.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


@pytest.mark.parametrize("where", ["the head's run", "the head's unit", "inside the run", "the spec's folder",
                                   "above the run"])
def test_emo_bundle_never_writes_over_or_into_an_input(run, spec, tmp_path, monkeypatch, capsys, where):
    out = {"the head's run": run, "the head's unit": unit_of(run), "inside the run": run / "bundle",
           "the spec's folder": spec.parent, "above the run": run.parent}[where]
    before = tree(tmp_path)
    for extra in ((), ("--overwrite",)):  # not even when told to overwrite
        outcome = emo(monkeypatch, capsys, "bundle", spec, "--head", f"audio={run}", "--out", out, *extra)
        assert_one_line_error(outcome, None, f"--out {out} is, holds or lies in the folder of an input")
    assert tree(tmp_path) == before


def test_emo_bundle_replaces_a_users_folder_only_when_told(run, spec, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, "bundle", spec, "--head", f"audio={run}", "--out", mine)
    assert_one_line_error(outcome, mine, "is not empty; give --overwrite to replace it")
    assert tree(tmp_path) == before
    outcome = emo(monkeypatch, capsys, "bundle", spec, "--head", f"audio={run}", "--out", mine, "--overwrite")
    assert outcome.code == 0 and (mine / "bundle.json").is_file() and not (mine / "thesis.tex").exists()


@pytest.mark.parametrize("head", ["../../escaped", "a/b", "..", ".hidden"])
def test_a_head_name_is_a_name_and_nothing_is_written_outside(run, spec, tmp_path, monkeypatch, capsys, head):
    edit_json(spec, lambda s: s.update(heads={head: s["heads"]["audio"]}))
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, "bundle", spec, "--head", f"{head}={run}", "--out", tmp_path / "out" / "b")
    assert_one_line_error(outcome, None, f"--head {head!r}")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("content, cause", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, found an array"),
    ('{"heads": ' * 50_000 + "{}" + "}" * 50_000, "nested more than 64 levels deep"),
    ('{"name": "x", "labels": ["a"], "heads": {"audio": "oops"}}', "heads: expected an object"),
])
def test_emo_bundle_on_a_spec_that_is_not_one_is_one_line(run, spec, tmp_path, monkeypatch, capsys, content, cause):
    spec.write_text(content)
    before = tree(tmp_path)
    outcome = emo(monkeypatch, capsys, "bundle", spec, "--head", f"audio={run}", "--out", tmp_path / "b")
    assert_one_line_error(outcome, spec, cause)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_predict_never_writes_over_an_input(hostile_run, tmp_path, monkeypatch, capsys, option):
    manifest = tmp_path / ("m.csv" if option == "-o" else "m.png")
    shutil.copy(hostile_run["wav"], tmp_path / "tone.wav")
    manifest.write_text("audio\ntone.wav\n")
    link = tmp_path / ("link.csv" if option == "-o" else "link.png")
    link.symlink_to(manifest)
    before = tree(tmp_path)
    for target in (manifest, link):  # the same file by its own name and through a link
        outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], manifest, option, target)
        assert_one_line_error(outcome, None, f"{option if option == '--plot' else '--output'} {target} is one of the inputs")
    assert tree(tmp_path) == before


def test_export_never_writes_its_description_over_the_units_files(run, monkeypatch, capsys):
    unit = unit_of(run)
    before = tree(run)
    outcome = emo(monkeypatch, capsys, "export", unit, "-o", unit / "config.onnx")  # its .json: config.json
    assert_one_line_error(outcome, None, f"--output {unit / 'config.json'} is one of the inputs")
    assert tree(run) == before


# ------------------------------------------------------------------------------ paths from data


def test_manifest_rows_outside_its_folder_are_refused_unread(hostile_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("secret.wav", "other.wav"):
        shutil.copy(hostile_run["wav"], tmp_path / name)
    shutil.copy(hostile_run["wav"], folder / "mine.wav")
    (folder / "link.wav").symlink_to(tmp_path / "secret.wav")  # inside by its name, outside where it leads
    manifest = folder / "m.csv"
    manifest.write_text(f"audio\nmine.wav\n../secret.wav\n{tmp_path / 'other.wav'}\n../../../../../../etc/passwd\n"
                        "link.wav\n")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], manifest, "-q")
    assert outcome.code == 1 and "Traceback" not in outcome.err
    line = " ".join(outcome.err.split())
    assert f"{manifest}: 4 problems: row 2: audio ../secret.wav lies outside the manifest's folder; row 3" in line
    assert "row 4: audio ../../../../../../etc/passwd lies outside the manifest's folder; row 5: audio link.wav" in line
    assert line.count("--allow-outside") == 1
    allowed = emo(monkeypatch, capsys, "predict", hostile_run["unit"], manifest, "-q", "--allow-outside")
    (failed,) = [line for line in allowed.err.splitlines() if line.startswith("failed:")]
    assert allowed.code == 1 and "#passwd: /etc/passwd: cannot open as media" in failed  # read, as told: not audio
    assert "4 input(s) predicted" in allowed.err


# ------------------------------------------------------------------------------ resource exhaustion


@pytest.mark.parametrize("make, cause", [
    (lambda path: os.mkfifo(path), "is a named pipe (FIFO), not a regular file"),
    (lambda path: path.symlink_to("/dev/zero"), "is a character device, not a regular file"),
    (lambda path: os.truncate(path, 64 * 2**20) if path.write_bytes(b"{") is not None else None,
     "is 67,108,864 bytes; emo reads at most 16,777,216"),
])
@pytest.mark.parametrize("name", [layout.LABEL_MAP, layout.CONFIG, layout.FEATURE_SPEC])
def test_run_files_that_would_hang_or_exhaust_memory_are_refused(run, hostile_run, monkeypatch, capsys, make, cause, name):
    unit = unit_of(run)
    (unit / name).unlink()
    make(unit / name)
    outcome = emo(monkeypatch, capsys, "predict", unit, hostile_run["wav"])
    assert_one_line_error(outcome, unit / name, cause)


@pytest.mark.parametrize("name", [layout.WEIGHTS, layout.NORMALIZATION, layout.METRICS, "bundle.json"])
def test_other_files_as_pipes_are_refused_not_waited_on(run, hostile_run, tmp_path, monkeypatch, capsys, name):
    if name == "bundle.json":
        target = bundle_of(run, tmp_path / "bundle")
        (target / name).unlink()
        os.mkfifo(target / name)
        outcome = emo(monkeypatch, capsys, "predict", "--model", target, hostile_run["wav"])
        assert_one_line_error(outcome, target / name, "named pipe")
        return
    unit = unit_of(run)
    (unit / name).unlink()
    os.mkfifo(unit / name)
    model = run if name == layout.METRICS else unit  # the run root reads each unit's log to choose one
    (run / "seed=1" / "fold=1").mkdir()  # a second unit, so that the root's units are compared
    shutil.copytree(unit, run / "seed=1" / "fold=1", dirs_exist_ok=True, ignore=shutil.ignore_patterns(name))
    outcome = emo(monkeypatch, capsys, "predict", "--model", model, hostile_run["wav"])
    assert_one_line_error(outcome, unit / name, "named pipe")


def test_a_class_count_of_a_trillion_never_reaches_the_allocator(run, hostile_run, monkeypatch, capsys):
    unit = unit_of(run)
    edit_json(unit / layout.CONFIG, lambda config: config["model"].update(num_classes=10**12))
    outcome = emo(monkeypatch, capsys, "predict", unit, hostile_run["wav"])
    assert_one_line_error(outcome, unit / layout.LABEL_MAP, "the model has 1000000000000 classes but label_map.json names 3")


@pytest.mark.parametrize("size, path, cause", [
    (10**12, layout.CONFIG, "model: a size of 1,000,000,000,000, larger than any model emo builds"),
    (2_000_000, layout.WEIGHTS, "weights do not fit the model built from config.json: it has"),  # counted on meta
])
def test_sizes_in_config_are_bounded_before_anything_is_allocated(run, hostile_run, monkeypatch, capsys, size, path, cause):
    unit = unit_of(run)
    edit_json(unit / layout.CONFIG, lambda config: config["model"]["modalities"]["audio"].update(dim=size))
    outcome = emo(monkeypatch, capsys, "predict", unit, hostile_run["wav"])
    assert_one_line_error(outcome, unit / path, cause)


def test_a_sidecar_subtitle_pipe_is_not_waited_on(hostile_run, tmp_path, monkeypatch, capsys):
    wav = shutil.copy(hostile_run["wav"], tmp_path / "clip.wav")
    os.mkfifo(tmp_path / "clip.srt")  # not a file: no sidecar (reading it would wait for a writer for ever)
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], wav, "-q", "-o", tmp_path / "p.csv")
    assert outcome.code == 0 and (tmp_path / "p.csv").is_file(), outcome
    assert read_transcript_refuses(tmp_path / "clip.srt", r"is a named pipe \(FIFO\), not a regular file")


def read_transcript_refuses(path: Path, cause: str) -> bool:
    from emocli.prediction.segments import read_transcript

    with pytest.raises(DatasetError, match=cause):
        read_transcript(path)
    return True


# ------------------------------------------------------------------------------------- the terminal


def test_escape_sequences_in_subtitles_reach_the_file_not_the_terminal(hostile_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")  # the text column whole
    wav = shutil.copy(hostile_run["wav"], tmp_path / "clip.wav")
    hidden = "\x1b]0;pwned\x07hello \x1b[2Jthere\x1b[8m secret\u202e"
    (tmp_path / "clip.srt").write_text(f"1\n00:00:00,000 --> 00:00:01,000\n{hidden}\n")
    outcome = emo(monkeypatch, capsys, "predict", hostile_run["unit"], wav, "-o", tmp_path / "p.json")
    assert outcome.code == 0, outcome
    assert "\x1b" not in outcome.out + outcome.err and "\u202e" not in outcome.out
    assert "hello there secret" in outcome.out
    assert json.loads((tmp_path / "p.json").read_text())["predictions"][0]["text"] == hidden  # the file keeps it


def test_an_error_naming_a_file_with_escapes_is_plain(tmp_path, monkeypatch, capsys):
    odd = tmp_path / "\x1b[2Jrun\x1b]0;title\x07"
    outcome = emo(monkeypatch, capsys, "evaluate", odd)
    assert outcome.code == 2 and "\x1b" not in outcome.err and "\x07" not in outcome.err
    assert "not a run directory" in outcome.err


def test_shown_removes_what_a_terminal_would_obey():
    from emocli.core.terminal import shown

    assert shown("plain text, ünïcode, 表") == "plain text, ünïcode, 表"
    assert shown("a\x1b[31mred\x1b[0m b") == "ared b"
    assert shown("\x1b]0;title\x07x\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\") == "xlink"
    assert shown("tab\tand\nnew\rline") == "tab and new line"
    assert shown("\x9b2J\x07\x00bell\u202eevil\u2066") == "bellevil"


# -------------------------------------------------------------------------------- trackers and push


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


TRAIN = ["train", "cfnsr", "--folds", "0", "--seeds", "1", "--modalities", "audio", "--set", "epochs=1",
         "--set", "model.video_dim=16", "--set", "model.transformer_layers=1", "--set", "model.transformer_heads=2"]


def test_an_unreachable_mlflow_server_is_one_line_at_once(hostile_run, tmp_path, monkeypatch, capsys):
    import time

    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for variable in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(variable, raising=False)  # emo's bounds, not the user's
    started = time.monotonic()
    outcome = emo(monkeypatch, capsys, *TRAIN, "--features", hostile_run["store"], "--out", tmp_path / "runs",
                  "--tracker", "mlflow")
    assert_one_line_error(outcome, None, f"--tracker mlflow: cannot use the tracking store {uri}",
                          "unset it to log into")
    assert time.monotonic() - started < 60  # MLflow's own defaults retry for about four minutes
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_file_uri_for_mlflow_is_a_local_store(hostile_run, tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "my-mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    outcome = emo(monkeypatch, capsys, *TRAIN, "--features", hostile_run["store"], "--out", tmp_path / "runs",
                  "--tracker", "mlflow")
    assert outcome.code == 0, outcome
    (found,) = MlflowClient(store.as_uri()).search_runs([MlflowClient(store.as_uri()).get_experiment_by_name(
        "cfnsr-tones").experiment_id])
    assert found.info.status == "FINISHED"


def test_a_tracker_failing_mid_run_stops_logging_not_training(hostile_run, tmp_path, monkeypatch, capsys):
    from emocli.training.tracking import TensorBoardTracker

    def broken(self, unit, record):
        raise RuntimeError("the event writer died")

    monkeypatch.setattr(TensorBoardTracker, "on_epoch_end", broken)
    outcome = emo(monkeypatch, capsys, *TRAIN, "--set", "epochs=2", "--features", hostile_run["store"],
                  "--out", tmp_path / "runs", "--tracker", "tensorboard")
    assert outcome.code == 0, outcome
    assert outcome.err.count("--tracker tensorboard stopped logging (the event writer died)") == 1
    assert len(list((tmp_path / "runs").glob("*/results.json"))) == 1


def test_a_tensorboard_folder_that_cannot_be_written_is_one_line(hostile_run, tmp_path, monkeypatch, capsys):
    from emocli.runs.layout import unit_dir

    out = tmp_path / "runs"
    args = (*TRAIN, "--features", hostile_run["store"], "--out", out, "--name", "x", "--tracker", "tensorboard")
    unit = unit_dir(out / "cfnsr-tones-x", 1, 0)
    unit.mkdir(parents=True)
    (unit / "tensorboard").write_text("a file where the event folder goes")
    outcome = emo(monkeypatch, capsys, *args)
    assert_one_line_error(outcome, unit / "tensorboard", "is a file, not a folder")


def test_push_without_the_network_is_one_line(run, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", os.environ["HF_ENDPOINT"])
    outcome = emo(monkeypatch, capsys, "push", unit_of(run), "someone/tones", "--token", "hf_x")
    assert_one_line_error(outcome, None, "someone/tones: cannot reach the Hugging Face hub", "nothing was changed")


@pytest.mark.parametrize("repo", ["some one/tones", "someone/to..nes", "a" * 100 + "/b"])
def test_invalid_hub_ids_are_one_line(run, monkeypatch, capsys, repo):
    outcome = emo(monkeypatch, capsys, "push", unit_of(run), repo)
    assert_one_line_error(outcome, None, f"{repo!r} is not a valid hub repository id")
    outcome = emo(monkeypatch, capsys, "predict", "--model", repo, "x.wav")
    assert_one_line_error(outcome, None, f"{repo!r} is not a valid hub repository id")


def test_a_hub_download_fetches_no_code_or_pickles(monkeypatch):
    import huggingface_hub

    from emocli.runs import hub

    asked = {}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: asked.update(kw) or "/nowhere")
    hub.resolve("someone/model")
    assert asked["allow_patterns"] == ["*.json", "*.jsonl", "*.safetensors", "*.md"]


# --------------------------------------------------------------------------------------- data home


@pytest.fixture
def meld_home(meld_root, tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home" / "meld"
    home.mkdir(parents=True)
    for name in ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"):
        shutil.copy(meld_root / name, home / name)
    monkeypatch.setenv("EMO_DATA", str(tmp_path / "home"))
    monkeypatch.delenv("EMO_MELD_ROOT", raising=False)
    return home


@pytest.mark.realdata
def test_a_csv_copied_half_into_the_data_home_is_never_in_place(meld_home, monkeypatch, capsys):
    from emocli.datasets.download import ensure_available
    from emocli.datasets.home import locate_dataset
    from emocli.datasets.meld import MeldAdapter

    train = meld_home / "train_sent_emo.csv"
    data = train.read_bytes()
    train.write_bytes(data[: len(data) // 2])  # the copy stopped half-way
    with pytest.raises(DatasetError, match="is 559,645 bytes where the published file has 1,119,290") as refused:
        ensure_available(MeldAdapter, locate_dataset("meld"), download=False)
    assert refused.value.path == train and "delete it and run again" in str(refused.value)
    outcome = emo(monkeypatch, capsys, "datasets", "meld")
    assert "train_sent_emo.csv, 1.1 MB, not in place: it is 559,645 bytes" in " ".join(outcome.out.split())

    train.write_bytes(data[:-1] + b"!")  # the same size, another content
    with pytest.raises(DatasetError, match="has sha256 .* not the published file's"):
        ensure_available(MeldAdapter, locate_dataset("meld"), download=False)


@pytest.mark.realdata
def test_a_pipe_in_the_data_home_is_not_a_file_in_place(meld_home):
    from emocli.datasets.download import ensure_available
    from emocli.datasets.home import locate_dataset
    from emocli.datasets.meld import MeldAdapter

    (meld_home / "dev_sent_emo.csv").unlink()
    os.mkfifo(meld_home / "dev_sent_emo.csv")
    with pytest.raises(DatasetError, match="is not a regular file"):
        ensure_available(MeldAdapter, locate_dataset("meld"), download=False)

