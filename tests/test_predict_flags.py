"""Predictions that rest on nothing say so: a run that sees faces (frames cropped to the face, then a
small CNN) and hears audio (eGeMAPS), trained on generated videos of a face with a tone, predicts a video
without a face and with a silent track; the prediction is made, and flagged "audio:silent" and
"visual:no_face" in the table and the outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from media import needs_haar, write_video
from test_predict import CLASSES, RATE, tone

from emocli.core.samples import SampleSet
from emocli.core.types import LabelMap
from emocli.features.presets import build_extractor
from emocli.features.store import FeatureStore
from emocli.prediction.outputs import write_predictions
from emocli.prediction.predictor import Predictor
from emocli.runs import layout
from emocli.training.config import resolve_config
from emocli.training.trainer import train_run

SIZE = (160, 120)  # where OpenCV's Haar cascade finds the test face (tests/media.py)
FRAMES = {"backbone": "resnet18", "weights": "none", "input_size": 32, "n_frames": 2, "detector": "haar"}


@pytest.fixture(scope="module")
def unit(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    rows = []
    for i in range(12):
        label = CLASSES[i % 3]
        video = write_video(root / f"v{i:02d}.mp4", seconds=1.0, fps=4, size=SIZE, audio=tone(label, 1.0, seed=i),
                            face=True)
        rows.append({"sample_id": f"v{i:02d}", "video_path": str(video), "label": label, "labels": [],
                     "speaker": f"s{i % 4}", "fold": i % 2})
    sample_set = SampleSet("faces", root, pd.DataFrame(rows), LabelMap(CLASSES))
    store = FeatureStore(root / "store")
    store.extract(sample_set, [build_extractor("egemaps"), build_extractor("frames", **FRAMES)], workers=0,
                  progress=False)
    config = resolve_config("cfnsr", overrides=["model.video_dim=16", "model.transformer_layers=1",
                                                "model.transformer_heads=2", "batch_size=4", "epochs=1"],
                            seeds=[1], folds=[0])
    return layout.unit_dir(train_run("cfnsr", store.path, config, out=root / "runs").root, 1, 0)


@needs_haar
def test_no_face_and_no_sound_are_flagged_not_hidden(unit, tmp_path):
    empty = write_video(tmp_path / "empty.mp4", seconds=1.0, fps=4, size=SIZE, audio=np.zeros(RATE, np.float32))
    face = write_video(tmp_path / "face.mp4", seconds=1.0, fps=4, size=SIZE, audio=tone("mid", 1.0), face=True)
    predictor = Predictor(unit)
    assert set(predictor.inputs) == {"audio", "visual"}
    result = predictor.predict([empty, face])
    assert not result.failures
    assert result.table["flags"].tolist() == [["audio:silent", "visual:no_face"], []]
    assert result.flagged == 1
    assert np.allclose(result.probabilities.sum(axis=1), 1.0)  # predicted all the same
    write_predictions(result, tmp_path / "out.parquet")
    stored = pd.read_parquet(tmp_path / "out.parquet")["flags"]
    assert [list(flags) for flags in stored] == [["audio:silent", "visual:no_face"], []]


def test_the_timeline_hatches_flagged_segments_and_spans_the_whole_medium(tmp_path):
    """A transcript that stops at 6 s of a 10 s medium, its second segment flagged: the axis runs to 10 s,
    and that segment is hatched grey (band and heat map), its band naming the flag rather than a label."""
    from matplotlib.colors import to_rgba

    from emocli.prediction.outputs import FLAG_HATCH, plot_timeline, timeline_figure
    from emocli.prediction.predictor import PredictionResult

    table = pd.DataFrame({
        "input": ["talk.mp4"] * 2, "segment": [0, 1], "start_s": [0.5, 3.0], "end_s": [3.0, 6.0],
        "text": ["hello", None], "label": ["a", "b"], "flags": [[], ["audio:no_speech"]],
        "prob_a": [0.9, 0.2], "prob_b": [0.1, 0.8],
    })
    result = PredictionResult(table, [], ("a", "b"), "single_label", None, tmp_path, "toy", durations={"talk.mp4": 10.0})
    band, heat = timeline_figure(result).axes[:2]
    assert heat.get_xlim() == (0.0, 10.0)
    hatched = [patch for axes in (band, heat) for patch in axes.patches if patch.get_hatch() == FLAG_HATCH]
    assert len(hatched) == 2 and all(patch.get_x() == 3.0 and patch.get_width() == 3.0 for patch in hatched)
    assert to_rgba(hatched[0].get_facecolor())[:3] == to_rgba("lightgrey")[:3]
    shown = [text.get_text() for text in band.texts]
    assert shown == ["a", "no_speech"]
    assert plot_timeline(result, tmp_path / "timeline.png").stat().st_size > 5_000
