"""What a metric is: its metadata (`FinPercepMetricSpec`, `FinPercepWeightFile`) and the callable every built
metric is (`FinPercepMetric`: ``metric(image_sr, image_gt=None) -> (B,)`` scores)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# PSNR of identical images is infinite; the MSE is floored so that means over a dataset stay finite (100 dB).
PSNR_MIN_MSE = 1e-10


class FinPercepMissingWeightsError(FileNotFoundError):
    """A metric's weight files are not on this machine; the message names each file and where to put it."""


@dataclass(frozen=True)
class FinPercepWeightFile:
    """One file that a metric reads when it is built.

    Either ``path`` relative to the torch hub directory (or to ``weights_dir``), or, with ``repo_id``, the file
    ``path`` of that Hugging Face repository in the local Hugging Face cache. ``option`` names the builder keyword
    that receives the resolved local path (for checkpoints whose location the backend lets us pass explicitly).
    """

    path: str
    url: str
    repo_id: str | None = None
    option: str | None = None


@dataclass(frozen=True)
class FinPercepMetricSpec:
    """Metadata of one metric and how to build it.

    ``builder(spec, weight_paths=..., weights_dir=..., device=..., rm=..., **options)`` returns a
    [`FinPercepMetric`]; ``weight_paths`` maps each ``FinPercepWeightFile.option`` to its resolved local path,
    ``weights_dir`` is the user's weights directory or None, ``rm`` a FinPercep-RM path or model (only metrics
    with ``needs_model`` use it).
    """

    name: str
    display_name: str
    lower_better: bool
    score_range: tuple[float, float]
    needs_reference: bool
    builder: Callable[..., FinPercepMetric]
    weights: tuple[FinPercepWeightFile, ...] = ()
    needs_model: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def needs_weights(self) -> bool:
        return bool(self.weights) or self.needs_model

    @property
    def label(self) -> str:
        """Column label as in the paper's tables, e.g. ``"LPIPS ↓"``."""
        return f"{self.display_name} {'↓' if self.lower_better else '↑'}"


class FinPercepMetric:
    """A built metric: ``metric(image_sr, image_gt=None) -> (B,)`` float32 scores on CPU.

    Subclasses implement `compute`; `__call__` checks the inputs against the spec (reference needed, shapes).
    """

    def __init__(self, spec: FinPercepMetricSpec, device: str | torch.device = "cpu"):
        self.spec = spec
        self.device = torch.device(device)

    def compute(self, image_sr: torch.Tensor, image_gt: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, image_sr: torch.Tensor, image_gt: torch.Tensor | None = None) -> torch.Tensor:
        if image_sr.ndim != 4 or image_sr.shape[1] != 3:
            raise ValueError(f"{self.spec.name}: image_sr must be (B, 3, H, W), got {tuple(image_sr.shape)}.")
        if self.spec.needs_reference:
            if image_gt is None:
                raise ValueError(f"{self.spec.name} is a full-reference metric: it needs image_gt.")
            if image_gt.shape != image_sr.shape:
                raise ValueError(
                    f"{self.spec.name}: image_sr {tuple(image_sr.shape)} and image_gt {tuple(image_gt.shape)} "
                    "must have the same shape."
                )
            image_gt = image_gt.to(self.device, torch.float32)
        scores = self.compute(image_sr.to(self.device, torch.float32), image_gt if self.spec.needs_reference else None)
        return scores.reshape(image_sr.shape[0]).float().cpu()


__all__ = [
    "FinPercepMetric",
    "FinPercepMetricSpec",
    "FinPercepMissingWeightsError",
    "FinPercepWeightFile",
    "PSNR_MIN_MSE",
]
