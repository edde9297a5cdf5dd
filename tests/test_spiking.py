"""The shared spiking machinery: LIF factory, backends, firing-rate monitor, energy estimate."""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from emocli.models.blocks.spiking import (
    ENERGY_LABEL,
    FiringRateMonitor,
    HeavisideEncoder,
    LIFImplementation,
    SpikingBackend,
    estimate_energy,
    lif,
)


def test_lif_is_multi_step_atan_with_float_tau():
    node = lif(2, 0.8)
    assert node.step_mode == "m" and node.tau == 2.0 and isinstance(node.tau, float)
    assert type(node.surrogate_function).__name__ == "ATan"
    x = torch.tensor([[[0.5, 2.0]]]).expand(3, 1, 2)  # [T, B, D]: H = V + (X - V) / 2, threshold 0.8
    spikes = node(x)
    # step 1: H = 0.25, 1.0 -> second fires; step 2: H = 0.375, 1.0; step 3: H = 0.4375, 1.0
    assert spikes[:, 0, 0].tolist() == [0, 0, 0] and spikes[:, 0, 1].tolist() == [1, 1, 1]


def test_multi_step_equals_single_step_loop():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 2
    single, multi = lif(2.0, 0.5), lif(2.0, 0.5)
    single.step_mode = "s"
    looped = torch.stack([single(x) for _ in range(5)])
    assert torch.equal(looped, multi(x.unsqueeze(0).expand(5, -1, -1)))


def test_backend_names():
    adapter = TypeAdapter(SpikingBackend)
    assert adapter.validate_python("cupy") == "cuda"  # the 0.0.0.0.14 name of the fused kernels
    assert adapter.validate_python("triton") == "triton"
    with pytest.raises(ValidationError):
        adapter.validate_python("numpy")


def test_backend_context_is_a_no_op_on_cpu():
    from spikingjelly._ops.lif import _selection

    before = (_selection._requested, _selection._selections)
    with LIFImplementation("triton").active(torch.device("cpu")):
        assert (_selection._requested, _selection._selections) == before
    assert (_selection._requested, _selection._selections) == before


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_backends_agree_with_torch_on_gpu(backend):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    x = (torch.randn(8, 4, 64, device="cuda") * 2).requires_grad_()
    results = {}
    for name in ("torch", backend):
        node = lif(2.0, 1.0, detach_reset=True).cuda()
        try:
            with LIFImplementation(name).active(x.device):
                out = node(x)
        except RuntimeError as error:  # that kernel is not installed on this machine
            pytest.skip(f"spikingjelly backend {name!r} unavailable: {error}")
        (grad,) = torch.autograd.grad((out * torch.arange(64, device="cuda")).sum(), x)
        results[name] = (out.detach(), grad)
    assert torch.equal(results["torch"][0], results[backend][0])
    assert torch.allclose(results["torch"][1], results[backend][1], atol=1e-5)


def test_heaviside_encoder_forward_and_surrogate_gradient():
    x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    spikes = HeavisideEncoder()(x)
    assert spikes.tolist() == [0.0, 1.0, 1.0]
    spikes.sum().backward()
    # ATan surrogate, alpha = 2: (alpha / 2) / (1 + (pi * alpha * x / 2)^2)
    expected = 1.0 / (1.0 + (torch.pi * x.detach()) ** 2)
    assert torch.allclose(x.grad, expected)


class TinySNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = HeavisideEncoder()
        self.fc1 = nn.Linear(8, 16)
        self.lif1 = lif(2.0, 0.5)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [T, B, 8]
        return self.fc2(self.lif1(self.fc1(x)))


def test_firing_rate_monitor_counts_spikes_and_removes_its_hooks():
    model = TinySNN()
    x = torch.tensor([[1.0, -1.0, 0.5, -0.5]])  # half the entries are >= 0
    with FiringRateMonitor(model) as monitor:
        model.encoder(x)
        model.encoder(-x.abs() - 1)  # no spikes: the rate over both calls is 2 / 8
        model(torch.randn(3, 2, 8))
    rates = monitor.firing_rates()
    assert set(rates) == {"encoder", "lif1"}
    assert rates["encoder"] == pytest.approx(0.25)
    assert 0.0 <= rates["lif1"] <= 1.0
    model.encoder(x.abs())  # after the context: not recorded
    assert monitor.firing_rates()["encoder"] == pytest.approx(0.25)


def test_energy_estimate_counts_macs_for_real_inputs_and_acs_for_spikes():
    torch.manual_seed(0)
    model = TinySNN()
    x = torch.randn(3, 2, 8) * 4
    estimate = estimate_energy(model, x)
    assert estimate.label == ENERGY_LABEL == "compute-only estimate (45 nm, Horowitz 2014)"
    assert estimate.macs == 3 * 2 * 8 * 16  # only fc1 sees real values; fc2 reads spikes (ACs)
    assert estimate.acs > 0
    assert (estimate.e_mac_pj, estimate.e_ac_pj) == (4.6, 0.9)
    assert estimate.energy_pj == pytest.approx(estimate.macs * 4.6 + estimate.acs * 0.9)
    assert estimate.as_dict()["energy_pj"] == pytest.approx(estimate.energy_pj)
