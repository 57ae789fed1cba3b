"""The three losses of FinPercep-RM training (paper Sec. 3.4, Eq. 5-8).

The paper publishes no values for the margins and weights; the defaults below are ours (documented in
`FinPercepTrainingArguments`). Shapes: scores (B,) in [0, 1]; maps (B, 1, H, W) in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def map_loss(pdm: torch.Tensor, pdm_target: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``mean |pdm - pdm_target|`` (L1, averaged over pixels and batch)."""
    if pdm.shape != pdm_target.shape:
        raise ValueError(f"pdm {tuple(pdm.shape)} and pdm_target {tuple(pdm_target.shape)} must have the same shape.")
    return F.l1_loss(pdm, pdm_target)


def map_bce_loss(pdm_logits: torch.Tensor, pdm_target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the map logits against the soft ``pdm_target`` in [0, 1] (our default for L_map).

    Eq. 5's L1 on the sigmoid map has a gradient ``sign(pdm - target) * pdm * (1 - pdm)``; on sparse targets
    (most pixels 0) Adam drives the logits into saturation before the features discriminate, and the map dies at 0
    (measured: AUROC 0.5, ``pdm == 0`` after 20 steps). BCE's gradient ``pdm - target`` does not vanish there.
    """
    if pdm_logits.shape != pdm_target.shape:
        raise ValueError(
            f"pdm_logits {tuple(pdm_logits.shape)} and pdm_target {tuple(pdm_target.shape)} must have the same shape."
        )
    return F.binary_cross_entropy_with_logits(pdm_logits, pdm_target)


def rank_loss(
    score_sr: torch.Tensor, score_syn: torch.Tensor, score_gt: torch.Tensor, margin_sr: float, margin_gt: float
) -> torch.Tensor:
    """Eq. 6: ``mean[max(0, m1 - (S_syn - S_sr)) + max(0, m2 - (S_gt - S_syn))]`` -- S_sr < S_syn < S_gt."""
    return (F.relu(margin_sr - (score_syn - score_sr)) + F.relu(margin_gt - (score_gt - score_syn))).mean()


def align_loss(score_gt: torch.Tensor, base_score_gt: torch.Tensor) -> torch.Tensor:
    """Eq. 7: ``mean |S(GT) - S_base(GT)|``, the anchor to the frozen pre-trained IQA model (RM_0)."""
    return (score_gt - base_score_gt.detach()).abs().mean()


def total_loss(
    losses: dict[str, torch.Tensor], lambda_map: float, lambda_rank: float, lambda_align: float
) -> torch.Tensor:
    """Eq. 8: ``lambda_map * L_map + lambda_rank * L_rank + lambda_align * L_align`` over the terms present."""
    weights = {"map": lambda_map, "rank": lambda_rank, "align": lambda_align}
    unknown = set(losses) - set(weights)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; expected a subset of {sorted(weights)}.")
    return sum(weights[name] * value for name, value in losses.items())


__all__ = ["align_loss", "map_bce_loss", "map_loss", "rank_loss", "total_loss"]
