"""emo predict's Python API (emocli/prediction.py): tiny runs trained here on eGeMAPS features of generated
tones (three classes: low, mid, high pitch), then prediction on new wav/mp4 files, folders, transcripts
and manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from media import truncate, write_garbage, write_video

from emocli.core.errors import ConfigError
from emocli.core.samples import SampleSet
from emocli.core.types import Cue, LabelMap
from emocli.data.normalize import Standardizer
from emocli.features.presets import build_extractor
from emocli.features.store import FeatureStore
from emocli.prediction.predictor import Predictor
from emocli.runs import layout
from emocli.runs.config import TrainConfig
from emocli.runs.inference import TrainedUnit, choose_unit
from emocli.training.config import resolve_config
from emocli.training.trainer import train_run

RATE = 16000
CLASSES = ("low", "mid", "high")
PITCH = {"low": 220.0, "mid": 440.0, "high": 880.0}
WORDS = {"low": "a deep slow voice", "mid": "an ordinary voice", "high": "a shrill excited voice"}
SMALL_CFNSR = ["model.video_dim=16", "model.transformer_layers=1", "model.transformer_heads=2", "batch_size=8",
               "optimizer.lr=3e-3"]


def tone(label: str, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A sine at the class's pitch (jittered by a few percent) with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    pitch = PITCH[label] * (1 + 0.03 * rng.normal())
    return (0.4 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def tones(*labels: str, seconds: float = 1.0) -> np.ndarray:
    return np.concatenate([tone(label, seconds, seed=100 + i) for i, label in enumerate(labels)])


def make_tone_store(path: Path, *, n: int = 36, text: bool = False, dialogues: bool = False,
                    task: str = "single_label") -> FeatureStore:
    """n one-second tone clips as wav files, eGeMAPS functionals (+ GloVe of a class phrase) extracted with
    the real extractors through the store, so runs record real extractor specs."""
    media = path / "media"
    media.mkdir(parents=True)
    rows = []
    for i in range(n):
        label = CLASSES[i % 3]
        wav = media / f"t{i:03d}.wav"
        sf.write(wav, tone(label, seed=i), RATE)
        row = {"sample_id": f"t{i:03d}", "audio_path": str(wav), "speaker": f"s{i % 6}", "fold": (i % 6) // 2,
               "text": WORDS[label]}
        if task == "single_label":
            row.update(label=label, labels=[])
        else:
            row.update(label=None, labels=[label] + ([CLASSES[(i + 1) % 3]] if i % 2 else []))
        if dialogues:
            row.update(dialogue_id=f"d{i // 4:02d}", position=i % 4, fold=(i // 4) % 3)
        rows.append(row)
    sample_set = SampleSet("tones", path, pd.DataFrame(rows), LabelMap(CLASSES, task))
    store = FeatureStore(path / "store")
    extractors = [build_extractor("egemaps")] + ([build_extractor("glove")] if text else [])
    store.extract(sample_set, extractors, workers=0, progress=False)
    return store


def train_tiny(store: FeatureStore, out: Path, model: str = "cfnsr", overrides=(), **fields) -> Path:
    config = resolve_config(model, overrides=list(overrides), seeds=[1], folds=[0], **fields)
    summary = train_run(model, store.path, config, out=out)
    return layout.unit_dir(summary.root, 1, 0)


@pytest.fixture(scope="module")
def tone_store(tmp_path_factory) -> FeatureStore:
    return make_tone_store(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="module")
def unit(tone_store, tmp_path_factory) -> Path:
    """CFN-SR on eGeMAPS vectors (audio only), a few epochs."""
    return train_tiny(tone_store, tmp_path_factory.mktemp("runs"), overrides=[*SMALL_CFNSR, "epochs=8"],
                      modalities=["audio"])


@pytest.fixture(scope="module")
def predictor(unit) -> Predictor:
    return Predictor(unit)


def standardized(unit: Path, features: np.ndarray, modality: str = "audio") -> np.ndarray:
    """By hand: the z-score with the mean and scale the unit fitted on its training rows."""
    mean, scale = Standardizer.load(unit / layout.NORMALIZATION).stats[modality]
    return ((features - mean) / scale).astype(np.float32)


def reference(unit: Path, *samples: dict) -> np.ndarray:
    """By hand: eGeMAPS of each sample, standardised as in training, the unit's model, softmax; what
    predict must reproduce. (The tiny model is not asked to be right about pitch: the tests check that
    predict computes what it should.)"""
    extractor = build_extractor("egemaps")
    features = standardized(unit, np.stack([extractor.extract({"sample_id": "x", **sample}).values for sample in samples]))
    with torch.no_grad():
        logits = TrainedUnit.read(unit).build_model()({"audio": torch.from_numpy(features)}, {}).logits
    return torch.softmax(logits, -1).numpy()


def test_a_wav_is_predicted_as_the_model_predicts_its_features(predictor, unit, tmp_path):
    wav = tmp_path / "high.wav"
    sf.write(wav, tone("high", 2.0, seed=7), RATE)
    result = predictor.predict([wav])
    assert not result.failures
    row = result.table.iloc[0]
    assert (row["input"], row["segment"], row["start_s"], row["end_s"], row["text"]) == (str(wav), 0, 0.0, 2.0, None)
    probs = result.probabilities
    assert row["label"] == CLASSES[probs[0].argmax()]
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)  # single-label: softmax
    # Batches of one and of many differ in the last float bits of a matrix product, hence 1e-6.
    np.testing.assert_allclose(probs, reference(unit, {"audio_path": str(wav)}), rtol=0, atol=1e-6)


def test_a_video_is_heard_through_its_own_audio_track(predictor, unit, tmp_path):
    low = write_video(tmp_path / "low.mp4", seconds=2.0, audio=tone("low", 2.0, seed=3), face=True)
    high = write_video(tmp_path / "high.mp4", seconds=2.0, audio=tone("high", 2.0, seed=3))
    result = predictor.predict([low, high])
    assert not result.failures and result.table["end_s"].tolist() == pytest.approx([2.0, 2.0], abs=0.1)
    expected = reference(unit, {"video_path": str(low)}, {"video_path": str(high)})
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-6)
    assert not np.allclose(expected[0], expected[1], atol=1e-3)  # two tones, two answers


def test_long_audio_is_cut_into_windows_predicted_one_by_one(predictor, unit, tmp_path):
    wav = tmp_path / "long.wav"
    sf.write(wav, tones("low", "mid", "high", seconds=4.0), RATE)
    table = predictor.predict([wav], window_s=4.0).table
    assert table[["start_s", "end_s"]].values.tolist() == [[0, 4], [4, 8], [8, 12]]
    expected = reference(unit, *({"audio_path": str(wav), "start_s": 4.0 * k, "end_s": 4.0 * k + 4} for k in range(3)))
    np.testing.assert_allclose(predictor.predict([wav], window_s=4.0).probabilities, expected, rtol=0, atol=1e-6)
    # The same file with a window longer than two thirds of it is one segment: the whole file.
    assert predictor.predict([wav], window_s=8.5).table[["start_s", "end_s"]].values.tolist() == [[0, 12]]


@pytest.mark.parametrize("suffix", [".srt", ".vtt"])
def test_subtitle_cues_next_to_the_media_are_the_segments(predictor, unit, tmp_path, suffix):
    video = write_video(tmp_path / "talk.mp4", seconds=6.0, audio=tones("high", "low", "mid", seconds=2.0))
    separator = "," if suffix == ".srt" else "."
    header = "WEBVTT\n\n" if suffix == ".vtt" else ""
    video.with_suffix(suffix).write_text(
        f"{header}1\n00:00:02{separator}200 --> 00:00:03{separator}800\ndown low\n\n"
        f"2\n00:00:00{separator}200 --> 00:00:01{separator}800\nup high\n\n"
        f"3\n00:00:05{separator}000 --> 00:00:09{separator}000\npast the end\n"
    )
    result = predictor.predict([video])
    table = result.table
    assert table["text"].tolist() == ["up high", "down low", "past the end"]  # in time order
    assert table[["start_s", "end_s"]].values.tolist() == [[0.2, 1.8], [2.2, 3.8], [5.0, 6.0]]
    expected = reference(unit, *({"video_path": str(video), "start_s": a, "end_s": b} for a, b in table[["start_s", "end_s"]].values))
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-6)


def test_a_folder_is_predicted_with_each_bad_file_reported(predictor, tmp_path):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", tone("low", seed=1), RATE)
    good = write_video(folder / "sub" / "b.mp4", seconds=1.5, audio=tone("high", 1.5, seed=2))
    write_garbage(folder / "broken.mp4")
    truncate(good, folder / "cut.mp4", keep=0.3)
    write_video(folder / "silent.mp4", seconds=1.0)
    (folder / "notes.md").write_text("not media")
    result = predictor.predict([folder, tmp_path / "nowhere.wav"])
    assert sorted(Path(p).name for p in result.table["input"]) == ["a.wav", "b.mp4"]
    failures = {Path(f.input).name: f.message for f in result.failures}
    assert set(failures) == {"broken.mp4", "cut.mp4", "silent.mp4", "nowhere.wav"}
    assert failures["broken.mp4"].startswith("cannot open as media")
    assert "has no audio track; the run needs audio (opensmile)" in failures["silent.mp4"]
    assert failures["nowhere.wav"] == "no such file or folder"
    assert str(folder / "cut.mp4") in str(next(f for f in result.failures if f.input.endswith("cut.mp4")))


def test_a_manifest_is_read_without_labels(predictor, unit, tmp_path):
    sf.write(tmp_path / "x.wav", tones("low", "high", seconds=2.0), RATE)
    manifest = tmp_path / "todo.csv"
    manifest.write_text("sample_id,audio,start_s,end_s\nfirst,x.wav,0,2\nsecond,x.wav,2,4\n")
    result = predictor.predict([manifest])
    assert not result.failures
    assert result.table["input"].tolist() == [f"{manifest}#first", f"{manifest}#second"]
    assert result.table["start_s"].tolist() == [0.0, 2.0] and result.table["end_s"].tolist() == [2.0, 4.0]
    expected = reference(unit, *({"audio_path": str(tmp_path / "x.wav"), "start_s": a, "end_s": a + 2} for a in (0.0, 2.0)))
    np.testing.assert_allclose(result.probabilities, expected, rtol=0, atol=1e-6)


def test_text_inputs_are_refused_by_an_audio_run(predictor, tmp_path):
    result = predictor.predict([], text="hello there")
    assert result.table.empty
    assert [str(f) for f in result.failures] == ["--text: the run needs audio (opensmile); a text input has none"]


def test_run_root_uses_the_unit_with_the_best_validation_score(unit, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(unit.parent.parent, root)
    better = root / "seed=2" / "fold=0"
    shutil.copytree(root / "seed=1" / "fold=0", better)
    best_epoch = layout.read_json(better / layout.TEST_METRICS)["best_epoch"]
    records = layout.read_jsonl(better / layout.METRICS)
    metric = TrainConfig.model_validate(layout.read_json(better / layout.CONFIG)["train"]).effective_selection().metric
    for record in records:
        record["valid"][metric] = 2.0 if record["epoch"] == best_epoch else -1.0
    (better / layout.METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))
    chosen, note = choose_unit(root)
    assert chosen == better and f"best validation {metric} 2.0000 of 2 units" in note
    assert choose_unit(better)[0] == better


def test_library_releases_that_differ_from_extraction_are_warned_about_once_and_patch_releases_not(unit, tmp_path):
    from importlib.metadata import version

    from packaging.version import Version

    installed = Version(version("opensmile"))
    copy = tmp_path / "unit"
    shutil.copytree(unit, copy)
    spec = layout.read_json(copy / layout.FEATURE_SPEC)
    recorded = spec["inputs"]["audio"]["extractor_spec"]["versions"]
    recorded["opensmile"] = f"{installed.major}.{installed.minor}.{installed.micro + 1}"  # a patch release apart
    layout.write_json(copy / layout.FEATURE_SPEC, spec)
    assert Predictor(copy).warnings == []
    recorded["opensmile"] = "0.0.1"
    recorded["numpy"] = "0.1.0"  # two libraries apart: still one warning
    layout.write_json(copy / layout.FEATURE_SPEC, spec)
    (warning,) = Predictor(copy).warnings
    assert f"opensmile 0.0.1 -> {installed} (audio opensmile)" in warning and "numpy 0.1.0 -> absent" in warning
    assert Predictor(unit).warnings == []


def test_runs_on_features_shipped_with_a_dataset_cannot_predict(unit, tmp_path):
    copy = tmp_path / "unit"
    shutil.copytree(unit, copy)
    spec = layout.read_json(copy / layout.FEATURE_SPEC)
    spec["inputs"]["audio"]["extractor_spec"]["extractor"] = "precomputed-covarep"
    layout.write_json(copy / layout.FEATURE_SPEC, spec)
    with pytest.raises(ConfigError, match="shipped with the dataset"):
        Predictor(copy)


def test_runs_on_a_table_of_the_datasets_clips_are_refused_before_anything_loads(unit, tmp_path, monkeypatch):
    """OpenFace action units of RAVDESS's clips (clip-table): a new video has no row there."""
    from emocli.runs.inference import TrainedUnit

    copy = tmp_path / "unit"
    shutil.copytree(unit, copy)
    spec = layout.read_json(copy / layout.FEATURE_SPEC)
    spec["inputs"]["visual"] = {"modality": "visual", "feature_set": "visual__clip-table__0123456789ab",
                                "extractor": "clip-table", "kind": "vector", "dim": 35,
                                "extractor_spec": {"extractor": "clip-table", "params": {"path": "openface_au.parquet"}}}
    layout.write_json(copy / layout.FEATURE_SPEC, spec)
    monkeypatch.setattr(TrainedUnit, "load", lambda *args, **kwargs: pytest.fail("the weights were loaded"))
    with pytest.raises(ConfigError) as error:
        Predictor(copy)
    assert str(error.value) == (
        f"{copy / layout.FEATURE_SPEC}: the run reads features a new file cannot have: visual (clip-table, rows of a "
        "table of the dataset's own clips); train on the others to predict on new media (--modalities audio)")


