"""What the toolkit adapters share: turning a toolkit's image batch into ``pixel_values`` and scoring it."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..models import FinPercepImageProcessor, FinPercepOutput, FinPercepRewardModel
from ..rewards import load_reward_model

ToolkitImages = torch.Tensor | np.ndarray | Sequence[Image.Image | np.ndarray | torch.Tensor | str | os.PathLike]
DEFAULT_PDM_THRESHOLD = 0.5


def load_scorer(model: FinPercepRewardModel | str | os.PathLike, device: torch.device | str | None = None):
    """A frozen eval-mode RM from a model object or a checkpoint directory / Hub id, moved to ``device`` if given."""
    if isinstance(model, (str, os.PathLike)):
        model = load_reward_model(str(model))
    elif isinstance(model, FinPercepRewardModel):
        model = model.eval().requires_grad_(False)
    else:
        raise TypeError(f"model must be a FinPercepRewardModel or a checkpoint path, got {type(model).__name__}.")
    return model.to(device) if device is not None else model


def images_to_pixel_values(images: ToolkitImages, device: torch.device | str | None = None) -> torch.Tensor:
    """A toolkit's image batch -> ``pixel_values`` (B, 3, H, W) float32 in [0, 1] on ``device``.

    Accepted: a float tensor/array (B, 3, H, W) in [0, 1] (gradients kept), a uint8 tensor/array (B, H, W, 3) or
    (B, 3, H, W) in 0-255, or a list of PIL images, arrays, (3, H, W) tensors or paths (the image processor's
    rules; they must share a size).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
            raise ValueError(f"images must be (B, 3, H, W) or (B, H, W, 3), got shape {tuple(images.shape)}.")
        if images.shape[1] != 3:
            images = images.permute(0, 3, 1, 2)
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        return images.to(device=device, dtype=torch.float32)
    return FinPercepImageProcessor()(list(images))["pixel_values"].to(device)


def pdm_statistics(pdm: torch.Tensor | None, threshold: float = DEFAULT_PDM_THRESHOLD) -> dict[str, torch.Tensor]:
    """Per-image statistics of a Perceptual Degradation Map (B, 1, H, W) in [0, 1]; ``{}`` for RM_0 (no map).

    Returns ``pdm_mean``, ``pdm_max`` and ``pdm_area`` (fraction of pixels with ``pdm > threshold``), each (B,).
    """
    if pdm is None:
        return {}
    flat = pdm.detach().flatten(1).float()
    return {
        "pdm_mean": flat.mean(dim=1),
        "pdm_max": flat.amax(dim=1),
        "pdm_area": (flat > threshold).float().mean(dim=1),
    }


@torch.no_grad()
def score_images(model: FinPercepRewardModel, images: ToolkitImages) -> FinPercepOutput:
    """The RM's output for a toolkit's image batch (no gradients), on the model's device."""
    return model(images_to_pixel_values(images, model.device))


__all__ = ["DEFAULT_PDM_THRESHOLD", "images_to_pixel_values", "load_scorer", "pdm_statistics", "score_images"]
