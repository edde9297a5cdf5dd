"""Non-spiking attention building blocks shared by the models.

- `sequence_input`: turn one modality's input (kind "vector" [B, D] or "sequence" [B, T, D] with an optional
  padding mask) into a sequence and a boolean mask (True = real step), the form every attention model reads.
- `sinusoidal_positions`: the fairseq/MulT sinusoidal position table.
- `MulTEncoder`: the MulT-style self-attention transformer encoder (Tsai et al., ACL 2019) that CFN-SR runs
  over its audio stream (modules/transformer.py of github.com/skeletonNN/CFN-SR at commit 2443494): scaled
  input plus sinusoidal positions, embedding dropout, pre-LN layers and a final LayerNorm.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emocli.core.errors import ConfigError
from emocli.models.base import ModalitySpec, checks_values


def sequence_input(
    name: str, spec: ModalitySpec, x: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, D] features and a [B, T] bool mask (True = real) for one modality.

    A vector input [B, D] is a length-1 sequence. Without a mask every step is real. Every sample needs at
    least one real step (attention over nothing is undefined).
    """
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() != 3:
        raise ConfigError(f"modality {name!r}: expected [B, D] or [B, T, D] features, got shape {tuple(x.shape)}")
    if x.shape[-1] != spec.dim:
        raise ConfigError(f"modality {name!r}: the configuration says width {spec.dim}, the input has {x.shape[-1]}")
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    else:
        mask = mask.to(device=x.device, dtype=torch.bool)
        if mask.dim() == 1:  # a vector's mask [B]
            mask = mask.unsqueeze(1)
        if mask.shape != x.shape[:2]:
            raise ConfigError(
                f"modality {name!r}: mask shape {tuple(mask.shape)} does not match the features' {tuple(x.shape[:2])}"
            )
    if checks_values() and not bool(mask.any(dim=1).all()):
        raise ConfigError(f"modality {name!r}: a sample has no real step (its mask row is all False)")
    return x, mask


def sinusoidal_positions(length: int, dim: int, *, device: torch.device | None = None) -> torch.Tensor:
    """The fairseq sinusoidal table MulT uses, [length, dim] (dim even).

    Layout as in fairseq (and so MulT): sines in the first half of the channels, cosines in the second,
    frequencies 10000^(-i / (dim/2 - 1)), and positions counted from 1 (position 0 is fairseq's padding index).
    """
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(1, length + 1, device=device, dtype=torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class MulTEncoder(nn.Module):
    """MulT's self-attention transformer encoder over [B, T, dim].

    x * sqrt(dim) + sinusoidal positions -> dropout(embed_dropout) -> `layers` pre-LN encoder layers -> LayerNorm.
    MulT has separate attention, ReLU and residual dropouts; CFN-SR sets all three to 0.1, which is exactly
    torch's single-`dropout` `nn.TransformerEncoderLayer(norm_first=True)` (same parameters too: in-projection
    with bias, output projection, FFN of 4 x dim, two LayerNorms).
    """

    def __init__(
        self, dim: int, heads: int, layers: int, *, embed_dropout: float, dropout: float, causal: bool
    ) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"MulTEncoder needs an even width for its sine/cosine positions, not {dim}")
        self.dim = dim
        self.causal = causal
        self.embed_dropout = nn.Dropout(embed_dropout)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=dropout, activation="relu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, dim], mask [B, T] (True = real) -> [B, T, dim]."""
        steps = x.shape[1]
        x = math.sqrt(self.dim) * x + sinusoidal_positions(steps, self.dim, device=x.device).to(x.dtype)
        x = self.embed_dropout(x)
        future = None
        if self.causal:  # True = may not attend: each step sees itself and the past only
            future = torch.ones(steps, steps, dtype=torch.bool, device=x.device).triu(diagonal=1)
        padding = None if mask is None else ~mask
        return self.layers(x, mask=future, src_key_padding_mask=padding, is_causal=self.causal)
