"""`emo train`: train a registry model on a feature store (seeds × folds), into a run directory.

Several processes: `torchrun --nproc_per_node=N -m emocli train ...` (DDP; gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from emocli.core.settings import preset_names
from emocli.models.registry import model_names

# Typer takes the CLI choices from an Enum: generated from the registry, the single source of truth.
ModelName = Enum("ModelName", {name: name for name in model_names()}, type=str)


class Tracker(str, Enum):
    none = "none"
    tensorboard = "tensorboard"
    mlflow = "mlflow"


class Protocol(str, Enum):
    """TrainConfig.protocol's choices (a test checks they agree)."""

    standard = "standard"
    paper = "paper"


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        from emocli.core.errors import ConfigError

        raise ConfigError(f"{option} expects comma-separated integers, e.g. 1,2,3; got {text!r}") from None


def _choices(pairs: list[str]) -> dict[str, str]:
    from emocli.core.errors import ConfigError

    choices = {}
    for pair in pairs:
        modality, sep, name = pair.partition("=")
        if not sep or not modality or not name:
            raise ConfigError(f"--feature expects modality=<feature set, extractor or preset>, got {pair!r}")
        choices[modality.strip()] = name.strip()
    return choices


def config_fields(
    seeds: str | None, folds: str | None, modalities: str | None, feature: list[str]
) -> dict[str, object]:
    """The training-configuration fields that `emo train` and `emo tune` take as options."""
    return {
        "seeds": _int_list(seeds, "--seeds"),
        "folds": folds if folds == "all" else _int_list(folds, "--folds"),
        "modalities": [m.strip() for m in modalities.split(",")] if modalities else None,
        "features": _choices(feature) or None,
    }


def train(
    model: ModelName = typer.Argument(..., help="Registry model (see `emo models`)."),
    features: Path | None = typer.Option(
        None, "--features", "-f", help="Feature store written by `emo extract` (default: the one under stores/ that fits)."
    ),
    preset: str | None = typer.Option(
        None, "--preset", "-p", help=f"Training recipe, a name or a .toml path ({', '.join(preset_names('train'))}). "
        "Default: the model's own paper recipe."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config value, dotted: optimizer.lr=2e-3, model.d_model=64, loss.smoothing=0.1."
    ),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 1,2,3 (default: the preset's)."),
    folds: str | None = typer.Option(
        None, "--folds", help="'all' or comma-separated folds: fold k is the test set. Default: the dataset's split."
    ),
    modalities: str | None = typer.Option(None, "--modalities", help="Comma-separated subset, e.g. text,audio."),
    feature: list[str] = typer.Option(
        [], "--feature", help="modality=<feature set name | extractor | extraction preset>, when several fit."
    ),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder of run directories."),
    name: str | None = typer.Option(None, "--name", help="Run name (default: a timestamp; reused when resuming)."),
    protocol: Protocol = typer.Option(
        "standard", "--protocol", help="standard: select on validation. paper: the paper's own rule (reported as such)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1."),
    tracker: Tracker = typer.Option(
        Tracker.none, "--tracker", help="Log every epoch to TensorBoard (<unit>/tensorboard) or MLflow ($MLFLOW_TRACKING_URI, "
        "else <out>/mlruns)."
    ),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved configuration and exit."),
) -> None:
    """Train MODEL on a feature store: one run directory, a unit per seed and fold, results as mean ± std.

    Re-running the same command resumes an interrupted run, and does nothing for a finished one.
    """
    import json

    from emocli.api import train as train_model
    from emocli.training.config import resolve_config

    fields = {**config_fields(seeds, folds, modalities, feature), "protocol": protocol.value}
    if show_config:
        config = resolve_config(model.value, preset, overrides, **fields)
        typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))
        return
    train_model(
        model.value, features, preset=preset, settings=overrides, seeds=fields["seeds"], folds=fields["folds"],
        modalities=fields["modalities"], feature=fields["features"], out=out, name=name, protocol=protocol.value,
        device=device, tracker=tracker.value,
    )
