"""One optimisation step per model family: its losses and the order of its backward passes.

A `TrainStep` owns what differs between papers; the loop (trainer.py) owns what does not (epochs,
schedules, selection, checkpoints, DDP). Interface:

    step = make_step(model_name, params, model_config)
    out = step.train_step(model, batch, optimizer, clip_grad_norm)  # forward, losses, backward(s), clip, step
    terms = step.losses(step.forward(model, batch), batch, training=False)  # validation losses
    probs = step.probabilities(logits)  # softmax (single-label) or sigmoid (multi-label)

Families (ARCHITECTURES.md):
- classification (CFN-SR §4.3, and the default): cross entropy; BCE-with-logits for multi-label runs.
- smile (§1.4): BCE against targets smoothed to 0.8/0.2 in training, raw targets in validation.
- spikemo (§2.2): CE + DSC + Soft-HGR on the fused modality features, the weights and the term set from
  the model's `loss_terms` ("ce" only when faithful, as the released loop back-propagates).
- mmer (§3.3): ASL on p and 0.1 × ASL on the masked p̂, one backward; adversarial parameter perturbation
  of the tri-modal encoder by ε · g / ‖g‖ per tensor; KL between the perturbed and the clean prediction,
  backward; restore; clip; step.
Single-label runs of the multi-label models (SMILE/MMER on RAVDESS) use cross entropy in place of
their multi-label loss. Every weight is a step parameter (`--set step.<name>=...`) or, where the model
configuration already holds it, a model parameter (`--set model.<name>=...`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError

from emocli.core.errors import ConfigError
from emocli.models.base import ModelOutput
from emocli.training import losses as L
from emocli.training.data import Batch


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (its own methods live there)."""
    return getattr(model, "module", model)


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class StepOutput:
    losses: dict[str, float]  # each weighted term and "loss", their sum
    logits: torch.Tensor  # [N, C] of the real samples, detached: train metrics come from these


class TrainStep:
    """Cross entropy (single-label) or BCE-with-logits (multi-label); one backward; clip; step."""

    name: ClassVar[str] = "classification"
    paper_threshold: ClassVar[float] = 0.5  # multi-label decision threshold of the family's paper

    class Params(StepParams):
        label_smoothing: float = 0.0

    def __init__(self, params: dict[str, Any], model_config: Any):
        try:
            self.params = self.Params.model_validate(params)
        except ValidationError as error:
            problems = "; ".join(f"step.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ConfigError(f"invalid {self.name} step parameters ({problems})") from None
        self.model_config = model_config
        self.task = model_config.task

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"

    def forward(self, model: torch.nn.Module, batch: Batch) -> ModelOutput:
        return model(batch.inputs, batch.masks)

    def classification_loss(self, logits: torch.Tensor, targets: torch.Tensor, training: bool) -> torch.Tensor:
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.cross_entropy(logits, targets, label_smoothing=self.params.label_smoothing if training else 0.0)

    def losses(self, output: ModelOutput, batch: Batch, training: bool) -> dict[str, torch.Tensor]:
        """Weighted loss terms of one forward; their sum is what is back-propagated."""
        return {"ce" if not self.multi_label else "bce": self.classification_loss(
            batch.flatten(output.logits), batch.targets, training
        )}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def train_step(
        self, model: torch.nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, clip: float | None
    ) -> StepOutput:
        output, terms, total = self.backward(model, batch, optimizer)
        self.clip_and_step(model, optimizer, clip)
        return self._output(terms, total, batch.flatten(output.logits))

    def backward(
        self, model: torch.nn.Module, batch: Batch, optimizer: torch.optim.Optimizer
    ) -> tuple[ModelOutput, dict[str, torch.Tensor], torch.Tensor]:
        """Fresh gradients of one forward's weighted loss terms: (output, terms, their sum)."""
        optimizer.zero_grad(set_to_none=True)
        output = self.forward(model, batch)
        terms = self.losses(output, batch, training=True)
        total = sum(terms.values())
        total.backward()
        return output, terms, total

    @staticmethod
    def clip_and_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, clip: float | None) -> None:
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    @staticmethod
    def _output(terms: dict[str, torch.Tensor], total: torch.Tensor, logits: torch.Tensor) -> StepOutput:
        values = {name: float(value.detach()) for name, value in terms.items()}
        return StepOutput({**values, "loss": float(total.detach())}, logits.detach())


class SmileStep(TrainStep):
    """SMILE (§1.4): BCE on smoothed targets (|y − 0.2|) in training; validation BCE on the raw targets."""

    name = "smile"
    paper_threshold = 0.35

    class Params(StepParams):
        smoothing: float = 0.2

    def classification_loss(self, logits: torch.Tensor, targets: torch.Tensor, training: bool) -> torch.Tensor:
        if self.multi_label:
            return L.smoothed_bce(logits, targets, self.params.smoothing if training else 0.0)
        return F.cross_entropy(logits, targets)


