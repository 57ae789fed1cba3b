"""A pyiqa-style metric object for FinPercep-RM: ``metric(images) -> (B,)`` scores, or a differentiable loss.

It follows pyiqa's ``InferenceModel`` interface (``metric_name``, ``metric_mode``, ``lower_better``,
``score_range``, ``as_loss``, ``loss_weight``, ``loss_reduction``; ``forward(target, ref=None)`` on a (B, 3, H, W)
tensor in [0, 1] or on image paths), so code written against ``pyiqa.create_metric(...)`` objects takes it as is.

``pyiqa.create_metric("finpercep")`` does not resolve to it: pyiqa (0.1.16) accepts only names listed in its module
dictionary ``pyiqa.default_model_configs.DEFAULT_CONFIGS``, and offers no registration call for it. Its
``ARCH_REGISTRY`` (and the ``pyiqa.archs`` entry-point group) registers network classes, but ``create_metric``
still needs the name in that dictionary; adding it would mean mutating pyiqa's internals, which we do not do.

```python
>>> from finpercep_hf.integrations import FinPercepMetric
>>> metric = FinPercepMetric("finpercep-rm-stage3", device="cuda")
>>> metric("photo.png"), metric(images)          # (1,) and (B,) scores in [0, 1], higher is better
>>> loss = 1 - FinPercepMetric(rm, as_loss=True)(sr_images)   # mean score with gradients to sr_images
```
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from PIL import Image
from torch import nn

from ..models import FinPercepRewardModel
from .common import images_to_pixel_values, load_scorer

METRIC_INPUT = torch.Tensor | str | os.PathLike | Image.Image | Sequence[str | os.PathLike | Image.Image]
LOSS_REDUCTIONS = ("mean", "sum", "none")


class FinPercepMetric(nn.Module):
    """FinPercep-RM's ``global_score`` as a no-reference IQA metric (pyiqa conventions).

    Args:
        model: a [`FinPercepRewardModel`] or a checkpoint directory / Hub id (frozen, eval mode).
        as_loss: keep gradients to the input and return the reduced, weighted score (pyiqa's loss mode).
        loss_weight: factor on the score in loss mode.
        loss_reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch in loss mode.
        device: where to run the model (default: where it is).
    """

    metric_name = "finpercep"
    metric_mode = "NR"
    lower_better = False
    score_range = "0, 1"

    def __init__(
        self,
        model: FinPercepRewardModel | str | os.PathLike,
        as_loss: bool = False,
        loss_weight: float = 1.0,
        loss_reduction: str = "mean",
        device: torch.device | str | None = None,
    ):
        super().__init__()
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}.")
        self.net = load_scorer(model, device)
        self.as_loss = as_loss
        self.loss_weight = loss_weight
        self.loss_reduction = loss_reduction

    def forward(self, target: METRIC_INPUT, ref: None = None) -> torch.Tensor:
        """Scores (B,) in [0, 1] of ``target``: a (B, 3, H, W) tensor in [0, 1], an image path or PIL image, or a
        list of them (one size). In loss mode: the weighted mean/sum (or (B,) for ``"none"``), with gradients."""
        if ref is not None:
            raise ValueError("finpercep is a no-reference metric: call it with the image alone.")
        if isinstance(target, (str, os.PathLike, Image.Image)):
            target = [target]
        pixel_values = images_to_pixel_values(target, self.net.device)
        with torch.set_grad_enabled(self.as_loss):
            scores = self.net(pixel_values).global_score
        if not self.as_loss:
            return scores
        weighted = self.loss_weight * scores
        if self.loss_reduction == "mean":
            return weighted.mean()
        return weighted.sum() if self.loss_reduction == "sum" else weighted


__all__ = ["FinPercepMetric"]
