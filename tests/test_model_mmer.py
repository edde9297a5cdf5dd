"""MMER (Ge et al., WWW 2023): shapes, gradients, masking, soft top-k, GRL, determinism, reference size."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from emocli.core.errors import ConfigError
from emocli.models.base import count_parameters
from emocli.models.mmer import MMER, ImplicitSinkhorn, MMERConfig, reverse_gradient, soft_bottom_k
from emocli.models.registry import get_model

WIDTHS = {"text": 12, "audio": 7, "visual": 5}
LENGTHS = {"text": [9, 4, 6], "audio": [6, 6, 2], "visual": [3, 8, 1]}


def tiny_config(modalities=WIDTHS, kinds=None, **overrides) -> MMERConfig:
    kinds = kinds or {}
    settings = dict(
        modalities={m: {"dim": WIDTHS[m], "kind": kinds.get(m, "sequence")} for m in modalities},
        num_classes=4,
        task="multi_label",
        d_model=16,
        heads=2,
        ffn_dim=32,
        encoder_layers=1,
        decoder_layers=1,
        mask_k=3,
        sinkhorn_iterations=30,
    )
    return MMERConfig(**{**settings, **overrides})


def batch(config: MMERConfig, seed: int = 0):
    """Padded sequences (lengths from LENGTHS) or vectors, as the configuration says."""
    generator = torch.Generator().manual_seed(seed)
    inputs, masks = {}, {}
    for m, spec in config.modalities.items():
        lengths = torch.tensor(LENGTHS[m])
        if spec.kind == "vector":
            inputs[m] = torch.randn(len(lengths), spec.dim, generator=generator)
            continue
        steps = int(lengths.max())
        masks[m] = torch.arange(steps) < lengths[:, None]
        inputs[m] = torch.randn(len(lengths), steps, spec.dim, generator=generator) * masks[m][..., None]
    return inputs, masks


def test_reference_parameter_count():
    entry = get_model("mmer")
    with torch.device("meta"):
        model = entry.build(entry.config("mosei"))
    assert abs(count_parameters(model) - entry.references["mosei"]) <= entry.reference_tolerance
    assert count_parameters(model) == 28_612_100  # what the released models/modeling.py adds up to


@pytest.mark.parametrize("task", ["multi_label", "single_label"])
def test_every_modality_subset_and_head(task):
    for size in (1, 2, 3):
        for subset in itertools.combinations(WIDTHS, size):
            kinds = {"visual": "vector"}  # mixes vectors and padded sequences
            config = tiny_config(subset, kinds, task=task, num_classes=3)
            model = MMER(config)
            out = model(*batch(config))
            assert out.logits.shape == (3, 3), subset
            assert out.aux["masked_logits"].shape == (3, 3), subset
            assert torch.isfinite(out.logits).all() and torch.isfinite(out.aux["masked_logits"]).all()


def test_gradients_reach_every_parameter_and_scorers_only_through_the_masked_branch():
    torch.manual_seed(0)
    config = tiny_config()
    model = MMER(config).train()
    inputs, masks = batch(config)
    target = torch.randint(0, 2, (3, 4)).float()

    out = model(inputs, masks)
    F.binary_cross_entropy_with_logits(out.logits, target).backward()
    for m, scorer in model.scorers.items():
        assert all(p.grad is None for p in scorer.parameters()), m  # p does not depend on the mask

    model.zero_grad()
    out = model(inputs, masks)
    loss = F.binary_cross_entropy_with_logits(out.logits, target)
    loss = loss + 0.1 * F.binary_cross_entropy_with_logits(out.aux["masked_logits"], target)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_gradient_reversal_scales_and_flips():
    x = torch.randn(5, requires_grad=True)
    weights = torch.randn(5)
    y = reverse_gradient(x, 0.1)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, -0.1 * weights)


def test_soft_bottom_k_selects_the_lowest_scores():
    generator = torch.Generator().manual_seed(0)
    # Well separated: 6 low scores among 20 -> the mask is ~1 on them, ~0 elsewhere.
    scores = torch.rand(2, 20, generator=generator) * 0.2 + 0.8
    low = torch.stack([torch.randperm(20, generator=generator)[:6] for _ in range(2)])
    scores.scatter_(1, low, torch.rand(2, 6, generator=generator) * 0.2)
    real = torch.ones(2, 20, dtype=torch.bool)
    mask = soft_bottom_k(scores, real, 6, epsilon=0.1, iterations=100)
    assert torch.allclose(mask.sum(dim=1), torch.full((2,), 6.0), atol=1e-4)
    assert mask.gather(1, low).min() > 0.95
    others = torch.ones_like(mask, dtype=torch.bool).scatter_(1, low, False)
    assert mask[others].max() < 0.05

    # Uniform scores, MOSEI's k = 24 of 60 steps: the mask is mostly on the 24 lowest, and monotone in the score.
    scores = torch.rand(3, 60, generator=generator)
    mask = soft_bottom_k(scores, torch.ones(3, 60, dtype=torch.bool), 24, epsilon=0.1, iterations=100)
    order = scores.argsort(dim=1)
    ranked = mask.gather(1, order)
    assert torch.allclose(mask.sum(dim=1), torch.full((3,), 24.0), atol=1e-3)
    assert ranked[:, :24].mean() > 0.85 and ranked[:, 24:].mean() < 0.1
    assert (ranked[:, 1:] <= ranked[:, :-1] + 1e-6).all()


def test_soft_bottom_k_respects_padding_short_sequences_and_ratios():
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(4, 30, generator=generator)
    lengths = torch.tensor([30, 20, 5, 1])
    real = torch.arange(30) < lengths[:, None]
    mask = soft_bottom_k(scores, real, 8, epsilon=0.1, iterations=100)
    assert (mask[~real] == 0).all()
    # k, but at most n - 1 per sample: a single real step (a vector) is never masked.
    assert torch.allclose(mask.sum(dim=1), torch.tensor([8.0, 8.0, 4.0, 0.0]), atol=1e-3)
    assert mask[3, 0].abs() < 1e-6
    # A padded sample gets the same mask as when it is alone without padding (per-sample cost scale).
    alone = soft_bottom_k(scores[1:2, :20], real[1:2, :20], 8, epsilon=0.1, iterations=100)
    assert torch.allclose(mask[1, :20], alone[0], atol=1e-5)

    ratio = soft_bottom_k(scores, real, 0.25, epsilon=0.1, iterations=100)
    assert torch.allclose(ratio.sum(dim=1), torch.tensor([7.5, 5.0, 1.25, 0.0]), atol=1e-3)


def _score_gradient(scores, real, k, backward, iterations, cost_norm="sample"):
    leaf = scores.clone().requires_grad_()
    weights = torch.linspace(-1, 1, scores.shape[1], dtype=scores.dtype).expand_as(scores)  # any downstream loss
    mask = soft_bottom_k(leaf, real, k, epsilon=0.1, iterations=iterations, cost_norm=cost_norm, backward=backward)
    (mask * weights).sum().backward()
    return mask.detach(), leaf.grad


@pytest.mark.parametrize("cost_norm", ["sample", "batch"])
def test_soft_bottom_k_implicit_gradient_is_the_converged_unrolled_one(cost_norm):
    """Xie et al.'s implicit backward is the gradient of the converged plan: in float64, once Sinkhorn has
    converged, it equals autograd through the unrolled iterations; padding and k = 0 samples get none."""
    generator = torch.Generator().manual_seed(2)
    scores = torch.rand(4, 30, generator=generator, dtype=torch.float64)
    real = torch.arange(30) < torch.tensor([30, 20, 5, 1])[:, None]
    mask, implicit = _score_gradient(scores, real, 8, "implicit", 1000, cost_norm)
    unrolled_mask, unrolled = _score_gradient(scores, real, 8, "unrolled", 1000, cost_norm)
    assert torch.allclose(mask, unrolled_mask, atol=1e-12)
    assert torch.allclose(implicit, unrolled, rtol=1e-9, atol=1e-12 * float(unrolled.abs().max()))
    assert float(implicit.abs().max()) > 1e-3
    assert (implicit[~real] == 0).all() and (implicit[3] == 0).all()  # padding; one step, k = 0
    # At MMER's 100 iterations the unrolled gradient is still that of a truncated iteration.
    _, truncated = _score_gradient(scores, real, 8, "unrolled", 100, cost_norm)
    assert not torch.allclose(truncated, implicit, rtol=1e-4)


def test_implicit_sinkhorn_matches_finite_differences():
    generator = torch.Generator().manual_seed(3)
    cost = torch.rand(3, 7, 2, generator=generator, dtype=torch.float64).requires_grad_()
    mu = torch.full((3, 7), 1 / 7, dtype=torch.float64)
    mu[2, 5:] = 0.0  # a padded sample: five real steps
    mu[2, :5] = 1 / 5
    nu = torch.tensor([[3 / 7, 4 / 7], [1 / 7, 6 / 7], [2 / 5, 3 / 5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda c: ImplicitSinkhorn.apply(c, mu, nu, 0.1, 500), (cost,))
    # The exponential-domain forward (ε = 0.1) and the log-domain one (small ε) give the same plan.
    small = ImplicitSinkhorn.apply(cost * 0.05, mu, nu, 0.005, 500)
    assert torch.allclose(small, ImplicitSinkhorn.apply(cost, mu, nu, 0.1, 500), atol=1e-9)


def test_soft_bottom_k_gradients_are_finite_in_float32_at_mmers_shapes():
    generator = torch.Generator().manual_seed(4)
    scores = torch.rand(16, 60, generator=generator)
    real = torch.arange(60) < torch.randint(1, 61, (16, 1), generator=generator)
    mask, implicit = _score_gradient(scores, real, 24, "implicit", 100)
    _, reference = _score_gradient(scores.double(), real, 24, "implicit", 1000)
    assert torch.allclose(mask.sum(1), (real.sum(1) - 1).clamp(max=24).float(), atol=1e-3)  # k_b = min(k, n - 1)
    assert torch.isfinite(implicit).all()
    assert torch.allclose(implicit.double(), reference, rtol=1e-3, atol=1e-4 * float(reference.abs().max()))


def test_encoder_checkpointing_gives_the_same_outputs_and_gradients():
    """Recomputing the encoder layers in the backward pass (dropout included, from the same random state)
    changes memory, not the maths."""
    results = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = MMER(tiny_config(encoder_checkpointing=checkpointing)).double().train()
        inputs, masks = batch(model.config)
        inputs = {m: x.double() for m, x in inputs.items()}
        torch.manual_seed(1)
        out = model(inputs, masks)
        (out.logits.sum() + out.aux["masked_logits"].pow(2).sum()).backward()
        results[checkpointing] = (out.logits.detach(), {n: p.grad for n, p in model.named_parameters()})
    (logits, grads), (c_logits, c_grads) = results[False], results[True]
    assert torch.allclose(logits, c_logits, atol=1e-12)
    assert all(torch.allclose(grads[n], c_grads[n], atol=1e-10) for n in grads if grads[n] is not None)
    assert [n for n in grads if grads[n] is None] == [n for n in c_grads if c_grads[n] is None]


def test_batch_cost_scale_couples_the_samples():
    scores = torch.tensor([[0.4, 0.45, 0.5, 0.55], [0.0, 0.3, 0.7, 1.0]])
    real = torch.ones(2, 4, dtype=torch.bool)
    per_sample = soft_bottom_k(scores, real, 2, epsilon=0.1, iterations=100, cost_norm="sample")
    batch_wide = soft_bottom_k(scores, real, 2, epsilon=0.1, iterations=100, cost_norm="batch")
    alone = soft_bottom_k(scores[:1], real[:1], 2, epsilon=0.1, iterations=100, cost_norm="batch")
    assert torch.allclose(per_sample[1], batch_wide[1], atol=1e-5)  # the batch maximum is sample 1's
    assert not torch.allclose(batch_wide[0], alone[0], atol=1e-3)


def test_vectors_are_never_masked():
    config = tiny_config(kinds={m: "vector" for m in WIDTHS})
    model = MMER(config).eval()
    with torch.no_grad():
        out = model(*batch(config))
    assert torch.allclose(out.logits, out.aux["masked_logits"], atol=1e-6)


def _alone_and_together(model: MMER):
    """Each sample's outputs alone (no padding, no masks) and its row in the padded batch."""
    inputs, masks = batch(model.config)
    with torch.no_grad():
        together = model(inputs, masks)
        for i in range(3):
            alone_inputs = {m: x[i : i + 1, : LENGTHS[m][i]] if m in masks else x[i : i + 1] for m, x in inputs.items()}
            yield model(alone_inputs), together, i


