"""The papers' losses, as their released code computes them.

Released code read (commit in brackets): SMILE github.com/sleepy2333/SMILE [336bca1] train.py; MMER
github.com/ShipingGe/MMER [db38802] train_mmer.py and utils/loss_functions.py; SpikEmo github.com/Yu-xm/SpikEmo
[a3d2791] Loss/MultiDSCLoss.py, on MultiEMO github.com/TaoShi1998/MultiEMO [e96458b] Loss/SoftHGRLoss.py.

Every loss takes the model's pre-activation logits (models/base.py) unless it says otherwise.
Plain cross entropy (single-label) and BCE-with-logits (multi-label) are torch's own
(`F.cross_entropy`, `F.binary_cross_entropy_with_logits`) and are not wrapped here.

- `smoothed_bce`                      SMILE: BCE against targets smoothed to 0.8 / 0.2.
- `AsymmetricLoss`                    MMER: AsymmetricLossOptimized, ×1000.
- `kl_consistency`                    MMER: KL between perturbed and clean predictions.
- `MultiDSCLoss`                      SpikEmo: self-adjusting dice.
- `soft_hgr_loss`                     MultiEMO/SpikEmo: Soft-HGR correlation across modalities.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def smoothed_bce(logits: Tensor, targets: Tensor, smoothing: float = 0.2) -> Tensor:
    """SMILE's training loss: mean BCE against ỹ = |y − smoothing| (positives 0.8, negatives 0.2).

    SMILE applies `nn.BCELoss` to sigmoid outputs; BCE-with-logits on the logits is the same function,
    computed without the overflow of log(sigmoid(x)) (BCELoss instead clamps the log at −100, which
    only differs for |logit| > 100). SMILE's validation loss uses the raw targets: `smoothing=0`.
    """
    smoothed = (targets.to(logits.dtype) - smoothing).abs()
    return F.binary_cross_entropy_with_logits(logits, smoothed)


class AsymmetricLoss(nn.Module):
    """MMER's `AsymmetricLossOptimized` (Ridnik et al., "Asymmetric loss for multi-label classification",
    ICCV 2021), multi-label.

    With p the sigmoid output and p₋ = min(1 − p + clip, 1) the clipped negative probability:
        ℓ = −[ y · log(p) · (1 − p)^γ₊  +  (1 − y) · log(p₋) · (1 − p₋)^γ₋ ],   logs clamped at eps,
        loss = Σℓ / B / C × scale.
    The ×1000 is in the released code (it interacts with the gradient clip at 1.0); the focusing
    weight keeps its gradient (`disable_torch_grad_focal_loss=False` there).
    MMER's model ends in a sigmoid and passes probabilities; with `from_logits=True` (the default,
    following models/base.py) the sigmoid is applied here first, which is the same computation.
    """

    def __init__(
        self,
        gamma_neg: float = 2.0,
        gamma_pos: float = 1.0,
        clip: float = 0.05,
        eps: float = 1e-5,
        scale: float = 1000.0,
        from_logits: bool = True,
    ) -> None:
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps
        self.scale = scale
        self.from_logits = from_logits

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        probs = torch.sigmoid(inputs) if self.from_logits else inputs
        targets = targets.to(probs.dtype)
        probs_neg = 1 - probs
        if self.clip > 0:
            # Asymmetric clipping: negatives predicted below `clip` cost nothing at all.
            probs_neg = (probs_neg + self.clip).clamp(max=1)
        log_likelihood = targets * torch.log(probs.clamp(min=self.eps)) + (1 - targets) * torch.log(
            probs_neg.clamp(min=self.eps)
        )
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            p_t = probs * targets + probs_neg * (1 - targets)
            gamma = self.gamma_pos * targets + self.gamma_neg * (1 - targets)
            log_likelihood = log_likelihood * torch.pow(1 - p_t, gamma)
        batch, num_labels = probs.shape
        return -log_likelihood.sum() / batch / num_labels * self.scale


def kl_consistency(perturbed: Tensor, clean: Tensor, from_logits: bool = True) -> Tensor:
    """MMER's consistency term after adversarial parameter perturbation, as train_mmer.py codes it:

        F.kl_div(log_softmax(p_noise, -1), softmax(p.detach(), -1))   (reduction 'mean')

    where p, p_noise are the model's [B, C] *sigmoid outputs*: the softmax runs across the labels'
    sigmoid probabilities, and 'mean' averages over all B·C elements (not 'batchmean').
    With `from_logits=True` (default) the sigmoid is applied here first; pass probabilities with False.
    Written out rather than calling `F.kl_div(reduction='mean')`, which warns and whose 'mean' torch
    has announced it will change to 'batchmean'.
    """
    if from_logits:
        perturbed, clean = torch.sigmoid(perturbed), torch.sigmoid(clean)
    log_q = F.log_softmax(perturbed, dim=-1)
    target = F.softmax(clean.detach(), dim=-1)
    # kl_div's pointwise term target · (log target − input), with 0 · log 0 = 0.
    return (torch.special.xlogy(target, target) - target * log_q).mean()


class MultiDSCLoss(nn.Module):
    """SpikEmo's self-adjusting dice loss (Li et al., "Dice loss for data-imbalanced NLP tasks", ACL 2020),
    multi-class:

        p = softmax(logits)[y],  p̃ = (1 − p)^α · p,  ℓ = 1 − (2p̃ + γ) / (p̃ + 1 + γ),  mean over samples.

    Logits may be [N, C] or [B, L, C] with targets [N] or [B, L]; targets equal to `ignore_index`
    (padded utterances) are left out of the mean, as SpikEmo drops them before the loss.
    """

    def __init__(self, alpha: float = 1.5, smooth: float = 0.5, ignore_index: int = -100) -> None:
        super().__init__()
        self.alpha = alpha
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        logits = logits.reshape(-1, logits.shape[-1])
        targets = targets.reshape(-1)
        valid = targets != self.ignore_index
        logits, targets = logits[valid], targets[valid]
        if targets.numel() == 0:
            return logits.sum() * 0.0  # keeps the graph: a batch of padding contributes nothing
        p = F.softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
        p_factor = (1 - p) ** self.alpha * p
        loss = 1 - (2 * p_factor + self.smooth) / (p_factor + 1 + self.smooth)
        return loss.mean()


HGRForm = Literal["multiemo", "definition"]


def soft_hgr_loss(features: Sequence[Tensor], form: HGRForm = "multiemo") -> Tensor:
    """Negative Soft-HGR correlation summed over all pairs of modalities. Features: [N, D] each, the valid
    utterances only.

    form="multiemo" (default), MultiEMO's `SoftHGRLoss` as coded (github.com/TaoShi1998/MultiEMO, commit
    e96458b, Loss/SoftHGRLoss.py; SpikEmo reuses the file): no centring in the inner product, and
    `torch.cov(X)` on X [N, D] treats the *rows* as variables, so Σ is N×N (covariances between samples,
    each over its D features); the covariance term and then the whole loss are scaled by 1/N:
        L = −Σ_pairs ( mean_n ⟨x_n, y_n⟩ − ½ tr(cov(X) cov(Y)) / N ) / N.
    MultiEMO's and SpikEmo's loss weights (e.g. CE 0.4 / DSC 1.0 / HGR 0.3 on MELD) were set for this
    scale; at initialisation its gradient is a few times the weighted cross entropy's.
    form="definition" (Wang et al., AAAI 2019, and their reference code): with features centred over the
    batch and Σ the D×D covariance (unbiased),
        L = −Σ_pairs ( mean_n ⟨x̃_n, ỹ_n⟩ − ½ tr(Σ_X Σ_Y) ),
    and 0 for a batch of one sample, which has no covariance. Unscaled, it is hundreds of times larger than
    the form above (its gradient about 600× the weighted cross entropy's at SpikEmo's initialisation), so
    the published weights do not carry over to it.
    """
    if len(features) < 2:
        raise ValueError("Soft-HGR needs at least two feature sets")
    n = features[0].shape[0]
    if any(f.shape[0] != n for f in features):
        raise ValueError("every feature set needs the same number of samples")
    if n < 2 and form == "definition":
        # One sample has no covariance; a last batch of one utterance must not stop training.
        return sum(f.sum() for f in features) * 0.0
    total = features[0].new_zeros(())
    for x, y in combinations(features, 2):
        if form == "multiemo":
            inner = (x * y).sum(dim=-1).mean()
            # atleast_2d: torch.cov of a single row is a scalar, on which MultiEMO's code crashes.
            cov_x, cov_y = torch.atleast_2d(torch.cov(x)), torch.atleast_2d(torch.cov(y))
            covariance = torch.trace(cov_x @ cov_y) / n
        else:
            x, y = x - x.mean(dim=0), y - y.mean(dim=0)
            inner = (x * y).sum(dim=-1).mean()
            cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)  # D×D, unbiased
            covariance = torch.trace(cov_x @ cov_y)
        total = total + inner - covariance / 2
    return -total / n if form == "multiemo" else -total
