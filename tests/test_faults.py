"""Faults during `emo train`: the process killed (SIGKILL) at random points, the disk filling up or
turning read-only at each kind of write. Each time the command ends in one line naming the file and the
reason (or dies), leaves no temporary behind, keeps what was already written, and the same command run
again finishes with weights and metrics identical to an uninterrupted run.

Everything trains a tiny CFN-SR on a synthetic precomputed store (tests/test_training_data.py), on one
thread, so runs are bit-for-bit repeatable on the CPU.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hostile import assert_one_line_error, emo
from test_training_data import make_store

from emocli.runs import layout
from emocli.training.config import resolve_config
from emocli.training.trainer import train_run

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 4
SETTINGS = ["model.video_dim=16", "model.transformer_layers=1", "model.transformer_heads=2", "batch_size=8",
            f"epochs={EPOCHS}"]
ARGS = ["--folds", "0", "--seeds", "1", "--name", "f", *[a for s in SETTINGS for a in ("--set", s)]]
FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"), n=48).path


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory) -> Path:
    """The uninterrupted run's unit, trained on one thread as the subprocesses are."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = resolve_config("cfnsr", overrides=SETTINGS, seeds=[1], folds=[0])
        root = train_run("cfnsr", store, config, out=tmp_path_factory.mktemp("reference"), name="f").root
    finally:
        torch.set_num_threads(threads)
    return layout.unit_dir(root, 1, 0)


