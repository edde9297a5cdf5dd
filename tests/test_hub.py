"""Models by name: shipped, on disk, or a hub repository read from huggingface_hub's cache (offline here,
as with HF_HUB_OFFLINE=1 anywhere); `emo push` uploads a run folder with its card and without its
resumable state. No test reaches the network."""

from __future__ import annotations

import shutil

import pytest
from test_training_data import make_store

from emocli.core.errors import ConfigError, EmoError
from emocli.runs import hub, layout
from emocli.runs.inference import TrainedUnit
from emocli.training.config import resolve_config
from emocli.training.trainer import train_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def unit(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    store = make_store(root / "store", n=48, kinds=("vector", "vector"))
    run = train_run("cfnsr", store.path, resolve_config("cfnsr", overrides=[
        "epochs=1", "model.video_dim=16", "model.transformer_layers=1", "model.transformer_heads=2"], folds=[0]),
        out=root / "runs")
    return layout.unit_dir(run.root, 1, 0)


def cached_repository(cache, repo_id, unit, commit=COMMIT):
    """A repository as huggingface_hub's cache holds it: snapshots/<commit>/ and refs/main."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(unit, folder / "snapshots" / commit, ignore=shutil.ignore_patterns(layout.CHECKPOINT))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return folder


def offline_cache(monkeypatch, cache):
    """HF_HUB_CACHE=cache and HF_HUB_OFFLINE=1, as huggingface_hub reads them (at its import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_a_hub_model_is_read_from_the_cache_offline_with_its_revision(unit, tmp_path, monkeypatch):
    offline_cache(monkeypatch, tmp_path / "cache")
    cached_repository(tmp_path / "cache", "emo-test/tiny-cfnsr", unit)
    path = hub.resolve("emo-test/tiny-cfnsr")
    assert path.name == COMMIT and (path / layout.WEIGHTS).is_file()
    assert hub.resolve("emo-test/tiny-cfnsr", revision=COMMIT) == path
    loaded = TrainedUnit.read(path).load("cpu")  # the one loading path evaluate and predict take
    assert loaded.unit.model_name == "cfnsr"
    with pytest.raises(EmoError, match="not in the hub cache"):
        hub.resolve("emo-test/absent")


def test_names_that_are_nothing_are_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match="neither a folder, nor a pretrained model"):
        hub.resolve("no-such-model")


def test_push_uploads_the_folder_with_its_card_and_without_the_resumable_state(unit, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    class Commit:
        commit_url = "https://huggingface.co/emo-test/tiny-cfnsr/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.setdefault("upload", kw) and Commit())
    assert hub.push(unit, "emo-test/tiny-cfnsr", private=True) == Commit.commit_url
    assert calls["create"] == ("emo-test/tiny-cfnsr", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls["upload"]["folder_path"] == str(unit) and layout.CHECKPOINT in calls["upload"]["ignore_patterns"]
    card = (unit / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: emocli" in card
    with pytest.raises(ConfigError, match="not a hub repository id"):
        hub.push(unit, "not-an-id")


def test_a_mistyped_run_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "runs" / "mmer-ravdess-20260101-120000").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "_download", lambda *args: pytest.fail("looked up on the hub"))
    with pytest.raises(ConfigError, match=r"^runs/mmer-ravdess-20260101-120001: no such run folder \(did you mean "
                                          r"runs/mmer-ravdess-20260101-120000\?\)$"):
        hub.resolve("runs/mmer-ravdess-20260101-120001")
    with pytest.raises(ConfigError, match=r"^outs/x/seed=1: no such run folder \(outs/x does not exist either\)$"):
        hub.resolve("outs/x/seed=1")
