"""SMILE (github.com/sleepy2333/SMILE, commit 336bca1): reference count, shapes, gradients, state, batch
(in)dependence, spikes."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

from emocli.models.base import count_parameters
from emocli.models.registry import get_model
from emocli.models.smile import SMILE, SMILEConfig, SpikingBranch

WIDTHS = {"text": 12, "audio": 7, "visual": 5}
SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations(WIDTHS, r)]


def small_config(modalities=tuple(WIDTHS), kind="sequence", **overrides) -> SMILEConfig:
    settings = dict(
        modalities={m: {"dim": WIDTHS[m], "kind": kind} for m in modalities},
        num_classes=4,
        task="multi_label",
        d_model=8,
        heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        snn_hidden=16,
    )
    settings.update(overrides)
    return SMILEConfig(**settings)


def no_dropout(**overrides) -> dict:
    zero = ("text_input_dropout", "dropout", "text_attention_dropout", "decoder_dropout", "logit_dropout")
    return {name: 0.0 for name in zero} | overrides


def batch(b=4, t=6, modalities=tuple(WIDTHS), seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(b, t, WIDTHS[m], generator=generator) * 2 for m in modalities}
    masks = {m: torch.ones(b, t, dtype=torch.bool) for m in modalities}
    for m in modalities:
        masks[m][1, t - 2 :] = False  # sample 1 is shorter
    return inputs, masks


def test_reference_parameter_count():
    entry = get_model("smile")
    config = entry.config("mosei")
    assert (config.softmax_axis, config.threshold_mode) == ("batch", "every_forward")
    model = entry.build(config)
    assert count_parameters(model) == entry.references["mosei"] == 185_793
    # the dead token-type embeddings: 11 encoders x 32 x 30, absent from the default build
    default = entry.build(entry.config("mosei", faithful=False))
    assert count_parameters(model) - count_parameters(default) == 11 * 32 * 30


@pytest.mark.parametrize("modalities", SUBSETS)
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_output_shapes_for_every_subset_and_head(modalities, task):
    model = SMILE(small_config(modalities, task=task))
    inputs, masks = batch(modalities=modalities)
    assert model(inputs, masks).logits.shape == (4, 4)
    vectors = SMILE(small_config(modalities, kind="vector", task=task))
    assert vectors({m: x[:, 0] for m, x in inputs.items()}).logits.shape == (4, 4)


@pytest.mark.parametrize("faithful", [False, True])
def test_gradients_reach_every_trainable_parameter(faithful):
    torch.manual_seed(0)
    model = SMILE(small_config(faithful=faithful, threshold_update="frozen"))
    model.threshold.fill_(0.2)  # a low threshold so that both LIF layers fire and pass weight gradients
    inputs, masks = batch()
    model(inputs, masks).logits.sum().backward()
    dead = {n for n in dict(model.named_parameters()) if "token_type" in n}
    assert bool(dead) == faithful  # the zero padding-index embedding exists only in the faithful build
    for name, p in model.named_parameters():
        received = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert received != (name in dead), name


def test_multi_step_branch_reproduces_the_single_step_loop():
    """The released snn module (model.py): single-step LIFs called T = 5 times on one input without reset."""
    torch.manual_seed(0)
    branch = SpikingBranch(d=8, hidden=16, steps=5, tau=2.0)
    released = copy.deepcopy(branch)
    released.lif1.step_mode = released.lif2.step_mode = "s"
    released.lif1.v_threshold = released.lif2.v_threshold = 0.3
    x = (torch.randn(3, 6, 8) * 2).requires_grad_()
    rate = branch(x, 0.3)
    total = sum(released.lif2(released.fc2(released.lif1(released.fc1(x)))) for _ in range(5))
    assert torch.equal(rate, total / 5)
    assert 0 < rate.mean() < 1
    (grad_multi,) = torch.autograd.grad(rate.sum(), x)
    (grad_single,) = torch.autograd.grad((total / 5).sum(), x)
    assert torch.allclose(grad_multi, grad_single, atol=1e-6)


def test_threshold_is_the_ratio_of_consecutive_cross_entropies():
    model = SMILE(small_config())
    first, masks = batch(seed=1)
    second, _ = batch(seed=2)

    def ce(inputs):
        audio, visual = model.projections["audio"](inputs["audio"]), model.projections["visual"](inputs["visual"])
        real = masks["audio"] & masks["visual"]
        return F.cross_entropy(audio[real], visual[real].argmax(-1))

    model.train()
    with torch.no_grad():
        model(first, masks)
        assert float(model.threshold) == pytest.approx(float(ce(first)))  # CE_0 = 1
        model(second, masks)
        assert float(model.threshold) == pytest.approx(float(ce(second) / ce(first)))
    assert {"threshold", "previous_ce"} <= set(model.state_dict())  # saved with the model


def test_default_eval_is_a_fixed_function_and_state_does_not_leak():
    torch.manual_seed(0)
    model = SMILE(small_config()).eval()
    model.threshold.fill_(0.3)
    a, masks = batch(seed=1)
    b, _ = batch(seed=2)
    with torch.no_grad():
        first = model(a, masks).logits
        model(b, masks)  # a different batch in between: membranes and threshold must not carry over
        again = model(a, masks).logits
    assert torch.equal(first, again)
    assert float(model.threshold) == pytest.approx(0.3)


def test_faithful_threshold_updates_in_eval_too():
    model = SMILE(small_config(faithful=True)).eval()
    inputs, masks = batch()
    with torch.no_grad():
        model(inputs, masks)
    assert float(model.threshold) != pytest.approx(0.8)
    frozen = SMILE(small_config(threshold_update="frozen")).train()
    with torch.no_grad():
        frozen(inputs, masks)
    assert float(frozen.threshold) == pytest.approx(0.8)


def test_batch_independence_default_and_dependence_faithful():
    torch.manual_seed(0)
    default = SMILE(small_config()).double().eval()
    default.threshold.fill_(0.3)
    faithful = SMILE(small_config(faithful=True, threshold_update="frozen")).double().eval()
    faithful.load_state_dict(default.state_dict(), strict=False)
    inputs, masks = batch()
    inputs = {m: x.double() for m, x in inputs.items()}
    alone = {m: x[1:2, :4] for m, x in inputs.items()}  # sample 1 without its padding
    with torch.no_grad():
        in_batch = default(inputs, masks).logits[1]
        by_itself = default(alone).logits[0]
        assert torch.allclose(in_batch, by_itself, atol=1e-9)
        # the released softmax over the batch axis: the same sample scores differently in another batch
        assert not torch.allclose(faithful(inputs, masks).logits[1], faithful(alone).logits[0], atol=1e-4)


def test_firing_rates_and_energy():
    model = SMILE(small_config()).eval()
    model.threshold.fill_(0.3)
    inputs, masks = batch()
    with model.monitor_spikes() as monitor, torch.no_grad():
        model(inputs, masks)
    rates = monitor.firing_rates()
    assert set(rates) == {f"spiking.{m}.lif{i}" for m in ("audio", "visual") for i in (1, 2)}
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    assert set(model.spiking_modules()) == {"spiking.audio", "spiking.visual"}
    estimate = model.energy(inputs, masks)
    assert estimate.label == "compute-only estimate (45 nm, Horowitz 2014)"
    assert estimate.macs > 0 and estimate.acs > 0 and estimate.energy_pj > 0


def test_backend_is_configuration():
    assert small_config(backend="cupy").backend == "cuda"
    assert small_config().backend == "torch"
