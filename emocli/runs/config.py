"""The configuration a run trains with: one pydantic `TrainConfig`, stored in each unit's config.json.

It is the schema of what a run directory records, so reading a run (evaluation, prediction) needs this
module and not the trainer; training presets and `--set` overrides build it (training/config.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from emocli.core.settings import none_word


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OptimizerConfig(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9  # sgd only


class SchedulerConfig(Strict):
    """Learning-rate schedule, stepped once per epoch (training/schedule.py).

    - none:          constant lr
    - plateau:       ReduceLROnPlateau on the validation loss (SMILE, MultiEMO)
    - step:          lr × gamma every `step_size` epochs (SpikEmo's paper: ×0.95 every 10)
    - warmup_cosine: timm's CosineLRScheduler (MMER): a linear warm-up from `warmup_lr_init` over
                     `warmup_epochs`, then a half cosine down to `min_lr` over `cycle_epochs`, then `min_lr`
    """

    name: Annotated[Literal["none", "plateau", "step", "warmup_cosine"], BeforeValidator(none_word)] = "none"
    factor: float = 0.1  # plateau
    patience: int = 10  # plateau
    threshold: float = 1e-4  # plateau
    step_size: int = 10  # step
    gamma: float = 0.1  # step
    warmup_epochs: int = Field(10, ge=0)  # warmup_cosine
    warmup_lr_init: float = 5e-6  # warmup_cosine
    min_lr: float = 0.0  # warmup_cosine
    # warmup_cosine: True starts the cosine after the warm-up, from the peak lr (timm's warmup_prefix);
    # False evaluates the cosine at the epoch itself, so it starts below the peak (MMER's released code).
    warmup_prefix: bool = True
    cycle_epochs: int | None = Field(None, ge=1)  # None: the epochs left after the warm-up (prefix) or all
    # The released MMER steps its scheduler after each epoch with that epoch's index, so epoch e trains with
    # the rate meant for e - 1: lag_epochs = 1 reproduces it.
    lag_epochs: int = Field(0, ge=0)


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

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    clip_grad_norm: float | None = Field(None, ge=0)  # None or 0: no clipping
    drop_last: bool = False  # MMER's train loader drops the last incomplete batch
    early_stopping: int | None = Field(None, ge=1)  # epochs without improvement before stopping; None: run all

    loss: dict[str, Any] = Field(default_factory=dict)  # the model objective's parameters (models/objectives.py)
    step: dict[str, Any] = Field(default_factory=dict)  # the train step's parameters (training/steps.py)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    paper: PaperProtocol = Field(default_factory=PaperProtocol)
    protocol: Literal["standard", "paper"] = "standard"
    split: SplitConfig = Field(default_factory=SplitConfig)

    threshold: float | None = None  # multi-label decision threshold; None: the model objective's paper value
    empty_rule: Literal["zero", "one"] = "zero"  # Jaccard of an empty-vs-empty sample (metrics.py)
    seeds: list[int] = Field(default_factory=lambda: [1])
    folds: list[int] | Literal["all"] | None = None  # None: the dataset's split column

    # Per-feature z-score fitted on each unit's training rows (normalize.py); "none" feeds the store's values;
    # "speaker" standardises each speaker (a predicted recording) by its own statistics first, then as "standard".
    normalize: Annotated[Literal["standard", "none", "speaker"], BeforeValidator(none_word)] = "standard"
    speaker_min_samples: int = Field(20, ge=2)  # normalize = "speaker": samples a speaker needs to be standardised
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
