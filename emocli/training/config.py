"""What a training run is: one pydantic `TrainConfig`, built from a TOML preset plus `--set` overrides.

Presets live in emocli/presets/train/<name>.toml (or any path). A preset may `extends = "<other>"`:
the parent is read first and the child's tables are merged into it key by key, so a dataset recipe
(smile-mosei) only states what differs from the model's paper recipe (smile). When no preset is named,
the model's own preset (`smile`, `spikemo`, `mmer`, `cfnsr`) is used: the optimiser, schedule, losses
and selection rule of its paper.

Overrides are dotted: `--set optimizer.lr=2e-3 --set model.d_model=64 --set step.app_epsilon=0.5`.
Values are parsed as TOML literals (numbers, booleans, arrays, inline tables); anything that does not
parse is taken as a string.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emocli.core.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OptimizerConfig(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float | None = None  # None: the model configuration's `lr` if it has one, else 1e-3
    weight_decay: float | None = None  # None: the model configuration's `weight_decay`, else 0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # sgd only


class SchedulerConfig(Strict):
    """Learning-rate schedule, stepped once per epoch.

    - none:    constant lr
    - plateau: ReduceLROnPlateau on the validation loss (SMILE, MultiEMO)
    - step:    lr × gamma every `step_size` epochs (SpikEmo's paper: ×0.95 every 10)
    - model:   the model configuration's own `learning_rate(epoch)` (MMER's lagged warm-up cosine, whose
               parameters are model parameters: `--set model.warmup_epochs=5`)
    """

    name: Literal["none", "plateau", "step", "model"] = "none"
    factor: float = 0.1  # plateau
    patience: int = 10  # plateau
    threshold: float = 1e-4  # plateau
    step_size: int = 10  # step
    gamma: float = 0.1  # step


class SelectionConfig(Strict):
    """Which epoch's weights are kept: the best `metric` on `split`."""

    split: Literal["valid", "test"] = "valid"
    metric: str = "loss"  # "loss" or a key of the split's metrics (weighted_f1, accuracy, jaccard, ...)
    mode: Literal["min", "max"] = "min"


class PaperProtocol(Strict):
    """The paper's own selection rule, used only with `--protocol paper` (and reported as such)."""

    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    valid_fraction: float | None = None  # e.g. 0 for CFN-SR: no validation split, the fold is the test
    note: str = ""


class SplitConfig(Strict):
    """How train/valid/test are formed when the dataset does not give a validation split."""

    valid_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    group_by: Literal["auto", "dialogue", "speaker", "sample"] = "auto"  # auto: dialogue, else speaker


class DistributedConfig(Strict):
    find_unused_parameters: bool = True  # some models have dead branches (SpikEmo's MELD text RNN)
    broadcast_buffers: bool = True  # SMILE's dynamic-threshold state follows rank 0


