"""The metric classes: PSNR and SSIM (BasicSR conventions), pyiqa metrics, the FinPercep-RM global score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .spec import (
    PSNR_MIN_MSE,
    FinPercepMetric,
    FinPercepMetricSpec,
)
from .weights import (
    torch_hub_dir_set_to,
)


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma as used in SR evaluation (MATLAB ``rgb2ycbcr``): (B, 3, H, W) in [0, 1] -> (B, 1, H, W)
    in [16/255, 235/255]."""
    weights = image.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (16.0 + (image * weights).sum(dim=1, keepdim=True)) / 255.0


def psnr(image_sr: torch.Tensor, image_gt: torch.Tensor, y_channel: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (peak 1): (B, 3, H, W) x2 -> (B,).

    The MSE is floored at `PSNR_MIN_MSE`, so identical images score 100 dB instead of infinity.
    """
    if y_channel:
        image_sr, image_gt = rgb_to_y(image_sr), rgb_to_y(image_gt)
    mse = (image_sr - image_gt).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp(min=PSNR_MIN_MSE))


def ssim(
    image_sr: torch.Tensor, image_gt: torch.Tensor, y_channel: bool = False, window_size: int = 11
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, peak 1), averaged
    over the valid (unpadded) window positions and the channels: (B, 3, H, W) x2 in [0, 1] -> (B,) in [-1, 1]."""
    from kornia.metrics import ssim as ssim_map

    if y_channel:
        image_sr, image_gt = rgb_to_y(image_sr), rgb_to_y(image_gt)
    if min(image_sr.shape[-2:]) < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size}, got {tuple(image_sr.shape)}.")
    return ssim_map(image_sr, image_gt, window_size, max_val=1.0, padding="valid").flatten(1).mean(dim=1)


class FinPercepReferenceMetric(FinPercepMetric):
    """Base of the full-reference pixel metrics, computed on RGB or, with ``y_channel``, on the BT.601 luma."""

    def __init__(self, spec: FinPercepMetricSpec, device: str | torch.device = "cpu", y_channel: bool = False):
        super().__init__(spec, device)
        self.y_channel = y_channel


class FinPercepPSNR(FinPercepReferenceMetric):
    def compute(self, image_sr: torch.Tensor, image_gt: torch.Tensor | None) -> torch.Tensor:
        return psnr(image_sr, image_gt, y_channel=self.y_channel)


class FinPercepSSIM(FinPercepReferenceMetric):
    def compute(self, image_sr: torch.Tensor, image_gt: torch.Tensor | None) -> torch.Tensor:
        return ssim(image_sr, image_gt, y_channel=self.y_channel)


class FinPercepPyIQAMetric(FinPercepMetric):
    """A pyiqa metric (``pip install finpercep-hf[eval]``), built offline from local weight files.

    ``torch_hub_dir`` replaces the torch hub directory during construction (see `torch_hub_dir_set_to`);
    ``pyiqa_options`` go to ``pyiqa.create_metric`` (e.g. ``pretrained_model_path``).
    """

    def __init__(
        self,
        spec: FinPercepMetricSpec,
        pyiqa_name: str,
        device: str | torch.device = "cpu",
        torch_hub_dir: str | Path | None = None,
        **pyiqa_options: Any,
    ):
        super().__init__(spec, device)
        try:
            import pyiqa
        except ImportError as error:
            raise ImportError(
                f"The metric {spec.name!r} needs pyiqa: pip install 'finpercep-hf[eval]' "
                "(or pip install pyiqa 'setuptools<82')."
            ) from error
        with torch_hub_dir_set_to(torch_hub_dir):
            self.model = pyiqa.create_metric(pyiqa_name, as_loss=False, device=self.device, **pyiqa_options)

    def compute(self, image_sr: torch.Tensor, image_gt: torch.Tensor | None) -> torch.Tensor:
        return self.model(image_sr) if image_gt is None else self.model(image_sr, image_gt)


class FinPercepRMScore(FinPercepMetric):
    """The global score of a FinPercep-RM (``global_score`` in [0, 1], higher is better)."""

    def __init__(self, spec: FinPercepMetricSpec, model: Any, device: str | torch.device = "cpu"):
        super().__init__(spec, device)
        self.model = model.to(self.device).eval()

    def compute(self, image_sr: torch.Tensor, image_gt: torch.Tensor | None) -> torch.Tensor:
        return self.model(image_sr).global_score


__all__ = [
    "FinPercepPSNR",
    "FinPercepPyIQAMetric",
    "FinPercepRMScore",
    "FinPercepReferenceMetric",
    "FinPercepSSIM",
    "psnr",
    "rgb_to_y",
    "ssim",
]
