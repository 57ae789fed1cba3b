"""The Table-1 metric suite (paper Sec. 4): a registry of image-quality metrics with their metadata.

Each registry entry is a [`FinPercepMetricSpec`]: direction (``lower_better``), ``score_range``, whether it needs
the ground-truth (GT) reference, which weight files it needs, and a builder. [`build_metric`] checks every weight
file *before* constructing anything, so a missing file is a clear `FinPercepMissingWeightsError` (naming the file,
where to put it and where to get it), never a download. Heavy dependencies (pyiqa, the reward model) are imported
lazily.

Every built metric is a [`FinPercepMetric`]: ``metric(image_sr, image_gt=None) -> (B,) float32 scores`` for
``image_sr`` / ``image_gt`` of shape (B, 3, H, W), float in [0, 1].

Where pyiqa looks for weights: its own checkpoints in ``<torch hub dir>/pyiqa``, the OpenAI CLIP backbones in
``<torch hub dir>/clip`` and torchvision backbones in ``<torch hub dir>/checkpoints`` (the torch hub dir is
``~/.cache/torch/hub`` unless ``TORCH_HOME`` says otherwise); timm backbones in the Hugging Face cache. A
``weights_dir`` replaces the torch hub dir: lay it out the same way (``weights_dir/pyiqa/...``,
``weights_dir/clip/...``, ``weights_dir/checkpoints/...``).
"""

from .classes import (
    FinPercepPSNR,
    FinPercepPyIQAMetric,
    FinPercepReferenceMetric,
    FinPercepRMScore,
    FinPercepSSIM,
    psnr,
    rgb_to_y,
    ssim,
)
from .registry import METRIC_REGISTRY, PAPER_METRICS, build_metric, get_metric_spec, list_metrics, register_metric
from .spec import FinPercepMetric, FinPercepMetricSpec, FinPercepMissingWeightsError, FinPercepWeightFile
from .weights import resolve_weight_files, torch_hub_dir_set_to

__all__ = [
    "FinPercepMetric",
    "FinPercepMetricSpec",
    "FinPercepMissingWeightsError",
    "FinPercepPSNR",
    "FinPercepPyIQAMetric",
    "FinPercepRMScore",
    "FinPercepReferenceMetric",
    "FinPercepSSIM",
    "FinPercepWeightFile",
    "METRIC_REGISTRY",
    "PAPER_METRICS",
    "build_metric",
    "get_metric_spec",
    "list_metrics",
    "psnr",
    "register_metric",
    "resolve_weight_files",
    "rgb_to_y",
    "ssim",
    "torch_hub_dir_set_to",
]