def test_a_sample_does_not_depend_on_its_batch():
    model = MMER(tiny_config(kinds={"visual": "vector"})).eval()
    for alone, together, i in _alone_and_together(model):
        assert torch.allclose(alone.logits[0], together.logits[i], atol=1e-5)
        assert torch.allclose(alone.aux["masked_logits"][0], together.aux["masked_logits"][i], atol=1e-5)

    # Faithful: the transport cost is scaled by the batch maximum, so the masked branch depends on the batch.
    torch.manual_seed(0)
    model = MMER(tiny_config(kinds={"visual": "vector"}, faithful=True)).eval()
    differences = [
        (alone.aux["masked_logits"][0] - together.aux["masked_logits"][i]).abs().max()
        for alone, together, i in _alone_and_together(model)
    ]
    assert max(differences) > 1e-3


def test_perturbation_parameters_are_the_tri_modal_encoder():
    model = MMER(tiny_config())
    perturbed = {id(p) for p in model.perturbation_parameters()}
    named = {id(p) for n, p in model.named_parameters() if n.startswith("fusion_encoder.")}
    assert perturbed == named and len(perturbed) > 0
    assert not perturbed & {id(p) for p in model.encoders.parameters()}


def test_faithful_mode_normalises_the_cost_over_the_batch():
    assert get_model("mmer").config("mosei", faithful=True).cost_norm == "batch"
    assert get_model("mmer").config("mosei").cost_norm == "sample"


def test_configuration_and_input_errors():
    with pytest.raises(ValueError, match="mask_k"):
        tiny_config(mask_k=1.5)
    model = MMER(tiny_config(("text",)))
    with pytest.raises(ConfigError, match="width 12"):
        model({"text": torch.randn(2, 4, 11)})
    with pytest.raises(ConfigError, match="no real step"):
        model({"text": torch.randn(2, 4, 12)}, {"text": torch.tensor([[True] * 4, [False] * 4])})
