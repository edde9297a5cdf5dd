"""What every registry model shares: its input description, its configuration base and its output.

Inputs are a dict modality -> tensor, with an optional dict modality -> bool mask (True = real frame):
- kind "vector":   [B, D]               one vector per sample
- kind "sequence": [B, T, D] + mask [B, T]
- kind "clip":     [B, 3, T, H, W]      raw video (CFN-SR's 3D backbone)
Conversation models (input_unit "dialogue") take [B_dialogues, L_utterances, D] per modality (or
[B, L, T, D] for sequence features) and masks["utterance"] [B, L]; their logits are [B, L, C].
Utterance models return logits [B, C]. Logits are always pre-activation: a softmax (single-label)
or sigmoid (multi-label) is applied by the loss and by prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict

from emocli.core.types import FeatureKind, Task


class ModalitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dim: int
    kind: FeatureKind = "sequence"


class ModelConfig(BaseModel):
    """Base configuration: which modalities with which widths, and the head."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    modalities: dict[str, ModalitySpec]
    num_classes: int
    task: Task = "single_label"
    faithful: bool = False  # reproduce the released code's behaviour (bugs included) where it differs


@dataclass
class ModelOutput:
    logits: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # extra outputs the model's losses need


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
