"""Artifact implants for the reward-hacking probe (paper Fig. 1a as a tool).

Each artifact kind distorts a whole image; `implant_artifact` pastes the distorted pixels inside a rectangular
region covering a given fraction of the image (``area_fraction = 1`` distorts the whole image). This code is
deliberately independent of the FGR builder (`finpercep_hf.data`), so the probe measures how a reward model
generalises to artifacts it was not trained on.

Images are (3, H, W) float tensors in [0, 1]; masks are (1, H, W) float in {0, 1}; everything random draws from
the ``torch.Generator`` passed in, so a seed fixes the result.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import torch
from kornia.filters import gaussian_blur2d
from PIL import Image

from ..images import pil_to_tensor, tensor_to_pil

# Strengths of the artifacts: visible at a glance, but local enough that a global IQA score barely moves.
BLUR_SIGMA = 3.0
NOISE_STD = 0.1
JPEG_QUALITY = 8
OVERSHARPEN_AMOUNT = 3.0
OVERSHARPEN_SIGMA = 1.5
TEXTURE_AMPLITUDE = 0.08
TEXTURE_SIGMAS = (1.0, 2.5)
COLOR_GAINS = (1.25, 1.0, 0.75)
# Aspect ratios (height / width) of the implant rectangle are drawn log-uniformly from this range.
REGION_ASPECT_RANGE = (0.5, 2.0)


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(image[None], (kernel, kernel), (sigma, sigma), border_type="reflect")[0]


def blur(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur (sigma `BLUR_SIGMA` pixels): lost detail, as an over-smoothing SR model."""
    return _blur(image, BLUR_SIGMA)


def noise(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Additive white Gaussian noise (std `NOISE_STD`), independent per channel."""
    return (image + NOISE_STD * torch.randn(image.shape, generator=generator)).clamp(0, 1)


def jpeg_blocks(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """JPEG compression at quality `JPEG_QUALITY`: 8x8 blocking and ringing."""
    buffer = io.BytesIO()
    tensor_to_pil(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as compressed:
        return pil_to_tensor(compressed.convert("RGB"))


def oversharpen(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Unsharp masking with a large gain: halos and exaggerated edges."""
    return (image + OVERSHARPEN_AMOUNT * (image - _blur(image, OVERSHARPEN_SIGMA))).clamp(0, 1)


def texture_hallucination(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Band-pass filtered noise added to the luminance: fine fake texture that is not in the scene, as a
    generative SR model inventing detail."""
    white = torch.randn((1, *image.shape[-2:]), generator=generator)
    band = _blur(white, TEXTURE_SIGMAS[0]) - _blur(white, TEXTURE_SIGMAS[1])
    band = band / band.std().clamp(min=1e-8)
    return (image + TEXTURE_AMPLITUDE * band).clamp(0, 1)


def color_shift(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A colour cast: per-channel gains `COLOR_GAINS` (warmer, less blue)."""
    return (image * image.new_tensor(COLOR_GAINS).view(3, 1, 1)).clamp(0, 1)


ARTIFACTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "blur": blur,
    "noise": noise,
    "jpeg": jpeg_blocks,
    "oversharpen": oversharpen,
    "texture": texture_hallucination,
    "color_shift": color_shift,
}


def region_mask(height: int, width: int, area_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A rectangle covering about ``area_fraction`` of an (H, W) image at a random place: (1, H, W) in {0, 1}.

    ``area_fraction = 1`` returns an all-ones mask. The rectangle keeps at least one pixel per side.
    """
    if not 0 < area_fraction <= 1:
        raise ValueError(f"area_fraction must be in (0, 1], got {area_fraction}.")
    mask = torch.zeros(1, height, width)
    if area_fraction == 1:
        return mask + 1
    low, high = (math.log(value) for value in REGION_ASPECT_RANGE)
    aspect = math.exp(low + (high - low) * torch.rand((), generator=generator).item())
    area = area_fraction * height * width
    box_h = min(height, max(1, round(math.sqrt(area * aspect))))
    box_w = min(width, max(1, round(area / box_h)))
    top = int(torch.randint(0, height - box_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - box_w + 1, (), generator=generator))
    mask[:, top : top + box_h, left : left + box_w] = 1
    return mask


def implant_artifact(
    image: torch.Tensor, kind: str, area_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distort ``image`` (3, H, W) in [0, 1] with artifact ``kind`` inside a region of ``area_fraction``.

    Returns ``(distorted, mask)``: ``distorted = mask * kind(image) + (1 - mask) * image`` (3, H, W) and the
    region (1, H, W). The artifact is computed on the whole image first, so filters see real context at the
    region's border.
    """
    if kind not in ARTIFACTS:
        raise KeyError(f"unknown artifact {kind!r}; known artifacts: {', '.join(ARTIFACTS)}.")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {tuple(image.shape)}.")
    mask = region_mask(image.shape[1], image.shape[2], area_fraction, generator)
    distorted = ARTIFACTS[kind](image, generator)
    return mask * distorted + (1 - mask) * image, mask


__all__ = [
    "ARTIFACTS",
    "blur",
    "color_shift",
    "implant_artifact",
    "jpeg_blocks",
    "noise",
    "oversharpen",
    "region_mask",
    "texture_hallucination",
]
