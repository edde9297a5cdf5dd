"""Spiking machinery shared by SMILE and SpikEmo (spikingjelly 2.x, activation_based API).

- `lif`: the LIF neuron both papers use (multi-step, ATan surrogate, hard reset to 0).
- `HeavisideEncoder`: the surrogate function used on its own as a spike encoder (SpikEmo's Model/spikformer.py).
- `LIFImplementation`: which spikingjelly LIF kernel runs on CUDA ("torch", "cuda", "triton", "auto").
- `FiringRateMonitor`: firing rate per spiking layer, from forward hooks.
- `estimate_energy` / `EnergyEstimate`: compute-only energy from spikingjelly's MAC and AC counters.
- `SpikingModel`: the mixin that gives a model `spiking_modules()`, `monitor_spikes()` and `energy()`.

Backends. spikingjelly 0.0.0.0.14 took `backend=` per neuron ("torch" or "cupy"). 2.0.0 removed the
argument (passing it raises TypeError): on CPU it always runs its torch reference, and on CUDA
it picks one implementation per process, from the environment variable SJ_LIF_CUDA_IMPLEMENTATION
(auto|cuda|triton|torch) read at import time. The old "cupy" kernels became the native "cuda" ones, so
"cupy" is accepted as an alias of "cuda". To make the backend a per-model setting, `LIFImplementation`
swaps spikingjelly's LIF selection for the duration of a forward pass on CUDA, with selections cached on
the model's own object. The backward pass runs after that context has closed and uses spikingjelly's
automatic choice; every implementation shares the operator's schema and saved state, so the gradients
are the same maths (the agreement test in tests/test_spiking.py compares them on a GPU).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Literal

import torch
from pydantic import BeforeValidator
from torch import nn

if TYPE_CHECKING:
    from spikingjelly.activation_based import neuron

from emocli.models.base import EmotionModel

Backend = Literal["torch", "cuda", "triton", "auto"]


def _backend_alias(value: Any) -> Any:
    # "cupy" is the 0.0.0.0.14 name of the fused CUDA kernels; 2.x calls them "cuda".
    return "cuda" if value == "cupy" else value


SpikingBackend = Annotated[Backend, BeforeValidator(_backend_alias)]


def lif(tau: float, v_threshold: float, detach_reset: bool = False) -> neuron.LIFNode:
    """A multi-step LIF neuron (time-first [T, ...] input) with the ATan surrogate (alpha = 2).

    Both papers use decay_input=True and a hard reset to 0 (spikingjelly's defaults).
    spikingjelly is imported here, when a spiking model is built: its import pulls in torch._inductor
    (seconds), which listing models or predicting with a non-spiking one should not pay.
    """
    from spikingjelly.activation_based import neuron, surrogate

    return neuron.LIFNode(
        tau=float(tau),  # 2.x asserts a Python float > 1
        v_threshold=float(v_threshold),
        surrogate_function=surrogate.ATan(),
        detach_reset=detach_reset,
        step_mode="m",
    )


class HeavisideEncoder(nn.Module):
    """x -> (x >= 0) in the forward pass, the ATan surrogate gradient in the backward pass.

    SpikEmo applies `surrogate.ATan()` directly to real-valued features as its spike encoder (Model/spikformer.py
    of github.com/Yu-xm/SpikEmo at commit a3d2791);
    a module of its own lets the firing-rate monitor and the benchmark see it.
    """

    def __init__(self) -> None:
        from spikingjelly.activation_based import surrogate

        super().__init__()
        self.surrogate = surrogate.ATan()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.surrogate(x)


def is_spiking_layer(module: nn.Module) -> bool:
    """True for the layers whose output is a spike tensor: neurons and spike encoders."""
    from spikingjelly.activation_based import neuron

    return isinstance(module, (neuron.BaseNode, HeavisideEncoder))


def reset_state(module: nn.Module) -> None:
    """Clear the membrane potentials of every neuron in `module`."""
    from spikingjelly.activation_based import functional

    functional.reset_net(module)


class LIFImplementation:
    """A model's choice of spikingjelly's LIF kernel on CUDA (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._selections: dict[int, Any] = {}  # spikingjelly's per-device selection for this backend

    @contextmanager
    def active(self, device: torch.device) -> Iterator[None]:
        if device.type != "cuda" or self.backend == "auto":
            yield  # CPU always runs the torch reference; "auto" is spikingjelly's own choice
            return
        from spikingjelly._ops.lif import _selection  # private: 2.x has no public per-call switch

        saved = (_selection._requested, _selection._selections)
        _selection._requested, _selection._selections = self.backend, self._selections
        try:
            yield
        finally:
            _selection._requested, _selection._selections = saved


class FiringRateMonitor:
    """Firing rate of every spiking layer of a model, over the forward passes run inside the context.

    with model.monitor_spikes() as monitor:
        model(inputs, masks)
    monitor.firing_rates()  # {"snn.audio.lif1": 0.12, ...}: fraction of ones among the layer's outputs

    A layer called several times (SpikEmo's shared Spikformer runs once per modality) accumulates over
    all its calls. Padded positions count like real ones.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = {name: m for name, m in model.named_modules() if is_spiking_layer(m)}
        self._spikes: dict[str, torch.Tensor] = {}
        self._elements: dict[str, int] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FiringRateMonitor:
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            spikes = output.detach().float().sum()
            self._spikes[name] = self._spikes.get(name, 0) + spikes
            self._elements[name] = self._elements.get(name, 0) + output.numel()

        return record

    def firing_rates(self) -> dict[str, float]:
        """Layer name -> rate in [0, 1]; layers that did not run in the context are left out."""
        return {name: float(self._spikes[name]) / self._elements[name] for name in self._spikes}


ENERGY_LABEL = "compute-only estimate (45 nm, Horowitz 2014)"


@dataclass(frozen=True)
class EnergyEstimate:
    """Compute energy of one forward pass: MACs (real-valued operands) x 4.6 pJ + ACs x 0.9 pJ.

    Counts come from spikingjelly's `MACCounter` and `ACCounter`: a matrix product with a spike operand
    counts one AC per active synapse, one with real operands counts MACs (so the encoding layer is a MAC
    layer, as the convention wants), and element-wise additions, including the neurons' membrane
    updates, count as ACs. Memory traffic is excluded: this is the field's convention, not a hardware
    measurement (see Yan et al., arXiv 2409.08290, on why that matters).
    """

    macs: int
    acs: int
    e_mac_pj: float
    e_ac_pj: float
    label: str = ENERGY_LABEL

    @property
    def mac_energy_pj(self) -> float:
        return self.macs * self.e_mac_pj

    @property
    def ac_energy_pj(self) -> float:
        return self.acs * self.e_ac_pj

    @property
    def energy_pj(self) -> float:
        return self.mac_energy_pj + self.ac_energy_pj

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "energy_pj": self.energy_pj}


def estimate_energy(model: nn.Module, *args: Any, **kwargs: Any) -> EnergyEstimate:
    """Run `model(*args, **kwargs)` once without gradients and count its MACs and ACs."""
    from spikingjelly.activation_based.op_counter import (
        ACCounter,
        DispatchCounterMode,
        MACCounter,
        SimpleEnergyCostConfig,
    )

    macs, acs = MACCounter(), ACCounter()
    with torch.no_grad(), DispatchCounterMode([macs, acs]):
        model(*args, **kwargs)
    cost = SimpleEnergyCostConfig.fp32()  # Horowitz 2014, 45 nm, 32-bit float: 4.6 / 0.9 pJ
    return EnergyEstimate(
        macs=int(macs.get_total()), acs=int(acs.get_total()), e_mac_pj=cost.e_mac_pj, e_ac_pj=cost.e_ac_pj
    )


class SpikingModel(EmotionModel):
    """Base of the spiking models: state reset, spiking-module listing, firing rates, energy."""

    def spiking_modules(self) -> dict[str, nn.Module]:
        """The blocks that run spiking dynamics (for benchmarks that time them separately)."""
        raise NotImplementedError

    def reset_spiking_state(self) -> None:
        """Clear every membrane potential: called at the start of each forward, so nothing leaks
        between batches."""
        reset_state(self)

    def monitor_spikes(self) -> FiringRateMonitor:
        return FiringRateMonitor(self)

    def energy(self, *args: Any, **kwargs: Any) -> EnergyEstimate:
        """Compute-only energy of one forward pass on these inputs (see `EnergyEstimate`)."""
        return estimate_energy(self, *args, **kwargs)
