"""Raw clips end to end: generated mp4s -> a store of clips (kind "clip") -> the collator's [B, 3, T, S, S]
batches -> CFN-SR's 3D ResNeXt (in miniature) -> emo evaluate and emo predict on a new mp4, through the CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from media import write_video
from typer.testing import CliRunner

from emocli.cli import app
from emocli.data.tables import load_data
from emocli.features.store import FeatureStore
from emocli.runs import layout
from emocli.runs.inference import TrainedUnit

TINY_CFNSR = [
    "model.video_layers=[1, 1, 1, 1]", "model.video_width=32", "model.video_cardinality=4", "model.video_dim=512",
    "model.transformer_layers=1", "model.transformer_heads=2", "epochs=2", "batch_size=4",
]
CLIPS = ["--visual", "clips", "--set", "clips.n_frames=4", "--set", "clips.size=32", "--set", "clips.faces=false"]
runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    rows = []
    for k in range(16):
        label = ("calm", "angry")[k % 2]
        video = write_video(root / f"clip{k}.mp4", seconds=1.0, fps=8, size=(48, 48), audio="tone")
        rows.append({"video": video.name, "label": label, "speaker": f"s{k % 4}", "fold": k % 2})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    store = root / "store"
    invoke("extract", "--dataset", "manifest", "--root", str(manifest), *CLIPS, "--audio", "mfcc", "--out", str(store),
           "--workers", "0", "--quiet")
    args = ["train", "cfnsr", "--features", str(store), "--out", str(root / "runs"), "--name", "clips", "--folds", "0"]
    for setting in TINY_CFNSR:
        args += ["--set", setting]
    invoke(*args)
    return root, FeatureStore(store), layout.unit_dir(root / "runs" / "cfnsr-manifest-clips", 1, 0)


def test_a_clip_store_trains_cfnsr_on_its_3d_resnext(trained):
    _, store, unit = trained
    (info,) = store.find(modality="visual")
    assert info.kind == "clip" and info.dim == 32 * 32 * 3
    spec = layout.read_json(unit / layout.FEATURE_SPEC)["inputs"]["visual"]
    assert spec["kind"] == "clip"
    model = layout.read_json(unit / layout.CONFIG)["model"]
    assert model["modalities"]["visual"] == {"dim": 3, "kind": "clip"}  # the network sees 3 colour channels
    assert (unit / layout.TEST_METRICS).is_file()
    assert "visual" not in (TrainedUnit.read(unit).standardizer().stats)  # pixels are the collator's business


def test_evaluate_reproduces_the_stored_test_metrics(trained):
    _, _, unit = trained
    result = invoke("evaluate", str(unit))
    assert "reproduces test_metrics.json" in result.output


def test_predict_on_mp4s_gives_the_evaluation_probabilities_and_reads_a_new_one(trained, tmp_path):
    root, store, unit = trained
    loaded = TrainedUnit.read(unit).load("cpu")
    data = loaded.standardize(load_data(store, loaded.unit.inputs, loaded.unit.label_map))
    test_ids = layout.read_json(unit / layout.SPLITS)["test"][:2]
    rows = np.array([int(np.flatnonzero(data.samples["sample_id"] == sid)[0]) for sid in test_ids])
    expected = loaded.score(data, rows).probs
    videos = [str(root / f"{sid}.mp4") for sid in data.samples["sample_id"].iloc[rows]]
    new = write_video(tmp_path / "new.mp4", seconds=1.0, fps=8, size=(64, 48), audio="tone")
    out = tmp_path / "predictions.csv"
    invoke("predict", str(unit), *videos, str(new), "--output", str(out), "--quiet")
    with open(out) as handle:
        table = list(csv.DictReader(handle))
    assert [row["input"] for row in table] == [*videos, str(new)]
    names = TrainedUnit.read(unit).label_map.names
    probs = np.array([[float(row[f"prob_{name}"]) for name in names] for row in table])
    np.testing.assert_allclose(probs[:2], expected, atol=1e-5)  # the clips the store holds, rebuilt from the mp4s
    assert table[2]["label"] in names and probs[2].sum() == pytest.approx(1.0, abs=1e-5)
