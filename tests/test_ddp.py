"""Training on two CPU processes (DDP over gloo) trains as well as one, and scores every sample once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from test_training_data import make_store

from emocli.runs import layout
from emocli.training.config import resolve_config

CFNSR = ["model.video_dim=16", "model.transformer_layers=1", "model.transformer_heads=2", "batch_size=8", "epochs=4"]
SMILE = ["batch_size=8", "epochs=2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world_size: int, port: int, store: str, out: str) -> None:
    """One rank, as torchrun would start it: the trainer joins the process group from the environment."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
        LOCAL_RANK=str(rank), OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    from emocli.data.inputs import select_inputs, store_label_map
    from emocli.data.tables import load_data
    from emocli.features.store import FeatureStore
    from emocli.models.registry import get_model
    from emocli.runs.inference import score_rows
    from emocli.training.distributed import setup_distributed
    from emocli.training.prepare import build_model_config
    from emocli.training.trainer import train_run

    # Sharded prediction gathers every row exactly once, in the same order as one process.
    ctx = setup_distributed("cpu")
    feature_store = FeatureStore(store)
    data = load_data(feature_store, select_inputs(feature_store, get_model("cfnsr")), store_label_map(feature_store))
    config = resolve_config("cfnsr", overrides=CFNSR)
    model_config = build_model_config(get_model("cfnsr"), config, data.inputs, data.label_map)
    torch.manual_seed(0)
    model = get_model("cfnsr").build(model_config)
    rows = np.arange(5, len(data))
    objective = get_model("cfnsr").objective({}, model_config)
    shared = score_rows(model, objective, data, rows, conversation=False, batch_size=4, device=torch.device("cpu"),
                        rank=ctx.rank, world_size=ctx.world_size, gather=ctx.gather)
    if rank == 0:
        np.save(Path(out) / "ddp_rows.npy", shared.rows)
        np.save(Path(out) / "ddp_probs.npy", shared.probs)
    ctx.barrier()

    train_run("cfnsr", store, resolve_config("cfnsr", overrides=CFNSR, seeds=[1], folds=[0]), out=out, name="ddp")
    # SMILE keeps its dynamic threshold in buffers that DDP broadcasts from rank 0 before each forward.
    train_run("smile", store, resolve_config("smile", overrides=SMILE, seeds=[1], folds=[0]), out=out, name="ddp")
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("store"), n=96, noise=0.8)
    out = tmp_path_factory.mktemp("runs")
    mp.spawn(worker, args=(2, free_port(), str(store.path), str(out)), nprocs=2, join=True)
    return store, out


def test_sharded_prediction_covers_every_sample_exactly_once(two_process_run):
    from emocli.data.inputs import select_inputs, store_label_map
    from emocli.data.tables import load_data
    from emocli.models.registry import get_model
    from emocli.runs.inference import score_rows
    from emocli.training.prepare import build_model_config

    store, out = two_process_run
    data = load_data(store, select_inputs(store, get_model("cfnsr")), store_label_map(store))
    config = resolve_config("cfnsr", overrides=CFNSR)
    model_config = build_model_config(get_model("cfnsr"), config, data.inputs, data.label_map)
    torch.manual_seed(0)
    model = get_model("cfnsr").build(model_config)
    rows = np.arange(5, len(data))
    objective = get_model("cfnsr").objective({}, model_config)
    single = score_rows(model, objective, data, rows, conversation=False, batch_size=4, device=torch.device("cpu"))
    assert np.array_equal(np.load(out / "ddp_rows.npy"), rows)
    np.testing.assert_allclose(np.load(out / "ddp_probs.npy"), single.probs, rtol=1e-5, atol=1e-6)


def test_two_processes_train_as_well_as_one(two_process_run, tmp_path):
    from emocli.training.trainer import train_run

    store, out = two_process_run
    one = train_run("cfnsr", store.path, resolve_config("cfnsr", overrides=CFNSR, seeds=[1], folds=[0]), out=tmp_path)
    two = layout.read_json(layout.unit_dir(out / "cfnsr-toy-ddp", 1, 0) / layout.TEST_METRICS)
    single = layout.read_json(layout.unit_dir(one.root, 1, 0) / layout.TEST_METRICS)
    assert two["n_samples"] == single["n_samples"] == len(layout.read_json(layout.unit_dir(one.root, 1, 0) / "splits.json")["test"])
    assert single["metrics"]["accuracy"] >= 0.8  # the synthetic problem is easy ...
    assert two["metrics"]["accuracy"] == pytest.approx(single["metrics"]["accuracy"], abs=0.15)  # ... on two too
    records = layout.read_jsonl(layout.unit_dir(out / "cfnsr-toy-ddp", 1, 0) / layout.METRICS)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]  # rank 0 alone wrote the log


def test_spiking_model_with_threshold_buffers_trains_under_ddp(two_process_run):
    _, out = two_process_run
    unit = layout.unit_dir(out / "smile-toy-ddp", 1, 0)
    result = layout.read_json(unit / layout.TEST_METRICS)
    assert result["spiking"]["firing_rates"]
    assert np.isfinite(result["losses"]["loss"])


def test_torchrun_entry_point(tmp_path):
    """`torchrun --nproc_per_node=2 -m emocli train ...`, once cli.py mounts train_cmd."""
    from emocli import cli

    if "train_cmd" not in cli.__dict__:
        pytest.skip("emo train is not wired into cli.py yet")
    store = make_store(tmp_path / "store", n=48)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "emocli", "train", "cfnsr", "--features", str(store.path), "--out", str(tmp_path / "runs"),
        "--name", "tr", "--folds", "0", *[x for s in CFNSR for x in ("--set", s)], "--set", "epochs=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (layout.unit_dir(tmp_path / "runs" / "cfnsr-toy-tr", 1, 0) / layout.TEST_METRICS).is_file()