class TrainConfig(Strict):
    model: str
    preset: str | None = None  # the preset this config came from (provenance only)
    reference: str | None = None  # the model's named reference configuration to start from
    model_params: dict[str, Any] = Field(default_factory=dict)  # overrides of the model configuration

    modalities: list[str] | None = None  # None: every modality the model and the store have
    features: dict[str, str] = Field(default_factory=dict)  # modality -> feature set / extractor / preset

    # None here and below: the model configuration's value where it holds one (MMER keeps its paper's
    # training defaults there), else a generic default; `resolve_with_model` fills them in.
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    clip_grad_norm: float | None = None  # None: the model's `grad_clip_norm`, else no clipping; 0: none
    drop_last: bool = False  # MMER's train loader drops the last incomplete batch
    early_stopping: int | None = None  # epochs without improvement before stopping; None: run all

    step: dict[str, Any] = Field(default_factory=dict)  # the train step's own parameters (see steps.py)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    paper: PaperProtocol = Field(default_factory=PaperProtocol)
    protocol: Literal["standard", "paper"] = "standard"
    split: SplitConfig = Field(default_factory=SplitConfig)

    threshold: float | None = None  # multi-label decision threshold; None: the model's paper value
    empty_rule: Literal["zero", "one"] = "zero"  # Jaccard of an empty-vs-empty sample (metrics.py)
    seeds: list[int] = Field(default_factory=lambda: [1])
    folds: list[int] | Literal["all"] | None = None  # None: the dataset's split column

    # Per-feature z-score fitted on each unit's training rows (normalize.py); "none" feeds the store's values.
    normalize: Literal["standard", "none"] = "standard"
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    deterministic: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        return self

    def effective_selection(self) -> SelectionConfig:
        return self.paper.selection if self.protocol == "paper" else self.selection

    def effective_valid_fraction(self) -> float:
        if self.protocol == "paper" and self.paper.valid_fraction is not None:
            return self.paper.valid_fraction
        return self.split.valid_fraction

    def resolve_with_model(self, model_config: Any) -> TrainConfig:
        """A copy with every None default filled from the model configuration, or the generic default."""
        def pick(value: Any, attribute: str, default: Any) -> Any:
            if value is not None:
                return value
            found = getattr(model_config, attribute, None)
            return default if found is None else found

        resolved = self.model_copy(deep=True)
        resolved.epochs = pick(self.epochs, "num_epochs", None) or pick(None, "epochs", 30)
        resolved.batch_size = pick(self.batch_size, "batch_size", 32)
        resolved.optimizer.lr = pick(self.optimizer.lr, "lr", 1e-3)
        resolved.optimizer.weight_decay = pick(self.optimizer.weight_decay, "weight_decay", 0.0)
        resolved.clip_grad_norm = pick(self.clip_grad_norm, "grad_clip_norm", 0.0)
        return resolved


# ---------------------------------------------------------------------------------------------- presets


def _preset_dir():
    return resources.files("emocli") / "presets" / "train"


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def _read_preset(name: str) -> tuple[dict, str]:
    """The raw table of a preset given by name or path, and where it came from."""
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        text, where = path.read_text(), str(path)
    else:
        resource = _preset_dir() / f"{name}.toml"
        if not resource.is_file():
            raise ConfigError(f"unknown training preset {name!r}; choose one of {', '.join(preset_names())}")
        text, where = resource.read_text(), f"preset {name}"
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}", path=where) from None


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict:
    """A preset with its `extends` chain resolved (parents first, children override key by key)."""
    if name in _seen:
        raise ConfigError(f"presets extend each other in a loop: {' -> '.join((*_seen, name))}")
    data, _ = _read_preset(name)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return deep_merge(load_preset(parent, (*_seen, name)), data)


def deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -------------------------------------------------------------------------------------------- overrides


def parse_value(text: str) -> Any:
    """A TOML literal (1e-3, true, [1, 2], {a = 1}), else the string itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# `--set model.x=1` targets the model configuration; `model` itself is the model's name.
_ALIASES = {"model": "model_params"}


def apply_overrides(data: dict, assignments: list[str]) -> dict:
    """Apply `key.sub=value` assignments to a nested dict (a copy)."""
    result = copy.deepcopy(data)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {assignment!r}")
        parts = key.split(".")
        if parts == ["model"]:
            raise ConfigError("--set model=...: the model is the command's argument; --set model.<field>=... "
                              "changes its configuration")
        if len(parts) > 1 and parts[0] in _ALIASES:
            parts[0] = _ALIASES[parts[0]]
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is a value, not a table")
            node = child
        node[parts[-1]] = parse_value(raw.strip())
    return result


def resolve_config(
    model: str,
    preset: str | None = None,
    overrides: list[str] | None = None,
    **fields: Any,
) -> TrainConfig:
    """Model's preset (or the named one) <- explicit fields (CLI options) <- `--set` overrides."""
    name = preset or model
    data = load_preset(name)
    if data.get("model", model) != model:
        raise ConfigError(f"preset {name!r} is a recipe for {data['model']!r}, not {model!r}")
    data.update({"model": model, "preset": name})
    data.update({k: v for k, v in fields.items() if v is not None})
    data = apply_overrides(data, overrides or [])
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid training configuration ({problems})", path=f"preset {name}") from None