class Heard:
    """A speech recogniser that "hears" the cues it is given (Whisper is tested in test_transcribe.py)."""

    name = "stand-in"

    def __init__(self, cues=()):
        self.cues = tuple(cues)

    def transcribe(self, path, start_s=None, end_s=None):
        from types import SimpleNamespace

        return SimpleNamespace(language="en", cues=self.cues)


def test_a_run_that_reads_text_takes_it_from_sidecars_the_text_option_or_speech(tmp_path):
    store = make_tone_store(tmp_path / "data", n=24, text=True)
    text_unit = train_tiny(store, tmp_path / "runs", overrides=["batch_size=8", "epochs=2"], model="smile",
                           modalities=["audio", "text"])
    predictor = Predictor(text_unit, transcriber=Heard())  # hears nothing in a tone
    video = write_video(tmp_path / "clip.mp4", seconds=2.0, audio=tone("mid", 2.0))
    (failure,) = predictor.predict([video]).failures
    assert failure.message == ("the run needs text (glove); stand-in heard no speech in it; give --text or put clip.srt "
                               "(or .vtt, .txt) next to clip.mp4")

    given = predictor.predict([video], text="an ordinary voice").table
    assert given["text"].tolist() == ["an ordinary voice"] and given[["start_s", "end_s"]].values.tolist() == [[0, 2]]
    assert given["text_source"].tolist() == ["--text"]
    sidecar = video.with_suffix(".txt")
    sidecar.write_text("an ordinary\nvoice\n")
    table = predictor.predict([video]).table
    assert table["text"].tolist() == ["an ordinary voice"] and table["text_source"].tolist() == [str(sidecar)]
    sidecar.unlink()

    # No transcript at all: the speech is transcribed, its timed segments are the segments predicted.
    spoken = Predictor(text_unit, transcriber=Heard([Cue(0.1, 0.9, "a deep slow voice"), Cue(1.0, 1.9, "a high voice")]))
    table = spoken.predict([video]).table
    assert table[["start_s", "end_s", "text"]].values.tolist() == [[0.1, 0.9, "a deep slow voice"], [1.0, 1.9, "a high voice"]]
    assert table["text_source"].tolist() == ["stand-in (en)"] * 2

    only_text = Predictor(text_unit).predict([], text="a deep slow voice")
    assert "a text input has none" in str(only_text.failures[0])


