"""The registry of the Table-1 metric suite: name -> `FinPercepMetricSpec` (with its builder), `build_metric`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .classes import (
    FinPercepPSNR,
    FinPercepPyIQAMetric,
    FinPercepRMScore,
    FinPercepSSIM,
)
from .spec import (
    FinPercepMetric,
    FinPercepMetricSpec,
    FinPercepWeightFile,
)
from .weights import (
    clip_weight_file,
    pyiqa_weight_file,
    resolve_weight_files,
)


def _build_reference_metric(spec, weight_paths, weights_dir, device, rm, metric_class, y_channel):
    return metric_class(spec, device=device, y_channel=y_channel)


def _build_pyiqa_metric(spec, weight_paths, weights_dir, device, rm, pyiqa_name):
    options = {option: str(path) for option, path in weight_paths.items()}
    return FinPercepPyIQAMetric(spec, pyiqa_name, device=device, torch_hub_dir=weights_dir, **options)


def _build_rm_score(spec, weight_paths, weights_dir, device, rm):
    from ...models import FinPercepRewardModel

    model = FinPercepRewardModel.from_pretrained(str(rm)) if isinstance(rm, (str, Path)) else rm
    return FinPercepRMScore(spec, model, device=device)


METRIC_REGISTRY: dict[str, FinPercepMetricSpec] = {}


def register_metric(spec: FinPercepMetricSpec) -> FinPercepMetricSpec:
    """Add ``spec`` to `METRIC_REGISTRY` (names are unique, lower case)."""
    if spec.name in METRIC_REGISTRY:
        raise ValueError(f"a metric named {spec.name!r} is already registered.")
    METRIC_REGISTRY[spec.name] = spec
    return spec


register_metric(
    FinPercepMetricSpec(
        "psnr",
        "PSNR",
        lower_better=False,
        score_range=(0.0, 100.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepPSNR, "y_channel": False},
        description="PSNR in dB on RGB, peak 1.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "psnr_y",
        "PSNR-Y",
        lower_better=False,
        score_range=(0.0, 100.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepPSNR, "y_channel": True},
        description="PSNR in dB on the BT.601 luma (the usual SR protocol), peak 1.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "ssim",
        "SSIM",
        lower_better=False,
        score_range=(-1.0, 1.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepSSIM, "y_channel": False},
        description="SSIM (Gaussian 11x11, sigma 1.5) on RGB.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "ssim_y",
        "SSIM-Y",
        lower_better=False,
        score_range=(-1.0, 1.0),
        needs_reference=True,
        builder=_build_reference_metric,
        options={"metric_class": FinPercepSSIM, "y_channel": True},
        description="SSIM (Gaussian 11x11, sigma 1.5) on the BT.601 luma.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "lpips",
        "LPIPS",
        lower_better=True,
        score_range=(0.0, 1.0),
        needs_reference=True,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "lpips"},
        weights=(
            pyiqa_weight_file("LPIPS_v0.1_alex-df73285e.pth"),
            FinPercepWeightFile(
                "checkpoints/alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
            ),
        ),
        description="LPIPS v0.1 (AlexNet) through pyiqa: perceptual distance to the GT image.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "musiq",
        "MUSIQ",
        lower_better=False,
        score_range=(0.0, 100.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "musiq"},
        weights=(pyiqa_weight_file("musiq_koniq_ckpt-e95806b9.pth"),),
        description="MUSIQ (KonIQ-10k) through pyiqa.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "maniqa",
        "MANIQA",
        lower_better=False,
        score_range=(0.0, 1.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "maniqa"},
        weights=(
            # pyiqa's MANIQA reads an explicit checkpoint path with another key layout than its default
            # checkpoint, so this one is found through pyiqa's cache directory instead of passed by path.
            pyiqa_weight_file("ckpt_koniq10k.pt", option=None),
            FinPercepWeightFile(
                "model.safetensors",
                "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
                repo_id="timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
            ),
        ),
        description="MANIQA (KonIQ-10k) through pyiqa; its timm ViT-B/8 backbone comes from the HF cache.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "clipiqa",
        "CLIP-IQA",
        lower_better=False,
        score_range=(0.0, 1.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "clipiqa"},
        weights=(clip_weight_file("RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),),
        description="CLIP-IQA (OpenAI CLIP RN50, antonym prompts) through pyiqa.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "liqe",
        "LIQE",
        lower_better=False,
        score_range=(1.0, 5.0),
        needs_reference=False,
        builder=_build_pyiqa_metric,
        options={"pyiqa_name": "liqe"},
        weights=(
            pyiqa_weight_file("liqe_koniq.pt"),
            clip_weight_file("ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
        ),
        description="LIQE (KonIQ-10k, OpenAI CLIP ViT-B/32) through pyiqa.",
    )
)
register_metric(
    FinPercepMetricSpec(
        "finpercep",
        "FinPercep",
        lower_better=False,
        score_range=(0.0, 1.0),
        needs_reference=False,
        builder=_build_rm_score,
        needs_model=True,
        description="global_score of a FinPercep-RM checkpoint (pass its directory as rm / --rm).",
    )
)

# The paper's Table 1 (Sec. 4): LPIPS for fidelity and four no-reference perceptual metrics.
PAPER_METRICS = ("lpips", "musiq", "maniqa", "clipiqa", "liqe")


def get_metric_spec(name: str) -> FinPercepMetricSpec:
    """The registered spec called ``name``; a `KeyError` listing the known names otherwise."""
    try:
        return METRIC_REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRIC_REGISTRY)}.") from None


def list_metrics(needs_reference: bool | None = None, needs_weights: bool | None = None) -> list[str]:
    """Names of the registered metrics, optionally filtered by their metadata."""
    return [
        spec.name
        for spec in METRIC_REGISTRY.values()
        if (needs_reference is None or spec.needs_reference == needs_reference)
        and (needs_weights is None or spec.needs_weights == needs_weights)
    ]


def build_metric(
    name: str,
    weights_dir: str | Path | None = None,
    rm: str | Path | Any | None = None,
    device: str | torch.device = "cpu",
) -> FinPercepMetric:
    """Build the metric called ``name`` after checking its weight files (see `resolve_weight_files`).

    Args:
        name: a key of `METRIC_REGISTRY` (`list_metrics()`).
        weights_dir: replaces the torch hub directory as the place to find pyiqa, CLIP and torchvision weights.
        rm: for metrics with ``needs_model``: a FinPercep-RM directory or a loaded `FinPercepRewardModel`.
        device: where the metric runs.
    """
    spec = get_metric_spec(name)
    if spec.needs_model and rm is None:
        raise ValueError(f"The metric {spec.name!r} needs a reward model: pass rm= (the --rm PATH option).")
    weight_paths = resolve_weight_files(spec, weights_dir)
    return spec.builder(spec, weight_paths=weight_paths, weights_dir=weights_dir, device=device, rm=rm, **spec.options)


__all__ = [
    "METRIC_REGISTRY",
    "PAPER_METRICS",
    "build_metric",
    "get_metric_spec",
    "list_metrics",
    "register_metric",
]
