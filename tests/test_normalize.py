"""Per-feature standardisation (emocli/training/normalize.py): fitted on training rows only, stored with
the unit, applied by evaluate and predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_trainer import config
from test_training_data import make_store

from emocli.core.errors import EmoError
from emocli.core.types import LabelMap
from emocli.data.inputs import InputSpec
from emocli.data.normalize import Standardizer
from emocli.data.tables import EmotionData
from emocli.runs import layout
from emocli.runs.evaluation import evaluate_unit
from emocli.training.trainer import train_run


def toy_data(vectors: np.ndarray, sequences: list[np.ndarray]) -> EmotionData:
    n = len(vectors)
    spec = {"extractor_spec": {}, "feature_set": "x", "extractor": "x"}
    return EmotionData(
        samples=pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)]}),
        features={"audio": list(vectors), "visual": sequences},
        targets=np.zeros(n, dtype=np.int64),
        label_map=LabelMap(("a", "b"), "single_label"),
        inputs={
            "audio": InputSpec(modality="audio", kind="vector", dim=vectors.shape[1], **spec),
            "visual": InputSpec(modality="visual", kind="sequence", dim=sequences[0].shape[1], **spec),
        },
    )


@pytest.fixture
def data() -> EmotionData:
    rng = np.random.default_rng(0)
    vectors = np.column_stack([rng.normal(1000, 50, 40), rng.normal(-3, 0.01, 40), np.full(40, 7.0)]).astype(np.float32)
    sequences = [rng.normal(5, 2, (3 + i % 4, 2)).astype(np.float32) for i in range(40)]
    return toy_data(vectors, sequences)


def test_training_rows_get_zero_mean_and_unit_variance_other_rows_the_training_statistics(data):
    train, test = np.arange(30), np.arange(30, 40)
    scaled = Standardizer.fit(data, train).apply(data)
    vectors = np.stack(scaled.features["audio"])
    np.testing.assert_allclose(vectors[train, :2].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(vectors[train, :2].std(0), 1, atol=1e-4)
    # Test rows: the training rows' mean and (population) std, by hand; nothing refitted on them.
    raw = np.stack(data.features["audio"])[:, :2].astype(np.float64)
    mean, std = raw[train].mean(0), raw[train].std(0)
    np.testing.assert_allclose(vectors[test, :2], (raw[test] - mean) / std, rtol=1e-4, atol=1e-4)
    assert not np.allclose(vectors[test, :2].mean(0), 0, atol=1e-3)
    # A dimension constant on the training rows is centred, not divided by zero.
    assert np.all(vectors[:, 2] == 0.0)
    assert vectors.dtype == np.float32


def test_sequences_are_standardised_over_every_training_frame(data):
    train = np.arange(25)
    scaled = Standardizer.fit(data, train).apply(data)
    frames = np.concatenate([scaled.features["visual"][r] for r in train])
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(frames.std(0), 1, atol=1e-5)
    assert [len(a) for a in scaled.features["visual"]] == [len(a) for a in data.features["visual"]]
    assert scaled.samples is data.samples and data.features["visual"][0].mean() > 2  # the input is untouched


def test_saved_statistics_load_back_identically(data, tmp_path):
    fitted = Standardizer.fit(data, np.arange(20))
    fitted.save(tmp_path / layout.NORMALIZATION)
    loaded = Standardizer.load(tmp_path / layout.NORMALIZATION)
    assert loaded.stats.keys() == fitted.stats.keys()
    for modality, (mean, scale) in fitted.stats.items():
        assert np.array_equal(loaded.stats[modality][0], mean) and np.array_equal(loaded.stats[modality][1], scale)


def test_missing_or_damaged_statistics_are_errors_naming_the_file(data, tmp_path):
    path = tmp_path / layout.NORMALIZATION
    with pytest.raises(EmoError, match="missing feature standardisation") as error:
        Standardizer.load(path)
    assert str(path) in str(error.value)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(EmoError, match="cannot read the feature standardisation") as error:
        Standardizer.load(path)
    assert str(path) in str(error.value)
    with pytest.raises(EmoError, match="no statistics for \\['visual'\\]"):
        Standardizer({"audio": Standardizer.fit(data, np.arange(5)).stats["audio"]}).apply(data)


def test_a_run_stores_its_statistics_and_evaluate_applies_them(tmp_path):
    store = make_store(tmp_path / "store", n=48, kinds=("vector", "vector"))
    summary = train_run("cfnsr", store.path, config(seeds=[1], folds=[0]), out=tmp_path / "runs", name="std")
    unit = layout.unit_dir(summary.root, 1, 0)
    stats = Standardizer.load(unit / layout.NORMALIZATION).stats
    assert set(stats) == {"audio", "visual"} and stats["audio"][0].shape == (6,)
    stored = layout.read_json(unit / layout.TEST_METRICS)
    assert json.loads(json.dumps(evaluate_unit(unit, "test")))["metrics"] == stored["metrics"]
    # Evaluating with other statistics scores other probabilities: the file is really what evaluate reads.
    mean, scale = stats["audio"]
    Standardizer({**stats, "audio": (mean + 3 * scale, scale)}).save(unit / layout.NORMALIZATION)
    assert evaluate_unit(unit, "test")["losses"]["loss"] != pytest.approx(stored["losses"]["loss"])
    (unit / layout.NORMALIZATION).unlink()
    with pytest.raises(EmoError, match="missing feature standardisation"):
        evaluate_unit(unit, "test")


def test_normalize_none_feeds_the_stores_values_and_writes_no_statistics(tmp_path):
    store = make_store(tmp_path / "store", n=48, kinds=("vector", "vector"))
    summary = train_run("cfnsr", store.path, config(extra=["normalize=none"], seeds=[1], folds=[0]),
                        out=tmp_path / "runs", name="raw")
    unit = layout.unit_dir(summary.root, 1, 0)
    assert not (unit / layout.NORMALIZATION).exists()
    assert evaluate_unit(unit, "test")["metrics"] == layout.read_json(unit / layout.TEST_METRICS)["metrics"]


def test_a_run_made_before_standardisation_is_evaluated_on_raw_features(tmp_path):
    store = make_store(tmp_path / "store", n=48, kinds=("vector", "vector"))
    summary = train_run("cfnsr", store.path, config(extra=["normalize=none"], seeds=[1], folds=[0]),
                        out=tmp_path / "runs", name="old")
    unit = layout.unit_dir(summary.root, 1, 0)
    stored = layout.read_json(unit / layout.CONFIG)
    del stored["train"]["normalize"]  # what an emo without standardisation wrote
    layout.write_json(unit / layout.CONFIG, stored)
    assert evaluate_unit(unit, "test")["metrics"] == layout.read_json(unit / layout.TEST_METRICS)["metrics"]
