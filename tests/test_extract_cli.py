"""`emo extract` and `emo store`: choices, overrides, summaries, failures, shards; real RAVDESS and MELD."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from test_store import NpyMean, TextStats, make_sample_set
from typer.testing import CliRunner

from emocli.cli import app
from emocli.commands import store_cmd
from emocli.core.errors import ConfigError
from emocli.datasets.base import DatasetAdapter
from emocli.features.store import FeatureStore

runner = CliRunner()


class FakeAdapter(DatasetAdapter):
    name = "fake"
    summary = "12 generated .npy clips"
    needs_on_disk = "nothing"

    def load(self, root: Path):
        return make_sample_set(root)


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """The fake dataset and extractors, registered as the CLI finds real ones; returns the media root."""
    from emocli import datasets, features

    monkeypatch.setitem(datasets.ADAPTERS, "fake", "test_extract_cli:FakeAdapter")
    monkeypatch.setitem(features.EXTRACTORS, "npy-mean", "test_store:NpyMean")
    monkeypatch.setitem(features.EXTRACTORS, "text-stats", "test_store:TextStats")
    root = tmp_path / "media"
    make_sample_set(root)
    return root


def emo(*args: str):
    return runner.invoke(app, ["extract", *args])


def test_extract_then_rerun_is_a_no_op(fakes, tmp_path):
    store = tmp_path / "store"
    base = ["--dataset", "fake", "--root", str(fakes), "--out", str(store), "--workers", "0", "--quiet"]
    first = emo(*base, "--audio", "npy-mean", "--text", "text-stats")
    assert first.exit_code == 0, first.output
    assert f"{NpyMean().feature_set_name}: 12 extracted, 0 cached, 0 failed" in first.output
    assert "fake: 12 samples" in first.output

    second = emo(*base, "--audio", "npy-mean", "--text", "text-stats")
    assert second.exit_code == 0
    assert f"{NpyMean().feature_set_name}: 0 extracted, 12 cached" in second.output
    assert f"{TextStats().feature_set_name}: 0 extracted, 12 cached" in second.output

    scaled = emo(*base, "--audio", "npy-mean", "--set", "npy-mean.scale=2")
    assert scaled.exit_code == 0
    assert f"{NpyMean(scale=2.0).feature_set_name}: 12 extracted" in scaled.output
    assert len(FeatureStore(store).feature_sets()) == 3


def test_choices_are_checked_before_any_work(fakes, tmp_path):
    base = ["--dataset", "fake", "--root", str(fakes), "--out", str(tmp_path / "s"), "--workers", "0"]
    wrong_flag = emo(*base, "--visual", "npy-mean")
    assert isinstance(wrong_flag.exception, ConfigError) and "pass it with --audio" in str(wrong_flag.exception)
    stray = emo(*base, "--audio", "npy-mean", "--set", "mfcc.n_mfcc=20")
    assert isinstance(stray.exception, ConfigError) and "'mfcc' is not an extractor of this command" in str(stray.exception)
    bad_param = emo(*base, "--audio", "npy-mean", "--set", "npy-mean.scale=big")
    assert isinstance(bad_param.exception, ConfigError) and "scale" in str(bad_param.exception)
    assert emo(*base).exit_code != 0  # nothing to extract: no extractor given and the adapter has no defaults
    assert emo("--root", str(fakes), "--audio", "npy-mean").exit_code != 0  # no --dataset
    assert not (tmp_path / "s" / NpyMean().feature_set_name).exists()


def test_out_defaults_to_stores_in_the_working_folder(fakes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = emo("--dataset", "fake", "--root", str(fakes), "--audio", "npy-mean", "--workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    assert FeatureStore(tmp_path / "stores" / "fake").read(NpyMean().feature_set_name).num_rows == 12


def test_failures_are_summarised_and_listed(fakes, tmp_path):
    (fakes / "clip003.npy").write_bytes(b"\x93NUMPY garbage")
    store = tmp_path / "store"
    result = emo("--dataset", "fake", "--root", str(fakes), "--out", str(store), "--audio", "npy-mean", "--workers", "0")
    assert result.exit_code == 0
    assert "11 extracted, 0 cached, 1 failed" in result.output
    assert "1 failures" in result.output and "clip003.npy" in result.output

    listed = runner.invoke(store_cmd.app, ["failures", str(store), NpyMean().feature_set_name])
    assert listed.exit_code == 0 and "s003" in listed.output and "1 failures" in listed.output
    info = runner.invoke(store_cmd.app, ["info", str(store)])
    assert NpyMean().feature_set_name in info.output and "fake: 12 samples" in info.output
    spec = runner.invoke(store_cmd.app, ["info", str(store), NpyMean().feature_set_name])
    assert json.loads(spec.output)["extractor"]["params"] == {"scale": 1.0, "delay_s": 0.0}

    again = emo("--dataset", "fake", "--root", str(fakes), "--out", str(store), "--audio", "npy-mean", "--workers", "0")
    assert "0 extracted, 11 cached, 0 failed, 1 failed before" in again.output


def test_shards_and_limit_through_the_cli(fakes, tmp_path):
    base = ["--dataset", "fake", "--root", str(fakes), "--audio", "npy-mean", "--workers", "0", "--quiet"]
    for k in (1, 2):
        assert emo(*base, "--shard", f"{k}/2", "--out", str(tmp_path / f"shard{k}")).exit_code == 0
    merged = runner.invoke(store_cmd.app, ["merge", str(tmp_path / "merged"), str(tmp_path / "shard1"), str(tmp_path / "shard2")])
    assert merged.exit_code == 0 and "12 rows, 0 failures" in merged.output
    assert emo(*base, "--out", str(tmp_path / "whole")).exit_code == 0
    name = NpyMean().feature_set_name
    whole, combined = FeatureStore(tmp_path / "whole"), FeatureStore(tmp_path / "merged")
    assert combined.read(name).select(["sample_id", "values"]).equals(whole.read(name).select(["sample_id", "values"]))

    limited = emo(*base, "--limit", "5", "--out", str(tmp_path / "trial"))
    assert "5 extracted" in limited.output
    trial = FeatureStore(tmp_path / "trial")
    assert len(trial.samples()) == 12 and trial.read(name).num_rows == 5
    assert emo(*base, "--shard", "3/2", "--out", str(tmp_path / "x")).exception is not None


def test_show_prints_an_editable_preset_and_lists_them():
    shown = emo("--preset", "compare2016", "--show")
    assert shown.exit_code == 0
    assert tomllib.loads(shown.output)["params"]["feature_set"] == "ComParE_2016"
    listing = runner.invoke(app, ["extract", "--show"], env={"COLUMNS": "250"})
    assert listing.exit_code == 0 and "openface-au" in listing.output and "mfcc-cfnsr" in listing.output
    assert "a [tokens, 50] sequence per utterance" in listing.output  # shown, not taken for rich markup


def test_ravdess_audio_and_action_units(ravdess_root, tmp_path):
    store = tmp_path / "ravdess"
    args = ["--dataset", "ravdess", "--root", str(ravdess_root), "--audio", "mfcc-cfnsr", "--visual", "openface-au",
            "--limit", "6", "--out", str(store), "--quiet"]
    result = emo(*args)
    assert result.exit_code == 0, result.output
    samples = FeatureStore(store).samples()
    assert len(samples) == 1440 and samples["label"].notna().all()
    assert sorted(samples["fold"].dropna().unique()) == [0, 1, 2, 3, 4]
    sets = {info.extractor: info for info in FeatureStore(store).feature_sets()}
    assert (sets["mfcc"].n_rows, sets["clip-table"].n_rows, sets["clip-table"].dim) == (6, 6, 35)
    values = FeatureStore(store).read_features(sets["mfcc"].name)
    assert {v.values.shape for v in values.values()} == {(212, 13)}
    assert "0 extracted, 6 cached" in emo(*args).output


def test_meld_text_with_glove(meld_root, tmp_path):
    store = tmp_path / "meld"
    result = emo("--dataset", "meld", "--root", str(meld_root), "--text", "glove", "--limit", "20",
                 "--out", str(store), "--quiet")
    assert result.exit_code == 0, result.output
    samples = FeatureStore(store).samples()
    assert samples["split"].value_counts().to_dict() == {"train": 9989, "test": 2610, "valid": 1109}
    (info,) = FeatureStore(store).find(modality="text")
    assert (info.n_rows, info.dim) == (20, 50)
    assert np.isfinite(FeatureStore(store).read_features(info.name)[samples["sample_id"][0]].values).all()


def test_quiet_silences_the_weights_loading_bar(tmp_path):
    """Hugging Face's "Loading weights" bar prints even when stderr is no terminal; `-q` silences it too,
    and leaves it as it was for what runs next."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("text,label\nI am so happy today,joy\nThis is terrible,anger\n")
    args = ["--dataset", "manifest", "--root", str(manifest), "--text", "minilm", "--workers", "0"]
    loud = emo(*args, "--out", str(tmp_path / "loud"))
    assert loud.exit_code == 0, loud.output
    assert "Loading weights" in loud.stderr  # the bar this test is about is there without -q
    quiet = emo(*args, "--out", str(tmp_path / "quiet"), "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert "Loading weights" not in quiet.stderr and "2 extracted" in quiet.stdout
    again = emo(*args, "--out", str(tmp_path / "again"))
    assert "Loading weights" in again.stderr


def test_feature_sets_are_shown_by_their_presets(tmp_path):
    """The summary and `emo store info` name a feature set by its preset, beside the hashed directory name
    that `emo store failures` and `--feature` take."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("text,label\nI am so happy today,joy\nThis is terrible,anger\n")
    store = tmp_path / "store"
    result = emo("--dataset", "manifest", "--root", str(manifest), "--text", "glove", "--out", str(store), "--quiet",
                 "--workers", "0")
    assert result.exit_code == 0, result.output
    (info,) = FeatureStore(store).feature_sets()
    assert f"glove ({info.name}): 2 extracted, 0 cached, 0 failed" in result.stdout
    listed = runner.invoke(app, ["store", "info", str(store)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and f"glove ({info.name})" in listed.stdout
