"""MMER: multi-modal multi-label emotion recognition with adversarial temporal masking and adversarial
parameter perturbation (Ge et al., WWW 2023). Released code: github.com/ShipingGe/MMER (commit db38802).

Forward, for each configured modality m (any subset, any widths, sequences with padding masks or
vectors as length-1 sequences):
  X_m = Dropout(LayerNorm(Linear(x_m)))                      projection to d, no positional encoding
  H_m = E_m(X_m)                                             uni-modal encoder: n_en post-LN layers + LayerNorm
  M   = E_fusion([H_1; H_2; ...])                            the "tri-modal" encoder over the time-concatenation
  p   = Dropout(Linear_1(LN(Decoder(label queries, M))))    one learned query per class -> one logit each
Adversarial temporal masking, in the same forward:
  s_m = sigmoid(Linear_1(H_m)), reversed-gradient (λ = 0.1), soft bottom-k mask A_m by entropic optimal
  transport (k = 24, ε = 0.1, 100 Sinkhorn iterations, implicit backward), X̂_m = (1 - A_m) ⊙ X_m re-encoded
  by the same encoders and decoder -> p̂ = aux["masked_logits"].
The training objective (asymmetric loss on p and 0.1 x on p̂) is `MMERObjective`; the adversarial
parameter perturbation of `perturbation_parameters()` with its KL term is the "perturbation" train step;
the optimiser and schedule are the `mmer` training preset's.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import field_validator
from torch import nn
from torch.utils.checkpoint import checkpoint

from emocli.models.base import ModelConfig, ModelOutput, PerturbableModel, aligned_mosei
from emocli.models.blocks.attention import sequence_input
from emocli.models.losses import AsymmetricLoss
from emocli.models.objectives import Objective, ObjectiveParams
from emocli.models.registry import register_model


class MMERConfig(ModelConfig):
    # Architecture. The tri-modal encoder has n_en layers like each uni-modal encoder.
    d_model: int = 512
    heads: int = 8
    ffn_dim: int = 1024
    dropout: float = 0.1
    encoder_layers: int = 3  # n_en
    decoder_layers: int = 1  # n_de
    logit_dropout: float = 0.1  # the released head puts a Dropout after Linear(d -> 1)

    # Adversarial temporal masking.
    mask_k: int | float = 24  # an int: frames to mask; a float in (0, 1): that fraction of each sample's real frames
    sinkhorn_epsilon: float = 0.1
    sinkhorn_iterations: int = 100
    grl_lambda: float = 0.1
    # Activation checkpointing of every encoder layer in training: a layer keeps only its input and is recomputed
    # in the backward pass (the same gradients, dropout included; benchmarks/memory.py). MOSEI's batch of 128
    # keeps ~150 MB of activations per sample without it.
    encoder_checkpointing: bool = True
    # The released code divides the transport cost by its maximum over the whole batch, so one sample's mask
    # depends on the others; "sample" divides by each sample's own maximum. None: "batch" when faithful.
    topk_cost_norm: Literal["sample", "batch"] | None = None

    @field_validator("mask_k")
    @classmethod
    def _check_mask_k(cls, value: int | float) -> int | float:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("a fractional mask_k must lie in (0, 1); give a whole number of frames as an int")
        if isinstance(value, int) and value < 0:
            raise ValueError("mask_k must not be negative")
        return value

    @property
    def cost_norm(self) -> Literal["sample", "batch"]:
        if self.topk_cost_norm is not None:
            return self.topk_cost_norm
        return "batch" if self.faithful else "sample"

    @classmethod
    def reference(cls, name: str) -> MMERConfig:
        if name == "mosei":  # the released model's modality order: text, visual, audio
            return cls(**aligned_mosei(("text", "visual", "audio")))
        raise ValueError(f"MMER has no reference configuration {name!r}")


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -λ (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambd * grad, None


def reverse_gradient(x: torch.Tensor, lambd: float) -> torch.Tensor:
    return GradientReversal.apply(x, lambd)


def sinkhorn_plan(
    cost: torch.Tensor, mu: torch.Tensor, nu: torch.Tensor, *, epsilon: float, iterations: int
) -> torch.Tensor:
    """The entropic optimal-transport plan Γ [B, n, m] of cost [B, n, m] between the masses mu [B, n] and
    nu [B, m], by log-domain Sinkhorn. Zero masses (padding, k = 0) get the log of the smallest positive
    float: finite, and their plan is ~0. Differentiable by autograd through the unrolled iterations (a
    reference: `ImplicitSinkhorn` is the same forward with the implicit backward).
    """
    tiny = torch.finfo(cost.dtype).tiny
    log_mu, log_nu = torch.log(mu.clamp_min(tiny)), torch.log(nu.clamp_min(tiny))
    f = torch.zeros_like(log_mu)
    g = torch.zeros_like(log_nu)
    for _ in range(iterations):
        f = epsilon * (log_mu - torch.logsumexp((g.unsqueeze(1) - cost) / epsilon, dim=2))
        g = epsilon * (log_nu - torch.logsumexp((f.unsqueeze(2) - cost) / epsilon, dim=1))
    return torch.exp((f.unsqueeze(2) + g.unsqueeze(1) - cost) / epsilon)


class ImplicitSinkhorn(torch.autograd.Function):
    """`sinkhorn_plan` for two anchors (m = 2) with the implicit backward of Xie et al., "Differentiable
    top-k with optimal transport" (NeurIPS 2020), as MMER's released `utils/topk.py` uses it: the gradient of
    the converged plan, from differentiating its marginal constraints, instead of back-propagating through
    every iteration (whose graph holds all of them and is the gradient of the truncated iteration).

    With W = ∂L/∂Γ ⊙ Γ, a = W·1 and b = Wᵀ·1, and the first column's dual fixed by the gauge:
        κ = ν₀ − Σᵢ Γᵢ₀² / μᵢ,   y = (b₀ − Σᵢ Γᵢ₀ aᵢ / μᵢ) / κ,   xᵢ = (aᵢ − Γᵢ₀ y) / μᵢ,
        ∂L/∂Cᵢⱼ = (Γᵢⱼ (xᵢ + y [j = 0]) − Wᵢⱼ) / ε.
    Rows of zero mass (padding) get no gradient; a sample whose κ vanishes (a hard plan, or k = 0) gets none.
    Two anchors make κ a scalar per sample, where the released code inverts a [k, k] matrix.
    """

    @staticmethod
    def forward(ctx, cost: torch.Tensor, mu: torch.Tensor, nu: torch.Tensor, epsilon: float, iterations: int):
        with torch.no_grad():
            # The exponential domain is ~10x faster; it needs a kernel e^(-C/ε) far from underflow (C <= 1 here).
            if float(cost.amax()) / epsilon < -math.log(torch.finfo(cost.dtype).tiny) / 2:
                plan = _sinkhorn_scaling(cost, mu, nu, epsilon, iterations)
            else:
                plan = sinkhorn_plan(cost, mu, nu, epsilon=epsilon, iterations=iterations)
            plan = plan * (mu > 0).unsqueeze(-1)
        ctx.save_for_backward(plan, mu, nu)
        ctx.epsilon = epsilon
        return plan

    @staticmethod
    def backward(ctx, grad_plan: torch.Tensor):
        plan, mu, nu = ctx.saved_tensors
        weighted = grad_plan * plan  # W
        a, b = weighted.sum(dim=2), weighted.sum(dim=1)  # [B, n], [B, 2]
        inv_mu = torch.where(mu > 0, 1.0 / mu.clamp_min(torch.finfo(mu.dtype).tiny), 0.0)
        first = plan[:, :, 0]
        kappa = nu[:, 0] - (first.square() * inv_mu).sum(dim=1)
        rhs = b[:, 0] - (first * a * inv_mu).sum(dim=1)
        y = torch.where(kappa > 0, rhs / kappa.clamp_min(torch.finfo(kappa.dtype).tiny), 0.0)  # [B]
        x = (a - first * y.unsqueeze(1)) * inv_mu  # [B, n]
        dual = torch.stack([y, torch.zeros_like(y)], dim=1)  # [B, 2]
        grad_cost = (plan * (x.unsqueeze(2) + dual.unsqueeze(1)) - weighted) / ctx.epsilon
        return grad_cost, None, None, None, None


def _sinkhorn_scaling(cost: torch.Tensor, mu: torch.Tensor, nu: torch.Tensor, epsilon: float, iterations: int):
    """`sinkhorn_plan`'s iterations in the exponential domain (u = e^(f/ε), v = e^(g/ε), kernel e^(-C/ε)), as the
    released forward runs them for ε > 0.01: no logarithm per iteration."""
    kernel = torch.exp(-cost / epsilon)  # [B, n, m]
    v = torch.ones_like(nu)
    for _ in range(iterations):
        u = mu / (kernel @ v.unsqueeze(-1)).squeeze(-1)
        v = nu / (u.unsqueeze(1) @ kernel).squeeze(1)
    return u.unsqueeze(-1) * kernel * v.unsqueeze(1)


def soft_bottom_k(
    scores: torch.Tensor,
    real: torch.Tensor,
    k: int | float,
    *,
    epsilon: float,
    iterations: int,
    cost_norm: Literal["sample", "batch"] = "sample",
    backward: Literal["implicit", "unrolled"] = "implicit",
) -> torch.Tensor:
    """A soft mask A in [0, 1] of the k LOWEST scores per sample (soft top-k by entropic optimal transport,
    Xie et al. 2020), differentiable in the scores.

    scores [B, n], real [B, n] (True = real step). Each real step carries mass 1/n_b (n_b = its sample's real
    steps) to two anchors, 0 and 1, with cost (s - a)² and target masses k_b/n_b and 1 - k_b/n_b; the mask is
    A = n_b · Γ[:, :, anchor 0], so ΣA = k_b and the steps nearest 0 get A ≈ 1. k_b is k (an int) or k · n_b
    (a fraction), at most n_b - 1: a sample keeps at least one unmasked step, so a length-1 sequence (a
    vector) is never masked. Padding gets A = 0. The cost is divided by its maximum, detached as in the
    released code (a constant scale, not a path for the gradient). backward: "implicit" (`ImplicitSinkhorn`),
    or "unrolled" through the iterations (a reference for tests and benchmarks).
    """
    real_f = real.to(scores.dtype)
    n = real_f.sum(dim=1, keepdim=True)  # [B, 1]
    k_b = (k * n if isinstance(k, float) else torch.full_like(n, float(k))).minimum(n - 1)
    anchors = torch.tensor([0.0, 1.0], dtype=scores.dtype, device=scores.device)
    cost = (scores.unsqueeze(-1) - anchors).pow(2) * real_f.unsqueeze(-1)  # [B, n, 2]; padding costs 0
    scale = cost.amax(dim=(1, 2), keepdim=True) if cost_norm == "sample" else cost.amax()
    cost = cost / scale.detach().clamp_min(torch.finfo(scores.dtype).tiny)
    mu = real_f / n.clamp_min(1)  # [B, n]
    nu = torch.cat([k_b, n - k_b], dim=1) / n.clamp_min(1)  # [B, 2]
    if backward == "implicit":
        plan = ImplicitSinkhorn.apply(cost, mu, nu, epsilon, iterations)
    else:
        plan = sinkhorn_plan(cost, mu, nu, epsilon=epsilon, iterations=iterations)
    return n * plan[:, :, 0] * real_f


def _encoder(config: MMERConfig) -> nn.TransformerEncoder:
    """n_en post-LN encoder layers (self-attention -> add & LN -> ReLU FFN -> add & LN) plus a final LN."""
    layer = nn.TransformerEncoderLayer(
        config.d_model, config.heads, config.ffn_dim, config.dropout, activation="relu", batch_first=True
    )
    return nn.TransformerEncoder(
        layer, config.encoder_layers, norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False
    )


class MMERObjective(Objective):
    """MMER's loss: the asymmetric loss (×1000) on p plus `masked_weight` × the same on the masked p̂; cross
    entropy for single-label data. The adversarial parameter perturbation and its KL term are the train
    step's ("perturbation", training/steps.py)."""

    paper_threshold = 0.5

    class Params(ObjectiveParams):
        gamma_neg: float = 2.0
        gamma_pos: float = 1.0
        clip: float = 0.05
        eps: float = 1e-5
        scale: float = 1000.0
        masked_weight: float = 0.1  # ℓ₂ = 0.1 · ASL(p̂, y)

    def __init__(self, params: dict, config: ModelConfig):
        super().__init__(params, config)
        p = self.params
        self.asl = AsymmetricLoss(p.gamma_neg, p.gamma_pos, p.clip, p.eps, p.scale)

    def _classification(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.asl(logits, targets) if self.multi_label else F.cross_entropy(logits, targets)

    def losses(
        self, output: ModelOutput, targets: torch.Tensor, utterances: torch.Tensor | None, training: bool
    ) -> dict[str, torch.Tensor]:
        terms = {"main": self._classification(output.logits, targets)}
        if "masked_logits" in output.aux and self.params.masked_weight:
            terms["masked"] = self.params.masked_weight * self._classification(output.aux["masked_logits"], targets)
        return terms


@register_model(
    name="mmer",
    title="MMER: adversarial temporal masking and parameter perturbation",
    paper="WWW 2023",
    task="multi_label",
    input_unit="utterance",
    modalities=("text", "audio", "visual"),
    input_kinds=("sequence", "vector"),
    config_class=MMERConfig,
    objective=MMERObjective,
    train_step="perturbation",
    preset="mmer",
    references={"mosei": 28_610_000},
    small={"d_model": 16, "heads": 2, "ffn_dim": 32, "encoder_layers": 1, "mask_k": 2, "sinkhorn_iterations": 20},
    reference_tolerance=5_000,
)
class MMER(PerturbableModel):
    def __init__(self, config: MMERConfig) -> None:
        super().__init__(config)
        d = config.d_model
        names = list(config.modalities)
        self.projections = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(spec.dim, d), nn.LayerNorm(d), nn.Dropout(config.dropout))
                for m, spec in config.modalities.items()
            }
        )
        self.encoders = nn.ModuleDict({m: _encoder(config) for m in names})
        # The paper's tri-modal encoder; no modality embedding, as released.
        self.fusion_encoder = _encoder(config)
        self.label_queries = nn.Embedding(config.num_classes, d)
        decoder_layer = nn.TransformerDecoderLayer(
            d, config.heads, config.ffn_dim, config.dropout, activation="relu", batch_first=True
        )
        self.decoder = nn.TransformerDecoder(decoder_layer, config.decoder_layers, norm=nn.LayerNorm(d))
        self.classifier = nn.Linear(d, 1)  # shared by the label queries: one logit per class
        self.logit_dropout = nn.Dropout(config.logit_dropout)
        self.scorers = nn.ModuleDict({m: nn.Linear(d, 1) for m in names})

        for parameter in self.parameters():  # Xavier-uniform on every matrix, embeddings included
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def perturbation_parameters(self) -> list[nn.Parameter]:
        """What adversarial parameter perturbation moves: every parameter of the tri-modal encoder."""
        return list(self.fusion_encoder.parameters())

    def _encode(self, encoder: nn.TransformerEncoder, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        if not (self.config.encoder_checkpointing and torch.is_grad_enabled()):
            return encoder(x, src_key_padding_mask=padding)
        for layer in encoder.layers:  # what TransformerEncoder.forward runs (its fast path is inference-only)
            x = checkpoint(layer, x, src_key_padding_mask=padding, use_reentrant=False)
        return encoder.norm(x)

    def _decode(self, encoded: dict[str, torch.Tensor], real: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tri-modal encoder over the time-concatenated encodings, then the label-query decoder -> [B, C]."""
        padding = ~torch.cat([real[m] for m in encoded], dim=1)
        fused = self._encode(self.fusion_encoder, torch.cat(list(encoded.values()), dim=1), padding)
        queries = self.label_queries.weight.unsqueeze(0).expand(fused.shape[0], -1, -1)
        labels = self.decoder(queries, fused, memory_key_padding_mask=padding)
        return self.logit_dropout(self.classifier(labels)).squeeze(-1)

    def _clean(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
        """The prediction p, with the projections, encodings and real-frame masks the masked branch reuses."""
        projected, real = {}, {}
        for m, spec in self.config.modalities.items():
            x, real[m] = sequence_input(m, spec, inputs[m], masks.get(m))
            projected[m] = self.projections[m](x)
        encoded = {m: self._encode(self.encoders[m], projected[m], ~real[m]) for m in projected}
        return self._decode(encoded, real), projected, encoded, real

    def predict_logits(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self._clean(inputs, masks or {})[0]

    def forward(
        self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None = None
    ) -> ModelOutput:
        """inputs[m] [B, T_m, D_m] or [B, D_m], masks[m] [B, T_m] -> logits [B, C], aux["masked_logits"] [B, C]."""
        config = self.config
        logits, projected, encoded, real = self._clean(inputs, masks or {})

        # Adversarial temporal masking: the scorer (and through it the encoder) gets the reversed gradient
        # of the masked loss, so it learns to mask the frames that matter most for the masked prediction.
        masked = {}
        for m in projected:
            scores = torch.sigmoid(self.scorers[m](encoded[m])).squeeze(-1)
            scores = reverse_gradient(scores, config.grl_lambda)
            mask = soft_bottom_k(
                scores,
                real[m],
                config.mask_k,
                epsilon=config.sinkhorn_epsilon,
                iterations=config.sinkhorn_iterations,
                cost_norm=config.cost_norm,
            )
            masked[m] = (1.0 - mask).unsqueeze(-1) * projected[m]
        masked_encoded = {m: self._encode(self.encoders[m], masked[m], ~real[m]) for m in masked}
        masked_logits = self._decode(masked_encoded, real)
        return ModelOutput(logits=logits, aux={"masked_logits": masked_logits})