def test_multi_label_runs_use_sigmoids_and_the_runs_threshold(tmp_path):
    store = make_tone_store(tmp_path / "data", n=24, task="multi_label")
    multi = train_tiny(store, tmp_path / "runs", overrides=[*SMALL_CFNSR, "epochs=2", "threshold=0.45"],
                       modalities=["audio"])
    wav = tmp_path / "x.wav"
    sf.write(wav, tones("low", "high", seconds=4.0), RATE)
    result = Predictor(multi).predict([wav])
    assert result.task == "multi_label" and result.threshold == 0.45
    probs = result.probabilities
    assert not np.allclose(probs.sum(axis=1), 1.0)  # independent sigmoids
    for labels, row in zip(result.table["labels"], probs):
        assert labels == [c for c, p in zip(CLASSES, row) if p > 0.45]


def test_a_conversation_model_reads_the_segments_of_an_input_as_one_dialogue(tmp_path):
    store = make_tone_store(tmp_path / "data", n=36, dialogues=True)
    small = ["model.model_dim=16", "model.spike_steps=2", "model.fusion_layers=1", "model.fusion_heads=2",
             "model.spike_heads=2", "model.mlp_hidden=16", "batch_size=4", "epochs=2"]
    dialogue_unit = train_tiny(store, tmp_path / "runs", model="spikemo", overrides=small, modalities=["audio"])
    wav = tmp_path / "talk.wav"
    sf.write(wav, tones("high", "low", "mid", seconds=2.0), RATE)
    predictor = Predictor(dialogue_unit)
    assert predictor.loaded.unit.conversation
    result = predictor.predict([wav], window_s=2.0)
    assert result.table[["start_s", "end_s"]].values.tolist() == [[0, 2], [2, 4], [4, 6]]

    # By hand: the three windows' features as one dialogue [1, L=3, D] with an utterance mask.
    extractor = build_extractor("egemaps")
    features = np.stack([
        extractor.extract({"sample_id": str(k), "audio_path": str(wav), "start_s": 2.0 * k, "end_s": 2.0 * k + 2})
        .values for k in range(3)
    ])
    features = standardized(dialogue_unit, features)
    model = TrainedUnit.read(dialogue_unit).build_model()
    with torch.no_grad():
        logits = model({"audio": torch.from_numpy(features)[None]}, {"utterance": torch.ones(1, 3, dtype=torch.bool)}).logits
    np.testing.assert_allclose(result.probabilities, torch.softmax(logits[0], -1).numpy(), rtol=0, atol=1e-6)

    # Context matters: the last window alone (as an utterance model would see it) is scored differently.
    with torch.no_grad():
        alone = model({"audio": torch.from_numpy(features[2:])[None]}, {"utterance": torch.ones(1, 1, dtype=torch.bool)}).logits
    assert not np.allclose(torch.softmax(alone[0, 0], -1).numpy(), result.probabilities[2], atol=1e-4)
