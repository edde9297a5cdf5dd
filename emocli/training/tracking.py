"""Experiment trackers: `emo train --tracker tensorboard|mlflow`, as training callbacks (loop.py).

Per unit (seed x fold): the resolved configuration and the environment when it starts; per epoch every
number of its metrics.jsonl record (train / valid / test losses and metrics, the learning rate and, for
spiking models, the validation firing rate of each spiking layer); the test metrics when it ends, and with
MLflow the unit's plots and its model (the files `emo predict --model` loads) as artifacts.

- tensorboard: event files in `<unit>/tensorboard/` (`tensorboard --logdir runs/`), written with
  torch.utils.tensorboard.
- mlflow: one MLflow run per unit in the experiment `<model>-<dataset>`, at $MLFLOW_TRACKING_URI when it
  is set (a tracking server), else in a local store `<runs folder>/mlruns`. MLflow keeps its file store in
  maintenance mode behind MLFLOW_ALLOW_FILE_STORE; emo sets it for its own local default and for a `file:`
  URI (or a plain path) the user gives, and the store's viewer needs it too, with the full `mlflow` package
  (mlflow-skinny has no server): `pip install mlflow` then
  `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri runs/mlruns`.

A tracker never costs the training: a server or folder that cannot be used when training starts is one
line saying what to do, and emo bounds MLflow's retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES 2,
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR 1, MLFLOW_HTTP_REQUEST_TIMEOUT 30 s, unless set) instead of its default
of about four minutes per call; a tracker that fails later is reported once and stops logging, while
training goes on (metrics.jsonl holds every epoch).
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from emocli.core.errors import ConfigError, EmoError
from emocli.core.io import check_writable

TrackerName = Literal["none", "tensorboard", "mlflow"]
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlruns"
# MLflow's own defaults retry a refused connection 7 times with doubling waits (about 4 minutes per call).
MLFLOW_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
PLOTS = ("learning_curves.png", "confusion_matrix.png")
# What loading a unit needs (runs.inference.TrainedUnit), with its card and test figures: the model artifact.
MODEL_FILES = ("config.json", "model.safetensors", "normalization.safetensors", "label_map.json", "feature_spec.json",
               "test_metrics.json", "README.md")


def environment() -> dict[str, str]:
    """What the numbers were measured with."""
    import torch

    versions = {}
    for name in ("emocli", "torch", "numpy", "transformers", "spikingjelly"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
        "cuda": torch.version.cuda or "none",
        **{f"version.{k}": v for k, v in versions.items()},
    }


def scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a (nested) epoch record as flat "split/metric" names."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(scalars(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            flat[name] = float(value)
    return flat


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


class TensorBoardTracker:
    def __init__(self) -> None:
        from torch.utils.tensorboard import SummaryWriter  # fails here, before training, when not installed

        self.writer_class = SummaryWriter
        self.writers: dict[Path, Any] = {}

    def on_unit_start(self, unit: Path, description: dict[str, Any]) -> None:
        import json

        # Its writer thread would report a folder it cannot write to as a traceback, and lose the events.
        check_writable(unit / TENSORBOARD_DIR, folder=True)
        writer = self.writer_class(log_dir=str(unit / TENSORBOARD_DIR))
        writer.add_text("config", "```\n" + json.dumps(description["config"], indent=2) + "\n```")
        writer.add_text("environment", "\n".join(f"- {k}: {v}" for k, v in description["environment"].items()))
        self.writers[unit] = writer

    def on_epoch_end(self, unit: Path, record: dict[str, Any]) -> None:
        writer = self.writers[unit]
        for name, value in scalars(record).items():
            writer.add_scalar(name, value, global_step=record["epoch"])
        writer.flush()

    def on_unit_end(self, unit: Path, result: dict[str, Any]) -> None:
        writer = self.writers.pop(unit)
        for name, value in scalars(result["metrics"], "test_final/").items():
            writer.add_scalar(name, value, global_step=0)
        writer.close()


class MLflowTracker:
    def __init__(self, out: Path, experiment: str):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
        if uri is None or _is_file_store(uri):  # the user's own file: URI is a local store too
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = uri or (out / MLFLOW_DIR).resolve().as_uri()
        for variable, value in MLFLOW_BOUNDS.items():
            os.environ.setdefault(variable, value)
        self.uri = uri
        try:
            self.client = MlflowClient(uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        except Exception as error:  # MlflowException, or the store's own (a database driver, a folder)
            from_environment = "MLFLOW_TRACKING_URI" in os.environ and os.environ["MLFLOW_TRACKING_URI"] == uri
            remedy = ("start the server, correct $MLFLOW_TRACKING_URI, or unset it to log into "
                      f"{out / MLFLOW_DIR}") if from_environment else "check that folder, or train without --tracker"
            raise ConfigError(f"--tracker mlflow: cannot use the tracking store {uri} ({_reason(error)}); "
                              f"{remedy}") from None
        self.runs: dict[Path, str] = {}

    def on_unit_start(self, unit: Path, description: dict[str, Any]) -> None:
        from mlflow.entities import Param, RunTag

        run = self.client.create_run(self.experiment_id, run_name=f"{unit.parent.parent.name}/{unit.parent.name}/{unit.name}")
        self.runs[unit] = run.info.run_id
        params = [Param(k, v[:500]) for k, v in flatten(description["config"]).items()]
        tags = [RunTag(k, v) for k, v in {**description["environment"], "emo.unit": str(unit)}.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(run.info.run_id, params=params[start : start + 100])
        self.client.log_batch(run.info.run_id, tags=tags)

    def on_epoch_end(self, unit: Path, record: dict[str, Any]) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(name, value, stamp, record["epoch"]) for name, value in scalars(record).items()]
        self.client.log_batch(self.runs[unit], metrics=metrics)

    def on_unit_end(self, unit: Path, result: dict[str, Any]) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        run_id = self.runs.pop(unit)
        final = [Metric(f"test_final/{n}", v, stamp, 0) for n, v in scalars(result["metrics"]).items()]
        self.client.log_batch(run_id, metrics=final)
        for folder, names in (("plots", PLOTS), ("model", MODEL_FILES)):
            for name in names:
                if (unit / name).is_file():
                    self.client.log_artifact(run_id, str(unit / name), artifact_path=folder)
        self.client.set_terminated(run_id)


def _is_file_store(uri: str) -> bool:
    """A `file:` URI or a plain path: MLflow's local file store."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # C:\\... on Windows


