"""emocli.models.losses against hand computations and the released code of SMILE, MMER, SpikEmo and MultiEMO
(repositories and commits in emocli/models/losses.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emocli.models.losses import (
    AsymmetricLoss,
    MultiDSCLoss,
    kl_consistency,
    smoothed_bce,
    soft_hgr_loss,
)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ----------------------------------------------------------------------------------------- smoothed BCE


def test_smoothed_bce_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1, 0]])
    # Targets become 0.8 and 0.2.
    first = -(0.8 * math.log(0.5) + 0.2 * math.log(0.5))
    s = _sigmoid(2.0)
    second = -(0.2 * math.log(s) + 0.8 * math.log(1 - s))
    assert smoothed_bce(logits, targets).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_smoothed_bce_is_smiles_bceloss_on_sigmoid_outputs():
    torch.manual_seed(0)
    logits = torch.randn(8, 6)
    targets = (torch.rand(8, 6) < 0.3).float()
    smile = torch.nn.BCELoss()(torch.sigmoid(logits), (targets - 0.2).abs())
    assert smoothed_bce(logits, targets).item() == pytest.approx(smile.item(), rel=1e-5)
    plain = F.binary_cross_entropy_with_logits(logits, targets)
    assert smoothed_bce(logits, targets, smoothing=0.0).item() == pytest.approx(plain.item(), rel=1e-6)


def test_smoothed_bce_stable_for_saturated_logits():
    logits = torch.tensor([[200.0, -200.0]], requires_grad=True)
    loss = smoothed_bce(logits, torch.tensor([[1.0, 0.0]]))
    loss.backward()
    # The smoothed targets make a saturated correct logit cost 0.2 · 200 per element, finitely.
    assert loss.item() == pytest.approx(0.2 * 200, rel=1e-4)
    assert torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------------------- asymmetric loss


def test_asymmetric_loss_by_hand():
    probs = torch.tensor([[0.8, 0.3], [0.02, 0.9]])
    targets = torch.tensor([[1, 0], [0, 0]])
    positive = math.log(0.8) * (1 - 0.8) ** 1  # γ₊ = 1
    negative_03 = math.log(0.75) * (1 - 0.75) ** 2  # p₋ = min(1 − 0.3 + 0.05, 1) = 0.75, γ₋ = 2
    negative_002 = 0.0  # p₋ = min(1.03, 1) = 1: clipped away entirely
    negative_09 = math.log(0.15) * (1 - 0.15) ** 2
    expected = -(positive + negative_03 + negative_002 + negative_09) / 2 / 2 * 1000
    loss = AsymmetricLoss(from_logits=False)(probs, targets)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_asymmetric_loss_from_logits_is_the_same_function():
    torch.manual_seed(1)
    logits = torch.randn(4, 6)
    targets = (torch.rand(4, 6) < 0.4).float()
    via_logits = AsymmetricLoss()(logits, targets)
    via_probs = AsymmetricLoss(from_logits=False)(torch.sigmoid(logits), targets)
    assert via_logits.item() == pytest.approx(via_probs.item(), rel=1e-6)


def test_asymmetric_loss_gradients_finite_when_saturated():
    logits = torch.tensor([[30.0, -30.0, 30.0, -30.0]], requires_grad=True)
    AsymmetricLoss()(logits, torch.tensor([[1, 0, 0, 1]])).backward()
    assert torch.isfinite(logits.grad).all()


# -------------------------------------------------------------------------------------------- KL term


def test_kl_consistency_by_hand():
    clean = torch.tensor([[0.5, 0.5]])
    perturbed = torch.tensor([[0.9, 0.1]])
    log_norm = math.log(math.exp(0.9) + math.exp(0.1))
    log_q = [0.9 - log_norm, 0.1 - log_norm]
    # softmax of the clean sigmoid outputs is uniform; 'mean' averages over the B·C = 2 elements.
    expected = sum(0.5 * (math.log(0.5) - lq) for lq in log_q) / 2
    assert kl_consistency(perturbed, clean, from_logits=False).item() == pytest.approx(expected, rel=1e-6)


def test_kl_consistency_matches_mmer_code_and_detaches_clean():
    torch.manual_seed(2)
    noise_logits = torch.randn(5, 6, requires_grad=True)
    clean_logits = torch.randn(5, 6, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about reduction='mean'; MMER uses it regardless
        mmer = F.kl_div(
            F.log_softmax(torch.sigmoid(noise_logits), dim=-1),
            F.softmax(torch.sigmoid(clean_logits).detach(), dim=-1),
            reduction="mean",
        )
    ours = kl_consistency(noise_logits, clean_logits)
    assert ours.item() == pytest.approx(mmer.item(), rel=1e-5)
    ours.backward()
    assert clean_logits.grad is None
    assert torch.isfinite(noise_logits.grad).all() and noise_logits.grad.abs().sum() > 0


# -------------------------------------------------------------------------------------------- dice loss


def _dsc_by_hand(p: float, alpha: float = 1.5, smooth: float = 0.5) -> float:
    factor = (1 - p) ** alpha * p
    return 1 - (2 * factor + smooth) / (factor + 1 + smooth)


def test_multi_dsc_by_hand():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    targets = torch.tensor([0, 1])
    p_second = math.exp(0.0) / (math.exp(2.0) + 1)
    expected = (_dsc_by_hand(0.5) + _dsc_by_hand(p_second)) / 2
    assert MultiDSCLoss()(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert _dsc_by_hand(0.5) == pytest.approx(0.490956, abs=1e-6)


def test_multi_dsc_ignores_padded_utterances():
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 4, requires_grad=True)  # [dialogues, utterances, classes]
    targets = torch.tensor([[1, 2, -100], [0, -100, -100]])
    loss = MultiDSCLoss()(logits, targets)
    valid = MultiDSCLoss()(logits[[0, 0, 1], [0, 1, 0]], torch.tensor([1, 2, 0]))
    assert loss.item() == pytest.approx(valid.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[1, 1:].abs().sum() == 0


def test_multi_dsc_all_padding_is_zero():
    logits = torch.randn(1, 2, 3, requires_grad=True)
    loss = MultiDSCLoss()(logits, torch.full((1, 2), -100))
    loss.backward()
    assert loss.item() == 0.0


# --------------------------------------------------------------------------------------------- Soft-HGR


def test_soft_hgr_definition_by_hand():
    # N = 2, D = 1: x = (1, −1), y = (2, −2), already centred. mean ⟨x, y⟩ = 2;
    # unbiased variances 2 and 8, tr = 16: L = −(2 − 16 / 2) = 6.
    x = torch.tensor([[1.0], [-1.0]])
    y = torch.tensor([[2.0], [-2.0]])
    assert soft_hgr_loss([x, y], form="definition").item() == pytest.approx(6.0)


def test_soft_hgr_multiemo_by_hand():
    # torch.cov(X) treats rows as variables: X = [[1, 3], [2, 2]] gives [[2, 0], [0, 0]], and
    # Y = [[0, 2], [1, 1]] the same; tr = 4, / N = 2. mean ⟨x, y⟩ = (6 + 4) / 2 = 5.
    # L = −(5 − 2 / 2) / N = −2.
    x = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    y = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert soft_hgr_loss([x, y]).item() == pytest.approx(-2.0)  # MultiEMO's form is the default


def _numpy_hgr(features: list[np.ndarray], multiemo: bool) -> float:
    n = len(features[0])
    total = 0.0
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            x, y = features[i], features[j]
            if multiemo:
                total += np.mean(np.sum(x * y, axis=1)) - np.trace(np.cov(x) @ np.cov(y)) / n / 2
            else:
                x, y = x - x.mean(0), y - y.mean(0)
                total += np.mean(np.sum(x * y, axis=1)) - np.trace(np.cov(x.T) @ np.cov(y.T)) / 2
    return -total / n if multiemo else -total


@pytest.mark.parametrize("form", ["multiemo", "definition"])
def test_soft_hgr_three_modalities_against_numpy(form: str):
    rng = np.random.default_rng(4)
    arrays = [rng.normal(size=(7, 5)) for _ in range(3)]
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    loss = soft_hgr_loss(tensors, form=form)
    assert loss.item() == pytest.approx(_numpy_hgr(arrays, form == "multiemo"), rel=1e-9)
    loss.backward()
    assert all(torch.isfinite(t.grad).all() for t in tensors)


def test_soft_hgr_multiemo_covariances_are_between_samples():
    # The two readings genuinely differ: the as-coded covariance is N×N, the definition's D×D.
    rng = np.random.default_rng(5)
    x, y = (torch.tensor(rng.normal(size=(6, 3))) for _ in range(2))
    assert soft_hgr_loss([x, y], form="definition").item() != pytest.approx(soft_hgr_loss([x, y]).item())


# ------------------------------------------------------------------------------------------------- SWFC


def test_soft_hgr_single_sample_batch():
    x = torch.randn(1, 4, requires_grad=True)
    loss = soft_hgr_loss([x, x * 2], form="definition")
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()
    assert torch.isfinite(soft_hgr_loss([x, x * 2]))


# --------------------------------------------------------------- Soft-HGR's scale in SpikEmo's objective


def test_spikemo_default_soft_hgr_has_the_scale_its_weights_were_set_for():
    """‖∇θ λ_hgr·HGR‖ / ‖∇θ λ_ce·CE‖ at initialisation: SpikEmo's MELD reference (default mode, the MELD
    script's weights CE 0.4 / DSC 1.0 / HGR 0.3) on random dialogues. MultiEMO's form gives 3.6 to 21 times
    the CE gradient over seeds and batches of 10 to 112 utterances (more utterances, smaller ratio); the
    definition gives 650 to 850 times."""
    from emocli.models.spikemo import SpikEmo, SpikEmoConfig, SpikEmoObjective

    config = SpikEmoConfig.model_validate({**SpikEmoConfig.reference("meld").model_dump(), "faithful": False})
    torch.manual_seed(0)
    model = SpikEmo(config)
    g = torch.Generator().manual_seed(1)
    inputs = {m: torch.randn(6, 8, spec.dim, generator=g) for m, spec in config.modalities.items()}
    inputs["speaker"] = torch.randint(0, 9, (6, 8), generator=g)
    real = torch.arange(8) < torch.randint(2, 9, (6, 1), generator=g)
    targets = torch.randint(0, 7, (int(real.sum()),), generator=g)
    output = model(inputs, {"utterance": real})
    terms = SpikEmoObjective({}, config).losses(output, targets, real, training=True)
    definition = SpikEmoObjective({"hgr_form": "definition"}, config).losses(output, targets, real, training=True)["hgr"]
    parameters = [p for p in model.parameters() if p.requires_grad]

    def norm(term: torch.Tensor) -> float:
        grads = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None)))

    ce = norm(terms["ce"])
    assert 1.0 < norm(terms["hgr"]) / ce < 50.0  # the default step: MultiEMO's form
    assert norm(definition) / ce > 300.0
