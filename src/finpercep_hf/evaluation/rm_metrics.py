"""Reward-model metrics on FGR triplets (paper Sec. 4, RM evaluation): the one implementation shared by the RM
trainer's evaluation loop, ``finpercep evaluate`` and the reward-hacking probe.

Conventions: scores are (B,) floats, higher = better quality; maps are (B, 1, H, W) floats, ``pdm`` and
``pdm_target`` in [0, 1] (larger = more degraded), ``mask`` in {0, 1} (1 = swapped / distorted region; values
> 0.5 count as 1). Every function returns a 0-dim float tensor except where it says otherwise; per-image
variants (``*_per_image``) return (B,) float64 tensors, which is what `RMMetricsAccumulator` collects.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MASK_THRESHOLD = 0.5
# Direction of each metric that `RMMetricsAccumulator.compute` reports (for `table.results_to_markdown`).
RM_METRICS_LOWER_BETTER = {
    "ordering_accuracy": False,
    "acc_sr_syn": False,
    "acc_syn_gt": False,
    "acc_sr_gt": False,
    "pdm_l1": True,
    "pdm_auroc": False,
    "pdm_iou": False,
    "score_drift": True,
}


def _as_tensor(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach()
    if tensor.is_complex():
        raise TypeError(f"{name} must be a real tensor, got dtype {tensor.dtype}.")
    return tensor.to(device="cpu", dtype=torch.float64)


def _scores(name_to_value: dict[str, torch.Tensor | np.ndarray]) -> list[torch.Tensor]:
    """Check that the named scores are all (B,) with the same B; return them as float64 CPU tensors."""
    tensors = [_as_tensor(value, name) for name, value in name_to_value.items()]
    for (name, _), tensor in zip(name_to_value.items(), tensors):
        if tensor.ndim != 1:
            raise ValueError(f"{name} must have shape (B,), got {tuple(tensor.shape)}.")
    sizes = {name: tensor.shape[0] for (name, _), tensor in zip(name_to_value.items(), tensors)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"scores must have the same batch size, got {sizes}.")
    return tensors


def _maps(name_to_value: dict[str, torch.Tensor | np.ndarray]) -> list[torch.Tensor]:
    """Check that the named maps are all (B, 1, H, W) with one shape; return them as float64 CPU tensors."""
    tensors = [_as_tensor(value, name) for name, value in name_to_value.items()]
    for (name, _), tensor in zip(name_to_value.items(), tensors):
        if tensor.ndim != 4 or tensor.shape[1] != 1:
            raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(tensor.shape)}.")
    shapes = {name: tuple(tensor.shape) for (name, _), tensor in zip(name_to_value.items(), tensors)}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"maps must have the same shape, got {shapes}.")
    return tensors


def ordering_accuracy(score_sr: torch.Tensor, score_syn: torch.Tensor, score_gt: torch.Tensor) -> torch.Tensor:
    """Fraction of triplets ranked S_SR < S_SYN < S_GT (strict: ties count as wrong). Inputs (B,), output in [0, 1]."""
    sr, syn, gt = _scores({"score_sr": score_sr, "score_syn": score_syn, "score_gt": score_gt})
    return ((sr < syn) & (syn < gt)).double().mean()


def pairwise_accuracies(
    score_sr: torch.Tensor, score_syn: torch.Tensor, score_gt: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Accuracy of each pair of the triplet (strict): ``acc_sr_syn`` (S_SR < S_SYN), ``acc_syn_gt`` (S_SYN < S_GT),
    ``acc_sr_gt`` (S_SR < S_GT). Inputs (B,), outputs 0-dim in [0, 1]."""
    sr, syn, gt = _scores({"score_sr": score_sr, "score_syn": score_syn, "score_gt": score_gt})
    return {
        "acc_sr_syn": (sr < syn).double().mean(),
        "acc_syn_gt": (syn < gt).double().mean(),
        "acc_sr_gt": (sr < gt).double().mean(),
    }


