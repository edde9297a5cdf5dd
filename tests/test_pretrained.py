"""The model shipped inside the package (emocli/pretrained/emo-default): listed, its card true to its weights,
and `emo predict video.mp4` working with it as a new user types it: no run, no network, a transcript and
per-segment emotions from both heads."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from media import write_video
from typer.testing import CliRunner

from emocli.cli import app
from emocli.runs.hub import pretrained_folder

DEFAULT = pretrained_folder("emo-default")
SHARED_LABELS = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]

needs_bundle = pytest.mark.skipif(
    not (DEFAULT / "bundle.json").is_file(), reason="emocli/pretrained/emo-default is built by `make pretrained`"
)


@needs_bundle
def test_the_shipped_model_is_listed_small_and_its_card_names_its_weights():
    result = CliRunner().invoke(app, ["models", "--pretrained"])
    assert result.exit_code == 0, result.output
    assert "emo-default" in result.output
    weights = sorted(DEFAULT.rglob("model.safetensors"))
    assert {w.relative_to(DEFAULT).parts[0] for w in weights} == {"audio", "text"}
    assert sum(f.stat().st_size for f in DEFAULT.rglob("*") if f.is_file()) < 8 * 2**20
    card = (DEFAULT / "README.md").read_text()
    for path in weights:
        assert hashlib.sha256(path.read_bytes()).hexdigest() in card
    assert "CC BY-NC-SA" in card  # RAVDESS's terms travel with the weights trained on it


@needs_bundle
def test_from_pretrained_loads_the_shipped_model_by_name_as_the_default():
    import emocli

    predictor = emocli.Predictor.from_pretrained()
    assert predictor.model_name == "emo-default" and list(predictor.label_names) == SHARED_LABELS
    assert [head.name for head in predictor.heads] == ["audio", "text"]
    assert emocli.Predictor.from_pretrained("emo-default").folder == predictor.folder


def ravdess_speech(audio: Path, *names: str, pause_s: float = 0.6) -> np.ndarray:
    """RAVDESS clips (16 kHz) from the `audio` folder one after another, with silence between them."""
    import soundfile

    parts = []
    for name in names:
        (path,) = audio.glob(f"Actor_*/{name}.*")
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == 16000
        parts += [samples, np.zeros(int(pause_s * rate), dtype=np.float32)]
    return np.concatenate(parts)


@needs_bundle
def test_emo_predict_a_video_with_no_model_named_hears_and_reads_each_segment(ravdess_root, tmp_path):
    # Actor 1: an angry "Kids are talking by the door", then a sad "Dogs are sitting by the door",
    # muxed with a face photograph: a video as a user would bring, made here from real speech.
    speech = ravdess_speech(ravdess_root / "audio", "03-01-05-02-01-01-01", "03-01-04-02-02-01-01")
    video = write_video(
        tmp_path / "video.mp4", seconds=len(speech) / 16000, fps=5, size=(160, 120), audio=speech, face=True
    )
    table = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, ["predict", str(video), "--output", str(table)])
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(table)
    assert len(predictions) >= 2  # one segment per spoken sentence, from the transcript's timing
    words = " ".join(predictions["text"].str.lower())
    assert "kids" in words and "dogs" in words and "door" in words
    assert set(predictions["text_source"].str.split().str[0]) == {"whisper-base"}
    assert set(predictions["label"]) <= set(SHARED_LABELS)
    assert set(predictions["audio_label"]) <= {
        "neutral",
        "calm",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    }
    assert set(predictions["text_label"]) <= {"neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise"}
    combined = predictions[[f"prob_{name}" for name in SHARED_LABELS]].to_numpy()
    np.testing.assert_allclose(combined.sum(axis=1), 1.0, atol=1e-5)
    assert (predictions["heads"] == 2).all()
    # The console shows each segment's time, transcript and label.
    assert re.search(r"kids", result.output, re.IGNORECASE) and predictions["label"].iloc[0] in result.output


@needs_bundle
def test_emo_demo_predicts_the_example_video_with_the_shipped_model(tmp_path):
    pytest.importorskip("espeakng_loader", reason="the example's speech synthesiser, installed by make install")
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) >= 3  # four sentences; Whisper may join two
    assert "meeting" in " ".join(predictions["text"].str.lower())  # "... The meeting starts at ten."
    assert set(predictions["label"]) <= set(SHARED_LABELS)
    assert (out / "timeline.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def german_speech(tmp_path_factory) -> Path:
    """Two German sentences spoken by eSpeak NG."""
    pytest.importorskip("espeakng_loader", reason="the example's speech synthesiser, installed by make install")
    import soundfile as sf

    from emocli.example import Line, speak

    signal, _ = speak((Line("Ich kann es nicht glauben, wir haben gewonnen! Das ist der schönste Tag meines Lebens.",
                            "happy", 180, 70, 130),), voice="de")
    path = tmp_path_factory.mktemp("german") / "german.wav"
    sf.write(path, signal, 16000)
    return path


@needs_bundle
@pytest.mark.parametrize("other_languages", ["translate", "abstain"])
def test_german_speech_is_translated_or_left_to_the_other_heads(german_speech, other_languages, tmp_path):
    """The text head reads English: German speech is read in Whisper's translation, or not read at all."""
    import json
    import shutil

    bundle = shutil.copytree(DEFAULT, tmp_path / "bundle")
    spec = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**spec, "other_languages": other_languages}))
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["predict", str(german_speech), "--model", str(bundle), "--output", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    text_heads = sum(1 for head in spec["heads"] if head == "text")
    if other_languages == "translate":
        assert (table["text_source"] == "whisper-base (de, translated to en)").all()
        assert "day" in " ".join(table["text"]).lower() and (table["heads"] == len(spec["heads"])).all()
    else:
        assert table["text_source"].str.startswith("whisper-base (de;").all()
        assert table["flags"].str.contains("text:abstained").all() and table["text_label"].isna().all()
        assert (table["heads"] == len(spec["heads"]) - text_heads).all()
        assert "Tag" in " ".join(table["text"])  # the table shows what was said