def assert_same_run(unit: Path, reference: Path) -> None:
    """Identical best weights (the file's bytes), epoch log (without wall-clock times) and test metrics."""
    assert (unit / layout.WEIGHTS).read_bytes() == (reference / layout.WEIGHTS).read_bytes()

    def log(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in layout.read_jsonl(path / layout.METRICS)]

    assert log(unit) == log(reference) and len(log(unit)) == EPOCHS
    assert layout.read_json(unit / layout.TEST_METRICS)["metrics"] == layout.read_json(reference / layout.TEST_METRICS)["metrics"]
    assert not (unit / layout.CHECKPOINT).exists()
    assert (unit.parent.parent / layout.RESULTS_JSON).is_file()


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------- kill -9


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11])
def test_kill_9_anywhere_then_the_same_command_gives_the_same_run(store, reference, tmp_path, monkeypatch, capsys,
                                                                  seed):
    """A real `emo train` process is killed; the same command (here in this process, to spare a second
    start-up of torch; one thread as in the subprocess) finishes the run."""
    rng = random.Random(seed)
    command = [sys.executable, "-m", "emocli", "train", "cfnsr", "--features", str(store), "--out", str(tmp_path), *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    unit = layout.unit_dir(tmp_path / "cfnsr-toy-f", 1, 0)
    epoch_seconds = max(r["seconds"] for r in layout.read_jsonl(reference / layout.METRICS))
    # The kill lands after `logged` epochs are in the log, somewhere inside the next one (or at once).
    logged = rng.randrange(EPOCHS)
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while len(layout.read_jsonl(unit / layout.METRICS)) < logged or not (unit / layout.CONFIG).is_file():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(rng.uniform(0, epoch_seconds))
    assert process.poll() is None, "the run ended before the kill: nothing was tested"
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not (unit / layout.TEST_METRICS).exists()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = emo(monkeypatch, capsys, *command[3:])
    finally:
        torch.set_num_threads(threads)
    assert outcome.code == 0, outcome
    assert_same_run(unit, reference)
    assert not temporaries(tmp_path)


# ------------------------------------------------------------------------ full disk, read-only disk


def _fail_once(calls: dict, key: str, when: int) -> bool:
    calls[key] = calls.get(key, 0) + 1
    return calls[key] == when


@pytest.fixture
def disk_faults():
    """`inject(monkeypatch, kind, when, error)`: the `when`-th write of that kind writes part of its bytes and fails
    with `error`, the way each writer fails on a real full disk: safetensors with an "os error N" message
    from Rust, torch.save and Python's file writes with the OSError itself."""
    import safetensors.torch
    from safetensors import SafetensorError

    import emocli.core.io as io_module

    calls: dict[str, int] = {}

    def inject(monkeypatch, kind: str, when: int, error: OSError) -> None:
        if kind == "weights":
            save_model = safetensors.torch.save_model

            def failing_save_model(model, filename, *args, **kwargs):
                if _fail_once(calls, kind, when):
                    Path(filename).write_bytes(b"\x00" * 100)
                    raise SafetensorError(f"Error while serializing: I/O error: {error.strerror} (os error {error.errno})")
                return save_model(model, filename, *args, **kwargs)

            monkeypatch.setattr(safetensors.torch, "save_model", failing_save_model)
        elif kind == "checkpoint":
            save = torch.save

            def failing_save(state, handle, *args, **kwargs):
                if _fail_once(calls, kind, when):
                    handle.write(b"PK\x03\x04 partial")
                    raise error
                return save(state, handle, *args, **kwargs)

            monkeypatch.setattr(torch, "save", failing_save)
        else:  # a file written through Python: the epoch log ("metrics.jsonl") or a JSON file (".test_metrics.json.tmp")

            def failing_open(path, mode="r", *args, **kwargs):
                handle = open(path, mode, *args, **kwargs)
                name = Path(path).name  # a temporary is .NAME.<writer>.tmp
                named = name == kind or kind.endswith(".tmp") and name.startswith(kind[:-3]) and name.endswith(".tmp")
                if named and "r" not in mode and _fail_once(calls, kind, when):
                    handle.write('{"epoch": 9, "torn')
                    handle.close()
                    raise error
                return handle

            monkeypatch.setattr(io_module, "open", failing_open, raising=False)

    return inject


@pytest.mark.parametrize("kind, when, error, file", [
    ("checkpoint", 2, FULL, layout.CHECKPOINT),
    ("checkpoint", 1, OSError(errno.EROFS, "Read-only file system"), layout.CHECKPOINT),
    ("weights", 2, FULL, layout.WEIGHTS),
    (layout.METRICS, 3, FULL, layout.METRICS),
    (f".{layout.TEST_METRICS}.tmp", 1, OSError(errno.EACCES, "Permission denied"), layout.TEST_METRICS),
])
def test_a_failing_write_is_one_line_and_the_same_command_finishes_the_run(
    store, reference, tmp_path, monkeypatch, capsys, disk_faults, kind, when, error, file
):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        command = ("train", "cfnsr", "--features", store, "--out", tmp_path, *ARGS)
        unit = layout.unit_dir(tmp_path / "cfnsr-toy-f", 1, 0)
        if kind == "weights":  # the when-th improvement must happen (the reference says when)
            selected = [r for r in layout.read_jsonl(reference / layout.METRICS) if r["selected"]]
            assert len(selected) >= when
        with monkeypatch.context() as faults:
            disk_faults(faults, kind, when, error)
            outcome = emo(faults, capsys, *command)
        assert_one_line_error(outcome, unit / file, error.strerror)
        if error.errno == errno.ENOSPC:
            assert "free some space and run the same command again" in outcome.errors[0]
        assert not temporaries(tmp_path)
        assert not (unit / layout.TEST_METRICS).exists()
        # What was written before the fault is whole: the checkpoint loads and the log's records parse.
        state = layout.load_checkpoint(unit / layout.CHECKPOINT)
        assert state is None or state["epoch"] >= 1
        before = layout.read_jsonl(unit / layout.METRICS)
        assert all(r["epoch"] <= EPOCHS for r in before)

        outcome = emo(monkeypatch, capsys, *command)
        assert outcome.code == 0, outcome
        assert_same_run(unit, reference)
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------- a real small or read-only disk


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted at tmp_path / "disk" (needs root and mount rights: skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_disk_then_more_space(store, reference, small_disk, monkeypatch, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        command = ("train", "cfnsr", "--features", store, "--out", small_disk, *ARGS)
        outcome = emo(monkeypatch, capsys, *command)  # weights 0.3 MB, checkpoint 0.9 MB, and its temporary
        line = assert_one_line_error(outcome, small_disk / "cfnsr-toy-f", "No space left on device")
        assert "Traceback" not in outcome.err and "basic_ios" not in line
        assert not temporaries(small_disk)
        subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
        outcome = emo(monkeypatch, capsys, *command)
        assert outcome.code == 0, outcome
        assert_same_run(layout.unit_dir(small_disk / "cfnsr-toy-f", 1, 0), reference)

        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        unit = layout.unit_dir(small_disk / "cfnsr-toy-f", 1, 0)
        outcome = emo(monkeypatch, capsys, "evaluate", unit)
        assert_one_line_error(outcome, unit / "evaluation-test.json", "Read-only file system")
        outcome = emo(monkeypatch, capsys, "train", "cfnsr", "--features", store, "--out", small_disk, *ARGS,
                      "--name", "another")  # a new run on the read-only disk: refused before the data loads
        assert_one_line_error(outcome, small_disk / "cfnsr-toy-another", "Read-only file system")
        outcome = emo(monkeypatch, capsys, "predict", unit, store / "x.wav", "-o", small_disk / "out.csv")
        assert_one_line_error(outcome, small_disk / "out.csv", "Read-only file system")
        assert outcome.err.strip() == outcome.errors[0]  # refused before the run was even read
    finally:
        torch.set_num_threads(threads)
