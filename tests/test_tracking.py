"""`--tracker tensorboard|mlflow`: every epoch's losses, metrics, learning rate (and spiking firing rates),
the configuration and the environment, read back from the written event files and the local MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_training_data import make_store

from emocli.runs import layout
from emocli.training.config import resolve_config
from emocli.training.trainer import train_run

SMALL_SMILE = ["epochs=3", "batch_size=16", "model.d_model=8", "model.heads=2", "model.encoder_ffn_dim=16",
               "model.decoder_ffn_dim=16", "model.snn_hidden=8"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"), n=48)


def test_tensorboard_event_files_hold_every_epoch(store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_run("smile", store.path, resolve_config("smile", overrides=SMALL_SMILE, folds=[0]), out=tmp_path,
                    tracker="tensorboard")
    unit = layout.unit_dir(run.root, 1, 0)
    events = EventAccumulator(str(unit / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"lr", "train/loss", "valid/loss", "valid/weighted_f1"} <= tags
    assert any(tag.startswith("firing_rates/") for tag in tags)  # a spiking model's layers
    records = layout.read_jsonl(unit / layout.METRICS)
    logged = [(e.step, e.value) for e in events.Scalars("valid/loss")]
    assert logged == [(r["epoch"], pytest.approx(r["valid"]["loss"], rel=1e-6)) for r in records]
    assert "test_final/accuracy" in tags
    assert {"config/text_summary", "environment/text_summary"} <= set(events.Tags()["tensors"])


def test_mlflow_local_store_holds_params_metrics_and_environment(store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = train_run("cfnsr", store.path, resolve_config("cfnsr", overrides=[
        "epochs=2", "model.video_dim=16", "model.transformer_layers=1", "model.transformer_heads=2"], folds=[0]),
        out=tmp_path, tracker="mlflow")
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("cfnsr-toy")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.data.params["train.epochs"] == "2" and found.data.params["model.video_dim"] == "16"
    assert "version.torch" in found.data.tags and found.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "valid/accuracy")
    records = layout.read_jsonl(layout.unit_dir(run.root, 1, 0) / layout.METRICS)
    assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["valid"]["accuracy"])) for r in records]
    assert "test_final/accuracy" in found.data.metrics
    logged = {a.path for a in client.list_artifacts(found.info.run_id, "plots")}
    assert logged == {"plots/learning_curves.png", "plots/confusion_matrix.png"}
    model = {a.path.removeprefix("model/") for a in client.list_artifacts(found.info.run_id, "model")}
    assert {"config.json", "model.safetensors", "label_map.json", "feature_spec.json"} <= model
    downloaded = Path(client.download_artifacts(found.info.run_id, "model", str(tmp_path / "downloaded")))
    assert (downloaded / "model.safetensors").read_bytes() == (layout.unit_dir(run.root, 1, 0) / "model.safetensors").read_bytes()
