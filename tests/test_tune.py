"""`emo tune` (emocli/training/tune.py): trials from a grid, ranked on validation only, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_training_data import make_store
from typer.testing import CliRunner

from emocli.cli import app
from emocli.core.errors import ConfigError
from emocli.runs import layout
from emocli.training.tune import Axis, trial_overrides

SMALL_CFNSR = ["--set", "model.video_dim=16", "--set", "model.transformer_layers=1", "--set",
               "model.transformer_heads=2", "--set", "batch_size=16", "--set", "epochs=2"]


def test_grid_is_the_cartesian_product_in_order():
    axes = [Axis.parse("optimizer.lr=1e-3, 5e-4"), Axis.parse("model.d_model=30,60,90")]
    grid = trial_overrides(axes)
    assert len(grid) == 6
    assert grid[0] == ["optimizer.lr=1e-3", "model.d_model=30"]
    assert grid[-1] == ["optimizer.lr=5e-4", "model.d_model=90"]


def test_sampled_trials_are_reproducible_and_distinct():
    axes = [Axis.parse("a=1,2,3,4"), Axis.parse("b=x,y,z")]
    first = trial_overrides(axes, trials=5, sample_seed=3)
    assert first == trial_overrides(axes, trials=5, sample_seed=3)
    assert len({tuple(t) for t in first}) == 5 and all(t in trial_overrides(axes) for t in first)
    assert trial_overrides(axes, trials=50) == trial_overrides(axes)  # more than the grid: all of it


def test_list_and_table_values_stay_whole():
    axis = Axis.parse("optimizer.betas=[0.9, 0.99],[0.8, 0.9]")
    assert axis.values == ("[0.9, 0.99]", "[0.8, 0.9]")
    assert Axis.parse("model.loss_weights={ce=1.0,dsc=0.5},{ce=0.5,dsc=1.0}").values[1] == "{ce=0.5,dsc=1.0}"


@pytest.mark.parametrize("text, problem", [
    ("optimizer.lr", "key=value1,value2"),
    ("=1,2", "key=value1,value2"),
    ("optimizer.lr=1e-3,,5e-4", "key=value1,value2"),
    ("optimizer.lr=1e-3,1e-3", "repeated"),
])
def test_bad_grids_name_the_problem(text, problem):
    with pytest.raises(ConfigError, match=problem):
        Axis.parse(text)


def test_a_key_given_twice_and_a_trial_count_below_one_are_errors():
    with pytest.raises(ConfigError, match="twice: epochs"):
        trial_overrides([Axis.parse("epochs=1,2"), Axis.parse("epochs=3")])
    with pytest.raises(ConfigError, match="at least 1"):
        trial_overrides([Axis.parse("epochs=1,2")], trials=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"), n=72)


def invoke(*args):
    return CliRunner().invoke(app, ["tune", *map(str, args)])


def weights(out):
    return {p: p.stat().st_mtime_ns for p in out.glob("*/seed=*/fold=*/model.safetensors")}


def test_trials_are_ranked_on_validation_and_only_the_chosen_test_is_reported(store, tmp_path):
    out = tmp_path / "runs"
    args = ["cfnsr", "-f", store.path, *SMALL_CFNSR, "--grid", "optimizer.lr=3e-3,1e-6", "--seeds", "1,2",
            "--folds", "0", "--out", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    (report,) = out.glob("tune-cfnsr-*/tune.json")
    data = json.loads(report.read_text())
    table = pd.read_csv(report.parent / "tune.csv")
    assert data["selection"]["split"] == "valid" and data["selection"]["mode"] == "max"
    assert len(data["trials"]) == 2 == len(table) and table["rank"].tolist() == [1, 2]

    # Each trial is an ordinary run; its score is the mean of its units' validation scores.
    for row in data["trials"]:
        run = layout.read_json(Path(row["run"]) / layout.RESULTS_JSON)
        scores = [unit["selection_score"] for unit in run["units"]]
        assert row["selection_mean"] == pytest.approx(sum(scores) / 2) and row["units"] == 2
        config = layout.read_json(layout.unit_dir(Path(row["run"]), 1, 0) / layout.CONFIG)
        assert f"optimizer.lr={config['train']['optimizer']['lr']:g}" in {"optimizer.lr=0.003", "optimizer.lr=1e-06"}
    means = [row["selection_mean"] for row in data["trials"]]
    assert means == sorted(means, reverse=True)
    chosen = layout.read_json(Path(data["chosen"]["run"]) / layout.RESULTS_JSON)
    assert data["chosen"]["test"] == chosen["summary"]
    assert "test (chosen trial only)" in result.output and "test" not in table.columns

    # The same command trains nothing again and writes the same ranking.
    before = weights(out)
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert weights(out) == before
    assert json.loads(report.read_text())["trials"] == data["trials"]


def test_a_bad_trial_or_a_test_peeking_protocol_fails_before_anything_trains(store, tmp_path):
    out = tmp_path / "runs"
    bad = invoke("cfnsr", "-f", store.path, *SMALL_CFNSR, "--grid", "optimizer.lr=3e-3,fast", "--folds", "0",
                 "--out", out)
    assert bad.exit_code != 0 and "optimizer.lr" in str(bad.exception)
    peeking = invoke("cfnsr", "-f", store.path, *SMALL_CFNSR, "--set", "protocol=paper", "--grid",
                     "optimizer.lr=3e-3,1e-3", "--folds", "0", "--out", out)
    assert peeking.exit_code != 0 and "validation" in str(peeking.exception)
    assert not out.exists()


def test_a_loss_selected_multi_label_model_ranks_lowest_first(tmp_path):
    store = make_store(tmp_path / "store", n=48, task="multi_label")
    out = tmp_path / "runs"
    result = invoke("smile", "-f", store.path, "--set", "batch_size=16", "--set", "epochs=2",
                    "--grid", "optimizer.lr=1e-3,1e-5", "--folds", "0", "--out", out)
    assert result.exit_code == 0, result.output
    (report,) = out.glob("tune-smile-*/tune.json")
    data = json.loads(report.read_text())
    assert data["selection"]["metric"] == "loss" and data["selection"]["mode"] == "min"  # SMILE's paper rule
    means = [row["selection_mean"] for row in data["trials"]]
    assert means == sorted(means)
    assert "jaccard_accuracy" in result.output and "jaccard_accuracy" in data["chosen"]["test"]["mean"]


def test_trials_without_validation_rows_cannot_be_ranked(store, tmp_path):
    result = invoke("cfnsr", "-f", store.path, *SMALL_CFNSR, "--set", "split.valid_fraction=0",
                    "--grid", "optimizer.lr=3e-3,1e-3", "--folds", "0", "--out", tmp_path / "runs")
    assert result.exit_code != 0 and "needs a validation split" in str(result.exception)
    assert not list((tmp_path / "runs").glob("tune-*"))  # no report ranks trials it could not score