def pdm_l1_per_image(pdm: torch.Tensor, pdm_target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of each map, (B, 1, H, W) x2 -> (B,)."""
    pdm, pdm_target = _maps({"pdm": pdm, "pdm_target": pdm_target})
    return (pdm - pdm_target).abs().flatten(1).mean(dim=1)


def pdm_l1(pdm: torch.Tensor, pdm_target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between the predicted and the target map, averaged over pixels then images."""
    return pdm_l1_per_image(pdm, pdm_target).mean()


def _midranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing the mean of their ranks."""
    _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).double()
    return (last_rank - (counts.double() - 1) / 2)[inverse]


def pdm_auroc_per_image(pdm: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rank-based AUROC of each map's pixels as a detector of the mask's pixels, (B, 1, H, W) x2 -> (B,).

    AUROC = P(pdm at a masked pixel > pdm at an unmasked pixel) + 0.5 * P(equal), computed exactly from mid-ranks
    (Mann-Whitney U / (n_pos * n_neg)). Images whose mask has a single class get NaN.
    """
    pdm, mask = _maps({"pdm": pdm, "mask": mask})
    results = []
    for scores, labels in zip(pdm.flatten(1), mask.flatten(1) > MASK_THRESHOLD):
        n_pos = int(labels.sum())
        n_neg = labels.numel() - n_pos
        if n_pos == 0 or n_neg == 0:
            results.append(math.nan)
            continue
        rank_sum = _midranks(scores)[labels].sum().item()
        results.append((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return torch.tensor(results, dtype=torch.float64)


def pdm_auroc(pdm: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image AUROC (see `pdm_auroc_per_image`) averaged over images whose mask has both classes; NaN if none."""
    per_image = pdm_auroc_per_image(pdm, mask)
    valid = per_image[~per_image.isnan()]
    return valid.mean() if valid.numel() else torch.tensor(math.nan, dtype=torch.float64)


def pdm_iou_per_image(pdm: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU of ``pdm > threshold`` with the mask, (B, 1, H, W) x2 -> (B,). Both empty counts as a perfect 1."""
    pdm, mask = _maps({"pdm": pdm, "mask": mask})
    predicted = (pdm > threshold).flatten(1)
    target = (mask > MASK_THRESHOLD).flatten(1)
    intersection = (predicted & target).sum(dim=1).double()
    union = (predicted | target).sum(dim=1).double()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def pdm_iou(pdm: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Mean over images of `pdm_iou_per_image`, in [0, 1]."""
    return pdm_iou_per_image(pdm, mask, threshold).mean()


def score_drift(score_gt: torch.Tensor, base_score_gt: torch.Tensor) -> torch.Tensor:
    """Mean |S(GT) - S_base(GT)|: how far the trained RM moved from the frozen RM_0 on clean images (L_align)."""
    score, base = _scores({"score_gt": score_gt, "base_score_gt": base_score_gt})
    return (score - base).abs().mean()


class RMMetricsAccumulator:
    """Accumulate RM metrics over batches, then `compute` them over the whole set.

    Every argument of `update` is optional, so the same object serves triplet-only, map-only and full evaluations;
    `compute` reports the metrics for which data arrived. Map metrics are averaged per image, so batches of
    different resolutions combine correctly.

    Example:

    ```python
    >>> accumulator = RMMetricsAccumulator()
    >>> for batch in loader:
    ...     accumulator.update(score_sr=s_sr, score_syn=s_syn, score_gt=s_gt, pdm=pdm_syn, pdm_target=t, mask=m)
    >>> accumulator.compute()  # {"ordering_accuracy": ..., "acc_sr_syn": ..., "pdm_l1": ..., "pdm_auroc": ...}
    ```
    """

    def __init__(self, iou_threshold: float = 0.5):
        self.iou_threshold = iou_threshold
        self.reset()

    def reset(self) -> None:
        self._values: dict[str, list[torch.Tensor]] = {}

    def _add(self, name: str, per_sample: torch.Tensor) -> None:
        self._values.setdefault(name, []).append(per_sample.double())

    def update(
        self,
        score_sr: torch.Tensor | None = None,
        score_syn: torch.Tensor | None = None,
        score_gt: torch.Tensor | None = None,
        pdm: torch.Tensor | None = None,
        pdm_target: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        base_score_gt: torch.Tensor | None = None,
    ) -> None:
        """Add one batch. Scores are (B,), maps (B, 1, H, W); ``pdm`` is the map predicted for the SYN images.

        The ordering metrics need all three scores; ``pdm_l1`` needs ``pdm`` and ``pdm_target``; AUROC and IoU need
        ``pdm`` and ``mask``; ``score_drift`` needs ``score_gt`` and ``base_score_gt``.
        """
        triplet_given = [score is not None for score in (score_sr, score_syn, score_gt)]
        if any(triplet_given[:2]) and not all(triplet_given):
            raise ValueError("ordering metrics need score_sr, score_syn and score_gt together.")
        if all(triplet_given):
            sr, syn, gt = _scores({"score_sr": score_sr, "score_syn": score_syn, "score_gt": score_gt})
            self._add("ordering_accuracy", (sr < syn) & (syn < gt))
            self._add("acc_sr_syn", sr < syn)
            self._add("acc_syn_gt", syn < gt)
            self._add("acc_sr_gt", sr < gt)
        if (pdm_target is not None or mask is not None) and pdm is None:
            raise ValueError("pdm_target / mask were given without pdm.")
        if pdm is not None and pdm_target is not None:
            self._add("pdm_l1", pdm_l1_per_image(pdm, pdm_target))
        if pdm is not None and mask is not None:
            self._add("pdm_auroc", pdm_auroc_per_image(pdm, mask))
            self._add("pdm_iou", pdm_iou_per_image(pdm, mask, self.iou_threshold))
        if base_score_gt is not None:
            if score_gt is None:
                raise ValueError("base_score_gt was given without score_gt.")
            score, base = _scores({"score_gt": score_gt, "base_score_gt": base_score_gt})
            self._add("score_drift", (score - base).abs())

    def compute(self) -> dict[str, float]:
        """Mean of each metric over all samples seen (NaN per-image AUROCs are left out; NaN if none is valid)."""
        results = {}
        for name, chunks in self._values.items():
            values = torch.cat(chunks)
            values = values[~values.isnan()]
            results[name] = values.mean().item() if values.numel() else math.nan
        return results


__all__ = [
    "MASK_THRESHOLD",
    "RM_METRICS_LOWER_BETTER",
    "RMMetricsAccumulator",
    "ordering_accuracy",
    "pairwise_accuracies",
    "pdm_auroc",
    "pdm_auroc_per_image",
    "pdm_iou",
    "pdm_iou_per_image",
    "pdm_l1",
    "pdm_l1_per_image",
    "score_drift",
]
