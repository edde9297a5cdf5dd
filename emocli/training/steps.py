"""How one optimisation step runs: the order of forward and backward passes around the model's objective.

The objective (models/objectives.py, named by the model's registration) says what the losses are; a
step says how they are back-propagated. A model's registration names its step:

- "standard": forward, the objective's terms, one backward, clip, step.
- "perturbation" (MMER, Ge et al., WWW 2023; in the order of train_mmer.py in github.com/ShipingGe/MMER at
  commit db38802):
    1. p, p̂ = model(x); ℓ = the objective's terms (ASL(p) + w · ASL(p̂)), one backward. (The released code
       calls backward twice; the accumulated gradient is the same, and under DDP one forward must meet
       exactly one backward.)
    2. for θ in model.perturbation_parameters(): back up θ; θ += ε · g / ‖g‖₂ (per tensor; skipped when the
       norm is 0 or not finite)
    3. p_noise = model(x) (train mode); w_kl · KL(p_noise ‖ p.detach()), backward (gradients accumulate)
    4. restore θ; clip; step.
  ε and w_kl are the step's parameters: `--set step.epsilon=0.5 --set step.kl_weight=1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from emocli.core.errors import ConfigError
from emocli.core.types import real_utterances
from emocli.data.batches import Batch
from emocli.models.base import ModelOutput
from emocli.models.losses import kl_consistency
from emocli.models.objectives import Objective


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
    """The standard step: one backward of the objective's terms; clip; step."""

    Params: ClassVar[type[StepParams]] = StepParams

    def __init__(self, params: dict[str, Any], objective: Objective):
        try:
            self.params = self.Params.model_validate(params)
        except ValidationError as error:
            problems = "; ".join(f"step.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ConfigError(f"invalid train step parameters ({problems})") from None
        self.objective = objective

    def forward(self, model: torch.nn.Module, batch: Batch) -> ModelOutput:
        return model(batch.inputs, batch.masks)

    def train_step(
        self, model: torch.nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, clip: float | None
    ) -> StepOutput:
        output, terms, total = self.backward(model, batch, optimizer)
        self.clip_and_step(model, optimizer, clip)
        return self._output(terms, total, real_utterances(output.logits, batch.utterance_mask))

    def backward(
        self, model: torch.nn.Module, batch: Batch, optimizer: torch.optim.Optimizer
    ) -> tuple[ModelOutput, dict[str, torch.Tensor], torch.Tensor]:
        """Fresh gradients of one forward's weighted loss terms: (output, terms, their sum)."""
        optimizer.zero_grad(set_to_none=True)
        output = self.forward(model, batch)
        terms = self.objective.losses(output, batch.targets, batch.utterance_mask, training=True)
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


class PerturbationStep(TrainStep):
    """MMER's adversarial parameter perturbation (module docstring)."""

    class Params(StepParams):
        epsilon: float = 1.0  # θ ← θ + ε · g / ‖g‖₂ per tensor of `perturbation_parameters()`
        kl_weight: float = 1.0

    def train_step(
        self, model: torch.nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, clip: float | None
    ) -> StepOutput:
        output, terms, total = self.backward(model, batch, optimizer)
        if self.params.epsilon and self.params.kl_weight:
            backup = self._perturb(unwrap(model).perturbation_parameters())
            noisy = self.forward(model, batch).logits
            # Multi-label: softmax across the labels' sigmoid outputs, as coded; single-label: of the logits.
            kl = self.params.kl_weight * kl_consistency(
                noisy, output.logits.detach(), from_logits=self.objective.multi_label
            )
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
                parameter.add_(parameter.grad, alpha=self.params.epsilon / float(norm))
        return backup


STEPS: dict[str, type[TrainStep]] = {"standard": TrainStep, "perturbation": PerturbationStep}
