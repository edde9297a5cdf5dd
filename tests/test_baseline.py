"""The logistic-regression floor uses the trainer's inputs, splits and folds."""

import pytest
from test_training_data import make_store
from typer.testing import CliRunner

from emocli.cli import app
from emocli.training.baseline import C_GRID, all_folds, logistic_regression_floor


def test_floor_per_fold_on_separable_features(tmp_path):
    store = make_store(tmp_path / "store", n=96, kinds=("vector", "sequence"))
    result = logistic_regression_floor(store, folds=all_folds(store))
    assert [u["fold"] for u in result["units"]] == [0, 1, 2]
    assert all(u["C"] in C_GRID for u in result["units"])
    assert all(0.8 < u["valid"]["accuracy"] <= 1.0 for u in result["units"])  # the chosen C's, on validation
    assert result["dim"] == 6 + 4  # the audio vector and the mean-pooled visual sequence
    # class means are 2 sd apart: a linear model must beat chance (1/3) by far
    assert result["summary"]["mean"]["accuracy"] > 0.8
    assert result["summary"]["n"] == 3


def test_floor_refuses_multi_label_and_cli_writes_json(tmp_path):
    with pytest.raises(NotImplementedError):
        logistic_regression_floor(make_store(tmp_path / "ml", n=24, task="multi_label"))
    store = make_store(tmp_path / "store", n=48, kinds=("vector", "vector"))
    out = tmp_path / "floor.json"
    result = CliRunner().invoke(app, ["baseline", "--features", str(store.path), "--folds", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "fold 0" in result.output and out.is_file()


def test_baseline_finds_the_one_store_under_stores_as_train_does(tmp_path, monkeypatch):
    make_store(tmp_path / "stores" / "toy", n=48, kinds=("vector", "vector"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["baseline", "--modalities", "audio", "--folds", "0"])
    assert result.exit_code == 0, result.output
    assert "features: stores/toy (the one store under stores/ that logreg can read)" in result.output
    assert "fold 0" in result.output
