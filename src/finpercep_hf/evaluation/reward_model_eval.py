"""Reward-model metrics on an FGR split (``finpercep evaluate --fgr``): ordering and pairwise accuracies of
S(SR) < S(SYN) < S(GT), PDM L1 / AUROC / IoU of the SYN map, and the score drift on GT from an anchor RM_0.

The metrics themselves are `rm_metrics` (the same implementation the RM trainer's ``evaluate`` uses); the rows are
batched by the trainer's [`FinPercepTripletCollator`] without augmentation.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.triplet_collator import FinPercepTripletCollator
from .rm_metrics import RMMetricsAccumulator


@torch.no_grad()
def evaluate_reward_model(
    model: Any,
    dataset: Any,
    anchor_model: Any | None = None,
    batch_size: int = 4,
    crop_size: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, float]:
    """RM metrics of ``model`` over an FGR split.

    Args:
        model: a reward model returning ``global_score`` (B,) and ``pdm`` (B, 1, H, W) or None (stage 0: the map
            metrics are then left out).
        dataset: FGR rows (``image_gt``, ``image_sr``, ``image_syn``, ``mask``, ``pdm_target``), e.g.
            ``datasets.load_dataset(path, split="test")``.
        anchor_model: RM_0; when given, ``score_drift`` = mean |S(GT) - base_score_RM0(GT)|, as the trainer's L_align.
        batch_size: rows per forward (rows of a batch must share a size unless ``crop_size`` is set).
        crop_size: centre-crop (and resize) every row to this side; None keeps full rows.

    Returns:
        ``{"ordering_accuracy", "acc_sr_syn", "acc_syn_gt", "acc_sr_gt"[, "pdm_l1", "pdm_auroc", "pdm_iou"]
        [, "score_drift"]: float}``.
    """
    collator = FinPercepTripletCollator(crop_size=crop_size, augment=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collator)
    accumulator = RMMetricsAccumulator()
    for batch in tqdm(loader, desc="RM metrics", unit="batch", disable=not progress, file=sys.stderr):
        batch = {key: value.to(device) for key, value in batch.items()}
        output_gt, output_sr, output_syn = (model(batch[key]) for key in ("image_gt", "image_sr", "image_syn"))
        has_map = output_syn.pdm is not None
        accumulator.update(
            score_sr=output_sr.global_score,
            score_syn=output_syn.global_score,
            score_gt=output_gt.global_score,
            pdm=output_syn.pdm,
            pdm_target=batch["pdm_target"] if has_map else None,
            mask=batch["mask"] if has_map else None,
            base_score_gt=None if anchor_model is None else anchor_model(batch["image_gt"]).base_score,
        )
    return accumulator.compute()


__all__ = ["evaluate_reward_model"]
