"""A linear probe: multinomial logistic regression on the (pooled) features of each modality, concatenated.

The floor every published model is compared against (`emo baseline`, `emo cross-corpus floor`) as a model that
trains, evaluates, exports and predicts like the others. It is also what generalises best across corpora on
Whisper's features (docs/RESULTS.md): with a few thousand clips from a few dozen speakers, a model with more
freedom learns the speakers and studios more than the emotions. `hidden > 0` adds one hidden layer (a small
MLP probe), for comparison.

Forward: each modality's sequence is averaged over its real frames (a vector is used as it is), the vectors are
concatenated, dropped out (`dropout`) and mapped to one logit per class (through the hidden layer where there
is one). Regularisation is the optimiser's weight decay (L2), as the floor's C is.
"""

from __future__ import annotations

import torch
from torch import nn

from emocli.models.base import EmotionModel, ModelConfig, ModelOutput
from emocli.models.blocks.attention import sequence_input
from emocli.models.objectives import ClassificationObjective
from emocli.models.registry import register_model


class LinearConfig(ModelConfig):
    hidden: int = 0  # 0: logistic regression; N: one hidden layer of N units (GELU)
    dropout: float = 0.0  # on the concatenated input


@register_model(
    name="linear",
    title="Linear probe: logistic regression on pooled features",
    paper="the floor of every comparison",
    task="single_label",
    input_unit="utterance",
    modalities=("text", "audio", "visual"),
    input_kinds=("sequence", "vector"),
    config_class=LinearConfig,
    objective=ClassificationObjective,
    preset="linear",
    small={"hidden": 0},
)
class LinearProbe(EmotionModel):
    config_class = LinearConfig

    def __init__(self, config: LinearConfig) -> None:
        super().__init__(config)
        width = sum(spec.dim for spec in config.modalities.values())
        self.dropout = nn.Dropout(config.dropout)
        if config.hidden:
            self.head = nn.Sequential(nn.Linear(width, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.num_classes))
        else:
            self.head = nn.Linear(width, config.num_classes)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None) -> ModelOutput:
        pooled = []
        for name, spec in self.config.modalities.items():
            x, mask = sequence_input(name, spec, inputs[name], (masks or {}).get(name))
            weights = mask.unsqueeze(-1).to(x.dtype)
            pooled.append((x * weights).sum(dim=1) / weights.sum(dim=1))
        return ModelOutput(self.head(self.dropout(torch.cat(pooled, dim=-1))))
