"""`emo export --format onnx`: the graph onnxruntime runs gives emo's own probabilities; spiking models are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_training_data import make_store
from typer.testing import CliRunner

from emocli.cli import app
from emocli.core.errors import ConfigError
from emocli.data.tables import load_data
from emocli.runs import layout
from emocli.runs.export import export_onnx
from emocli.runs.inference import TrainedUnit
from emocli.training.config import resolve_config
from emocli.training.trainer import train_run

TINY_CFNSR = ["model.video_dim=16", "model.transformer_layers=1", "model.transformer_heads=2", "epochs=1", "batch_size=16"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"), n=48)


def test_onnx_graph_gives_emos_probabilities_on_the_stores_features(store, tmp_path):
    import onnxruntime

    run = train_run("cfnsr", store.path, resolve_config("cfnsr", overrides=TINY_CFNSR, folds=[0]), out=tmp_path)
    unit = layout.unit_dir(run.root, 1, 0)
    result = CliRunner().invoke(app, ["export", str(unit), "--output", str(tmp_path / "cfnsr.onnx"), "--frames", "24"])
    assert result.exit_code == 0, result.output
    description = json.loads((tmp_path / "cfnsr.json").read_text())
    assert description["classes"] == list(TrainedUnit.read(unit).label_map.names)
    assert description["checked"]["max_abs_difference"] <= 1e-4

    # The store's raw features, padded as the collator pads them, against emo's evaluation path.
    loaded = TrainedUnit.read(unit).load("cpu")
    raw = load_data(store, loaded.unit.inputs, loaded.unit.label_map)
    rows = np.arange(10)
    expected = loaded.score(loaded.standardize(raw), rows).probs
    feeds = {}
    for m in raw.inputs:
        arrays = [raw.features[m][r] for r in rows]
        feeds[m] = np.stack([np.pad(a, ((0, 24 - len(a)), (0, 0))) for a in arrays]).astype(np.float32)
        feeds[f"{m}_mask"] = np.stack([np.arange(24) < len(a) for a in arrays])
    session = onnxruntime.InferenceSession(str(tmp_path / "cfnsr.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_spiking_models_are_refused_with_the_reason(store, tmp_path):
    run = train_run("smile", store.path, resolve_config("smile", overrides=["epochs=1", "batch_size=16"], folds=[0]),
                    out=tmp_path)
    with pytest.raises(ConfigError, match="spiking model.*no operators"):
        export_onnx(layout.unit_dir(run.root, 1, 0), tmp_path / "smile.onnx")
    assert not (tmp_path / "smile.onnx").exists()