class SpikEmoStep(TrainStep):
    """SpikEmo (§2.2): λ_ce·CE + λ_dsc·DSC + λ_hgr·Soft-HGR(fused text, audio, visual).

    The term set, the weights and DSC's α/γ come from the model configuration (`loss_terms`,
    `loss_weights`, `dsc_alpha`, `dsc_smooth`): faithful mode back-propagates λ_ce·CE alone, as the
    released loop does. Soft-HGR needs at least two fused modalities; with one it is left out. Its form
    (`step.hgr_form`) is MultiEMO's as coded, the one the published weights were set for, in both modes;
    "definition" is the textbook Soft-HGR, whose scale needs weights of its own (`losses.soft_hgr_loss`).
    """

    name = "spikemo"

    class Params(StepParams):
        hgr_form: L.HGRForm = "multiemo"

    def __init__(self, params: dict[str, Any], model_config: Any):
        super().__init__(params, model_config)
        self.dsc = L.MultiDSCLoss(
            alpha=float(getattr(model_config, "dsc_alpha", 1.5)), smooth=float(getattr(model_config, "dsc_smooth", 0.5))
        )
        self.weights = spikemo_loss_weights(model_config)

    def losses(self, output: ModelOutput, batch: Batch, training: bool) -> dict[str, torch.Tensor]:
        logits = batch.flatten(output.logits)
        if self.multi_label:
            return {"bce": F.binary_cross_entropy_with_logits(logits, batch.targets)}
        terms = {}
        if self.weights.get("ce"):
            terms["ce"] = self.weights["ce"] * F.cross_entropy(logits, batch.targets)
        if self.weights.get("dsc"):
            terms["dsc"] = self.weights["dsc"] * self.dsc(logits, batch.targets)
        fused = [batch.flatten(output.aux[k]) for k in ("fused_text", "fused_audio", "fused_visual") if k in output.aux]
        if self.weights.get("hgr") and len(fused) >= 2:
            terms["hgr"] = self.weights["hgr"] * L.soft_hgr_loss(fused, form=self.params.hgr_form)
        if not terms:
            raise ConfigError("SpikEmo's loss has no term with a non-zero weight")
        return terms


def spikemo_loss_weights(model_config: Any) -> dict[str, float]:
    """{"ce": w, ...} for the terms named by `loss_terms` ("ce" or "ce+dsc+hgr"), weighted by `loss_weights`."""
    terms = getattr(model_config, "loss_terms", None) or "ce"
    weights = getattr(model_config, "loss_weights", None) or {}
    return {name: float(weights.get(name, 1.0)) for name in terms.split("+")}


class MMERStep(TrainStep):
    """MMER (§3.3), in the released order:

    1. p, p̂ = model(x)
    2-3. ℓ = ASL(p) + w_mask · ASL(p̂), one backward. (The code calls backward twice; the accumulated
       gradient is the same, and under DDP one forward must meet exactly one backward.)
    4. for θ in model.perturbation_parameters(): back up θ; θ += ε · g / ‖g‖₂ (per tensor; skipped when
       the norm is 0 or not finite)
    5-6. p_noise = model(x) (train mode); w_kl · KL(p_noise ‖ p.detach()), backward (gradients accumulate)
    7. restore θ;  8. clip;  9. step.
    w_mask, ε and w_kl are the model's `masked_loss_weight`, `perturbation_epsilon`, `perturbation_kl_weight`.
    """

    name = "mmer"
    paper_threshold = 0.5

    class Params(StepParams):
        gamma_neg: float = 2.0
        gamma_pos: float = 1.0
        clip: float = 0.05
        eps: float = 1e-5
        scale: float = 1000.0

    def __init__(self, params: dict[str, Any], model_config: Any):
        super().__init__(params, model_config)
        p = self.params
        self.asl = L.AsymmetricLoss(p.gamma_neg, p.gamma_pos, p.clip, p.eps, p.scale)
        self.masked_weight = float(getattr(model_config, "masked_loss_weight", 0.1))
        self.epsilon = float(getattr(model_config, "perturbation_epsilon", 1.0))
        self.kl_weight = float(getattr(model_config, "perturbation_kl_weight", 1.0))

    def classification_loss(self, logits: torch.Tensor, targets: torch.Tensor, training: bool) -> torch.Tensor:
        return self.asl(logits, targets) if self.multi_label else F.cross_entropy(logits, targets)

    def losses(self, output: ModelOutput, batch: Batch, training: bool) -> dict[str, torch.Tensor]:
        terms = {"main": self.classification_loss(output.logits, batch.targets, training)}
        if "masked_logits" in output.aux and self.masked_weight:
            masked = self.classification_loss(output.aux["masked_logits"], batch.targets, training)
            terms["masked"] = self.masked_weight * masked
        return terms

    def train_step(
        self, model: torch.nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, clip: float | None
    ) -> StepOutput:
        output, terms, total = self.backward(model, batch, optimizer)

        if self.epsilon and self.kl_weight:
            backup = self._perturb(unwrap(model).perturbation_parameters())
            noisy = self.forward(model, batch).logits
            # Multi-label: softmax across the labels' sigmoid outputs, as coded; single-label: of the logits.
            kl = self.kl_weight * L.kl_consistency(noisy, output.logits.detach(), from_logits=self.multi_label)
            kl.backward()
            with torch.no_grad():
                for parameter, saved in backup:
                    parameter.copy_(saved)
            terms["kl"] = kl
            total = total + kl
        self.clip_and_step(model, optimizer, clip)
        return self._output(terms, total, output.logits)

    def _perturb(self, parameters) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        backup = []
        with torch.no_grad():
            for parameter in parameters:
                if parameter.grad is None:
                    continue
                norm = torch.linalg.vector_norm(parameter.grad)
                if norm == 0 or not torch.isfinite(norm):
                    continue
                backup.append((parameter, parameter.detach().clone()))
                parameter.add_(parameter.grad, alpha=self.epsilon / float(norm))
        return backup


STEPS: dict[str, type[TrainStep]] = {"smile": SmileStep, "spikemo": SpikEmoStep, "mmer": MMERStep}


def step_class(model_name: str) -> type[TrainStep]:
    return STEPS.get(model_name, TrainStep)


def make_step(model_name: str, params: dict[str, Any], model_config: Any) -> TrainStep:
    return step_class(model_name)(params, model_config)