def _reason(error: BaseException) -> str:
    """A library's long message as its cause alone ("Connection refused", "Max retries exceeded")."""
    import re

    text = " ".join(str(error).split())
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found.group(1).strip()
    return (text[:200] + "...") if len(text) > 200 else text or type(error).__name__


class Guarded:
    """A tracker whose failures after training started are reported once and end its logging, never the
    training: the epochs are in metrics.jsonl whatever the tracker does."""

    def __init__(self, name: str, inner: Any):
        self.name, self.inner, self.failed = name, inner, False

    def _call(self, method: str, *args: Any) -> None:
        if self.failed:
            return
        try:
            getattr(self.inner, method)(*args)
        except EmoError:
            raise  # a folder it cannot write when a unit starts: said before any epoch of that unit
        except Exception as error:  # noqa: BLE001 - whatever the tracker's library raises, training goes on
            from rich.console import Console
            from rich.markup import escape

            from emocli.core.terminal import shown

            self.failed = True
            Console(stderr=True).print(
                f"[yellow]warning:[/] --tracker {self.name} stopped logging ({escape(shown(_reason(error)))}); "
                "training goes on, and metrics.jsonl holds every epoch", highlight=False, soft_wrap=True)

    def on_unit_start(self, unit: Path, description: dict[str, Any]) -> None:
        self._call("on_unit_start", unit, description)

    def on_epoch_end(self, unit: Path, record: dict[str, Any]) -> None:
        self._call("on_epoch_end", unit, record)

    def on_unit_end(self, unit: Path, result: dict[str, Any]) -> None:
        self._call("on_unit_end", unit, result)


def tracker(name: str, out: Path, experiment: str):
    """The callbacks for `--tracker NAME` (none: no callback)."""
    if name == "none":
        return []
    try:
        if name == "tensorboard":
            return [Guarded(name, TensorBoardTracker())]
        if name == "mlflow":
            return [Guarded(name, MLflowTracker(out, experiment))]
    except ImportError as error:
        raise ConfigError(f"--tracker {name}: {error.name} is not installed (pip install 'emocli[tracking]')") from None
    raise ConfigError(f"--tracker {name!r}: choose none, tensorboard or mlflow")
