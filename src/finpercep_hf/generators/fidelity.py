"""Fidelity terms of the direct generators (one-step diffusion SR, feed-forward SR networks) under REFL.

A direct generator is trained by the reward's gradient through the whole generator; alone, that gradient drifts
away from the LR content (the reward-hacking failure the paper's curriculum fights). The terms that such models
train with keep it anchored, each weighted relative to the reward hinge (the sum is scaled by REFL's
``grad_scale``):

* ``fidelity_gt_l1 * L1(image_sr, image_gt)``: pixel L1 to the HR image where the batch has one (OSEDiff's
  data term; it trains with L2 and LPIPS);
* ``fidelity_gt_lpips * LPIPS(image_sr, image_gt)``: needs an LPIPS module (e.g. ``lpips.LPIPS(net="alex")``);
* ``fidelity_reference_l1 * L1(image_sr, reference(image_lr))``: L1 to the output of the reference policy (the
  untouched network: adapters disabled, or the frozen copy), the regularisation that needs no HR image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FidelityConfig:
    """Weights of the fidelity terms, relative to the reward hinge (0 = off)."""

    fidelity_gt_l1: float = field(default=0.0, metadata={"help": "Weight of the pixel L1 to the HR image."})
    fidelity_gt_lpips: float = field(
        default=0.0, metadata={"help": "Weight of LPIPS to the HR image (needs an LPIPS module)."}
    )
    fidelity_reference_l1: float = field(
        default=1.0, metadata={"help": "Weight of the L1 to the reference policy's output (the untouched model)."}
    )

    def __post_init__(self):
        for name in ("fidelity_gt_l1", "fidelity_gt_lpips", "fidelity_reference_l1"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")


def fidelity_loss(
    image_sr: torch.Tensor,
    batch: dict[str, torch.Tensor],
    config: FidelityConfig,
    reference: Callable[[torch.Tensor], torch.Tensor],
    lpips: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted fidelity terms of ``image_sr`` (B, 3, H, W) in [0, 1], with grad.

    Args:
        batch: ``image_lr`` (B, 3, h, w) and, for the HR terms, ``image_gt`` (B, 3, H, W), in [0, 1].
        reference: ``image_lr -> (B, 3, H, W)``, the reference policy's output (called without grad, only when
            ``fidelity_reference_l1 > 0``).
        lpips: ``(sr, gt) in [-1, 1] -> (B, 1, 1, 1)``, required when ``fidelity_gt_lpips > 0``.

    Returns:
        () float32 loss (0 when every weight is 0) and the unweighted terms to log.
    """
    total = image_sr.new_zeros((), dtype=torch.float32)
    logs: dict[str, float] = {}
    if config.fidelity_gt_l1 > 0 or config.fidelity_gt_lpips > 0:
        if "image_gt" not in batch:
            raise ValueError("fidelity_gt_l1 / fidelity_gt_lpips need batches with 'image_gt' (set them to 0).")
        image_gt = batch["image_gt"].to(image_sr.device, torch.float32)
        if image_gt.shape != image_sr.shape:
            raise ValueError(f"image_gt {tuple(image_gt.shape)} and image_sr {tuple(image_sr.shape)} differ.")
        if config.fidelity_gt_l1 > 0:
            l1 = F.l1_loss(image_sr.float(), image_gt)
            total = total + config.fidelity_gt_l1 * l1
            logs["fidelity_gt_l1"] = l1.item()
        if config.fidelity_gt_lpips > 0:
            if lpips is None:
                raise ValueError("fidelity_gt_lpips > 0 needs an LPIPS module (the generator's `lpips` argument).")
            distance = lpips(image_sr.float() * 2 - 1, image_gt * 2 - 1).mean()
            total = total + config.fidelity_gt_lpips * distance
            logs["fidelity_gt_lpips"] = distance.item()
    if config.fidelity_reference_l1 > 0:
        with torch.no_grad():
            image_reference = reference(batch["image_lr"]).float()
        l1 = F.l1_loss(image_sr.float(), image_reference)
        total = total + config.fidelity_reference_l1 * l1
        logs["fidelity_reference_l1"] = l1.item()
    return total, logs


__all__ = ["FidelityConfig", "fidelity_loss"]
