"""A model's objective: the losses its paper trains with, and how its logits become probabilities.

Training (training/steps.py) back-propagates the sum of `losses(..., training=True)`; validation and
`emo evaluate` report `losses(..., training=False)`; prediction reads `probabilities`. A model names its
objective in its registration; models without one of their own use `ClassificationObjective`. The
objective's parameters are the `[loss]` table of a training preset (`--set loss.smoothing=0.1`),
validated by its `Params`.

Conversation models return [B, L, ...] outputs; the objective reads the real utterances only
(`real_utterances` with masks["utterance"]), in the order the batch's targets are.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError

from emocli.core.errors import ConfigError
from emocli.core.types import real_utterances
from emocli.models.base import ModelConfig, ModelOutput


class ObjectiveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective:
    """Base: subclasses define `Params` and `losses`."""

    Params: ClassVar[type[ObjectiveParams]] = ObjectiveParams
    paper_threshold: ClassVar[float] = 0.5  # multi-label decision threshold of the model's paper

    def __init__(self, params: dict[str, Any], config: ModelConfig):
        try:
            self.params = self.Params.model_validate(params)
        except ValidationError as error:
            problems = "; ".join(f"loss.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ConfigError(f"invalid {type(self).__name__} parameters ({problems})") from None
        self.config = config

    @property
    def multi_label(self) -> bool:
        return self.config.task == "multi_label"

    def losses(
        self, output: ModelOutput, targets: torch.Tensor, utterances: torch.Tensor | None, training: bool
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms of one forward; their sum is what is back-propagated. `targets` are [N] class
        indices or [N, C] multi-hot; `utterances` is masks["utterance"] for conversation models."""
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)


class ClassificationObjective(Objective):
    """Cross entropy (single-label) or BCE-with-logits (multi-label): CFN-SR's, and the default."""

    class Params(ObjectiveParams):
        label_smoothing: float = 0.0
        # Per-class weights of the training cross entropy (single-label): a list, one per class, or "balanced",
        # which the trainer turns into the inverse class frequencies of each unit's training rows
        # (training/loop.py, `balanced_class_weights`), so every class counts alike, as unweighted average
        # recall does. Validation and test losses are unweighted.
        class_weights: list[float] | Literal["balanced"] | None = None

    def losses(
        self, output: ModelOutput, targets: torch.Tensor, utterances: torch.Tensor | None, training: bool
    ) -> dict[str, torch.Tensor]:
        logits = real_utterances(output.logits, utterances)
        if self.multi_label:
            return {"bce": F.binary_cross_entropy_with_logits(logits, targets)}
        smoothing = self.params.label_smoothing if training else 0.0
        weights = self.params.class_weights if training and isinstance(self.params.class_weights, list) else None
        if weights is not None:
            weights = torch.tensor(weights, dtype=logits.dtype, device=logits.device)
        return {"ce": F.cross_entropy(logits, targets, weight=weights, label_smoothing=smoothing)}
