"""What every registry model shares: its input description, its configuration base, its output, and the
interface the trainer and the inference path use (nothing else is read from a model).

Inputs are a dict modality -> tensor, with an optional dict modality -> bool mask (True = real frame):
- kind "vector":   [B, D]               one vector per sample
- kind "sequence": [B, T, D] + mask [B, T]
- kind "clip":     [B, 3, T, H, W]      raw video (CFN-SR's 3D backbone)
Conversation models (input_unit "dialogue") take [B_dialogues, L_utterances, D] per modality (or
[B, L, T, D] for sequence features) and masks["utterance"] [B, L]; their logits are [B, L, C].
Utterance models return logits [B, C]. Logits are always pre-activation: the model's objective
(objectives.py) turns them into probabilities and losses.

A configuration holds the architecture only; how a model trains (epochs, optimiser, schedule, loss
weights) is a training preset's business (emocli/presets/train/).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from emocli.core.types import FeatureKind, Task


class ModalitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dim: int
    kind: FeatureKind = "sequence"


# Aligned CMU-MOSEI as SMILE and MMER were published on it: 60 steps of GloVe (300), COVAREP (74) and
# Facet (35) features, 6 emotions, multi-label.
MOSEI_WIDTHS = {"text": 300, "audio": 74, "visual": 35}


def aligned_mosei(order: tuple[str, ...]) -> dict:
    """The modalities (in a model's own order), classes and task of a reference configuration on aligned MOSEI."""
    return {"modalities": {m: ModalitySpec(dim=MOSEI_WIDTHS[m]) for m in order}, "num_classes": 6, "task": "multi_label"}


class ModelConfig(BaseModel):
    """Base configuration: which modalities with which widths, and the head."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    modalities: dict[str, ModalitySpec]
    num_classes: int
    task: Task = "single_label"
    faithful: bool = False  # reproduce the released code's behaviour (bugs included) where it differs

    @property
    def speaker_parties(self) -> int | None:
        """Conversation models that track speakers: how many parties a dialogue's speakers are folded into
        (inputs["speaker"] then holds each utterance's party). None: the model reads no speakers."""
        return None

    def for_fold(self, fold: int | None) -> ModelConfig:
        """This configuration for one cross-validation fold (CFN-SR's per-fold backbone files); the trainer
        builds each unit's model from it."""
        return self

    def for_inference(self) -> ModelConfig:
        """What rebuilding a trained model needs: no initialisation files (its trained weights replace them)."""
        return self

    @classmethod
    def reference(cls, name: str) -> ModelConfig:
        """A named reference configuration (the original paper's inputs and sizes)."""
        raise ValueError(f"{cls.__name__} has no reference configuration {name!r}")


@dataclass
class ModelOutput:
    logits: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # extra outputs the model's objective reads


class EmotionModel(nn.Module):
    """Base class of registry models: built from their configuration, called with (inputs, masks)."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None) -> ModelOutput:
        raise NotImplementedError

    def predict_logits(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The logits alone, for exported graphs: a model whose forward also computes training-only outputs
        (MMER's masked branch) overrides it to skip them."""
        return self(inputs, masks).logits


def checks_values() -> bool:
    """Whether input checks that read tensor values run: always, except while torch.export traces a model
    (ONNX export), which cannot follow a branch on a value."""
    return not torch.compiler.is_exporting()


class PerturbableModel(EmotionModel):
    """A model trained with adversarial parameter perturbation (MMER): it names the tensors perturbed."""

    def perturbation_parameters(self) -> Iterable[nn.Parameter]:
        raise NotImplementedError


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_parameters_of(model_class: type[EmotionModel], config: ModelConfig) -> int:
    """Parameter count without allocating the weights (built on torch's meta device)."""
    with torch.device("meta"):
        return count_parameters(model_class(config))
