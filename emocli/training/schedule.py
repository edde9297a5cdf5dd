"""The optimiser and the learning rate per epoch (the `optimizer` and `scheduler` tables of a preset)."""

from __future__ import annotations

import math
from typing import Any

import torch

from emocli.runs.config import SchedulerConfig, TrainConfig


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = config.optimizer
    parameters = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adam":
        return torch.optim.Adam(parameters, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(parameters, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def warmup_cosine(epoch: int, peak: float, config: SchedulerConfig, epochs: int) -> float:
    """timm's CosineLRScheduler (one cycle, no restarts) at the 0-based `epoch`.

    t = epoch - lag; during the warm-up (t < warmup_epochs) the rate rises linearly from warmup_lr_init;
    then a half cosine falls from `peak` to min_lr over the cycle, and stays at min_lr after it (it never
    climbs again). With warmup_prefix the cosine starts when the warm-up ends, at the peak; without it the
    cosine is evaluated at t itself, as MMER's released code does, so the rate never reaches the peak.
    """
    t = max(0, epoch - config.lag_epochs)
    warmup = config.warmup_epochs
    if t < warmup:
        return config.warmup_lr_init + t * (peak - config.warmup_lr_init) / warmup
    if config.warmup_prefix:
        t -= warmup
        cycle = config.cycle_epochs or max(1, epochs - warmup)
    else:
        cycle = config.cycle_epochs or epochs
    if t >= cycle:
        return config.min_lr
    return config.min_lr + 0.5 * (peak - config.min_lr) * (1.0 + math.cos(math.pi * t / cycle))


class EpochSchedule:
    """The learning rate per epoch: set before the epoch (step, warmup_cosine), or stepped after it (plateau)."""

    def __init__(self, config: SchedulerConfig, optimizer: torch.optim.Optimizer, epochs: int):
        self.config = config
        self.optimizer = optimizer
        self.epochs = epochs
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.plateau = None
        if config.name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=config.factor, patience=config.patience, threshold=config.threshold
            )

    def before_epoch(self, epoch: int) -> float:
        if self.config.name in ("step", "warmup_cosine"):
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                if self.config.name == "step":
                    group["lr"] = base * self.config.gamma ** (epoch // self.config.step_size)
                else:
                    group["lr"] = warmup_cosine(epoch, base, self.config, self.epochs)
        return self.optimizer.param_groups[0]["lr"]

    def after_epoch(self, monitored_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(monitored_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
