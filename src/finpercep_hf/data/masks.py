"""Swap masks ``M`` and the region swap ``image_syn = M * image_sr + (1 - M) * image_gt`` (paper Eq. 3).

A mask is a (H, W) float32 tensor with values in {0, 1}; its *area ratio* is its mean. ``random_mask`` draws
rectangles or free-form strokes whose area ratio lies in ``area_range``; ``SemanticMasker`` picks SAM segments (the
transformers ``mask-generation`` pipeline) within the same bounds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from .degradations import uniform

MASK_TYPES = ("rectangle", "stroke", "semantic")


def _check_area_range(area_range: tuple[float, float]) -> None:
    low, high = area_range
    if not 0 < low <= high <= 1:
        raise ValueError(f"area_range must satisfy 0 < low <= high <= 1, got {area_range}.")


def _rectangle(height: int, width: int, generator: torch.Generator, area_range: tuple[float, float]) -> np.ndarray:
    target = uniform(generator, *area_range) * height * width
    aspect = math.exp(uniform(generator, math.log(1 / 3), math.log(3)))
    box_h = min(height, max(1, round(math.sqrt(target / aspect))))
    box_w = min(width, max(1, round(target / box_h)))
    box_h = min(height, max(1, round(target / box_w)))
    top = int(torch.randint(0, height - box_h + 1, (), generator=generator))
    left = int(torch.randint(0, width - box_w + 1, (), generator=generator))
    mask = np.zeros((height, width), dtype=np.float32)
    mask[top : top + box_h, left : left + box_w] = 1.0
    return mask


def _stroke(height: int, width: int, generator: torch.Generator, area_range: tuple[float, float]) -> np.ndarray:
    """Free-form strokes (thick random polylines, as in DeepFill v2) added until the area reaches a drawn target."""
    low, high = area_range
    target = uniform(generator, low, high)
    canvas = Image.new("L", (width, height), 0)
    area = 0.0
    base_width = max(2.0, 0.5 * math.sqrt(target * height * width) / 3)
    for attempt in range(200):
        candidate = canvas.copy()
        draw = ImageDraw.Draw(candidate)
        line_width = max(1, round(base_width * uniform(generator, 0.5, 1.5) / (1 + attempt // 20)))
        x, y = uniform(generator, 0, width), uniform(generator, 0, height)
        points = [(x, y)]
        for _ in range(int(torch.randint(3, 9, (), generator=generator))):
            angle = uniform(generator, 0, 2 * math.pi)
            length = uniform(generator, 0.1, 0.35) * max(height, width)
            dx, dy = length * math.cos(angle), length * math.sin(angle)
            x = min(max(x + dx if 0 <= x + dx < width else x - dx, 0), width - 1)  # bounce off the borders
            y = min(max(y + dy if 0 <= y + dy < height else y - dy, 0), height - 1)
            points.append((x, y))
        draw.line(points, fill=255, width=line_width, joint="curve")
        for px, py in points:
            radius = line_width / 2
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)
        candidate_area = (np.asarray(candidate) > 0).mean()
        if candidate_area <= high:
            canvas, area = candidate, candidate_area
            if area >= target:
                break
    if area < low:
        raise RuntimeError(f"could not draw strokes covering {area_range} of a {height}x{width} mask.")
    return (np.asarray(canvas) > 0).astype(np.float32)


def random_mask(
    height: int,
    width: int,
    kind: str,
    generator: torch.Generator | None = None,
    area_range: tuple[float, float] = (0.1, 0.5),
) -> torch.Tensor:
    """A random ``"rectangle"`` or free-form ``"stroke"`` mask: (H, W) float32 in {0, 1}, mean in ``area_range``."""
    _check_area_range(area_range)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    if kind == "rectangle":
        return torch.from_numpy(_rectangle(height, width, generator, area_range))
    if kind == "stroke":
        return torch.from_numpy(_stroke(height, width, generator, area_range))
    raise ValueError(f"random mask kind must be 'rectangle' or 'stroke', got {kind!r}.")


class SemanticMasker:
    """Semantic masks from SAM: the transformers ``mask-generation`` pipeline, or ``segment_anything``.

    ``masker(image, generator)`` returns one segment (or a union of smaller segments) whose area ratio lies in
    ``area_range`` as a (H, W) float32 tensor in {0, 1}, or None when SAM finds no such segment (the caller then
    falls back to a random mask and records that mask type).

    Args:
        model: a SAM checkpoint id or path for transformers (e.g. ``facebook/sam-vit-base``);
            ``"segment_anything:<model_type>:<checkpoint.pth>"`` (e.g. ``segment_anything:vit_b:sam_vit_b.pth``,
            needs the optional ``segment-anything`` package); or a ready ``mask-generation`` pipeline or
            ``segment_anything.SamAutomaticMaskGenerator``.
        area_range: bounds of the area ratio.
        points_per_batch: prompt points per forward pass.
        points_per_crop: the prompt grid has ``points_per_crop``^2 points (SAM's default 32).
        pred_iou_thresh, stability_score_thresh: SAM's segment filters (the pipeline's defaults).
        device: torch device for SAM (default: the current CUDA device when there is one, else CPU).
    """

    def __init__(
        self,
        model="facebook/sam-vit-base",
        area_range: tuple[float, float] = (0.1, 0.5),
        points_per_batch: int = 64,
        points_per_crop: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        device: str | int | None = None,
    ) -> None:
        _check_area_range(area_range)
        if device is None and torch.cuda.is_available():
            device = torch.cuda.current_device()
        if isinstance(model, str) and model.startswith("segment_anything:"):
            model = self._segment_anything(model, device, points_per_crop, points_per_batch, pred_iou_thresh,
                                           stability_score_thresh)  # fmt: skip
        elif isinstance(model, str):
            from transformers import pipeline

            model = pipeline("mask-generation", model=model, device=device)
        self.pipeline = model
        self.area_range = area_range
        self.points_per_batch, self.points_per_crop = points_per_batch, points_per_crop
        self.pred_iou_thresh, self.stability_score_thresh = pred_iou_thresh, stability_score_thresh

    @staticmethod
    def _segment_anything(spec: str, device, points_per_side: int, points_per_batch: int, pred_iou_thresh: float,
                          stability_score_thresh: float):  # fmt: skip
        _, model_type, checkpoint = spec.split(":", 2)
        try:
            from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
        except ImportError as error:
            raise ImportError(f"{spec}: install the optional package: pip install 'finpercep-hf[sam]'.") from error
        if model_type not in sam_model_registry:
            raise ValueError(f"{spec}: model type must be one of {sorted(sam_model_registry)}.")
        sam = sam_model_registry[model_type](checkpoint=checkpoint).to("cpu" if device is None else device)
        return SamAutomaticMaskGenerator(
            sam,
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
        )

    def segments(self, image: Image.Image) -> list[np.ndarray]:
        """All SAM segments of ``image`` as (H, W) bool arrays."""
        if hasattr(self.pipeline, "generate"):  # segment_anything's SamAutomaticMaskGenerator
            return [np.asarray(item["segmentation"], dtype=bool) for item in self.pipeline.generate(np.asarray(image))]
        outputs = self.pipeline(
            image,
            points_per_batch=self.points_per_batch,
            points_per_crop=self.points_per_crop,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh,
        )
        return [np.asarray(mask, dtype=bool) for mask in outputs["masks"]]

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor | None:
        return self.pick(self.segments(image), generator)

    def pick(self, segments: list[np.ndarray], generator: torch.Generator | None = None) -> torch.Tensor | None:
        """A random segment with its area ratio in ``area_range``; failing that, a union of segments that fits;
        failing that, None."""
        if not segments:
            return None
        low, high = self.area_range
        order = torch.randperm(len(segments), generator=generator).tolist()
        for index in order:
            if low <= segments[index].mean() <= high:
                return torch.from_numpy(segments[index].astype(np.float32))
        union = np.zeros(segments[0].shape, dtype=bool)
        for index in order:
            candidate = union | segments[index]
            if candidate.mean() <= high:
                union = candidate
                if union.mean() >= low:
                    return torch.from_numpy(union.astype(np.float32))
        return None


def region_swap(image_gt: torch.Tensor, image_sr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 3: ``image_syn = mask * image_sr + (1 - mask) * image_gt``.

    Args:
        image_gt, image_sr: (B, 3, H, W) or (3, H, W) float in [0, 1], same shape.
        mask: (H, W), (1, H, W) or (B, 1, H, W) float in [0, 1]; with a binary mask the swap is exact
            (``image_sr`` bit for bit where ``mask == 1``, ``image_gt`` where ``mask == 0``).

    Returns:
        ``image_syn``, the shape of ``image_gt``.
    """
    if image_gt.shape != image_sr.shape:
        raise ValueError(f"image_gt {tuple(image_gt.shape)} and image_sr {tuple(image_sr.shape)} differ in shape.")
    if mask.shape[-2:] != image_gt.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the image size {tuple(image_gt.shape[-2:])}.")
    mask = mask.to(image_gt)
    if mask.ndim == 2:
        mask = mask[None]
    return mask * image_sr + (1 - mask) * image_gt


__all__ = ["MASK_TYPES", "SemanticMasker", "random_mask", "region_swap"]
