"""Running the metric suite over a directory of SR outputs (and the matching GT images) — the engine behind
``finpercep evaluate``.

SR and GT (ground-truth) files are paired by their path relative to their directory, without the extension
(``sr/0001.png`` <-> ``gt/0001.jpg``). Every SR output needs its GT image and the other way round; sizes must
match (no silent resizing).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from ..images import FinPercepImageError, list_images, load_image, pil_to_tensor
from .metrics import FinPercepMetric, FinPercepReferenceMetric
from .table import FinPercepResult

# How many unmatched names an error message lists before "... and N more".
MAX_LISTED_NAMES = 5


@dataclass(frozen=True)
class FinPercepImagePair:
    """One SR output and its ground-truth reference (``None``: no-reference evaluation); ``key``: the pairing name."""

    key: str
    image_sr: Path
    image_gt: Path | None


def _keyed_images(directory: Path, role: str) -> dict[str, Path]:
    if not directory.is_dir():
        raise FinPercepImageError(f"{role} directory {directory} does not exist.")
    keyed: dict[str, Path] = {}
    for path in list_images([directory]):
        key = path.relative_to(directory).with_suffix("").as_posix()
        if key in keyed:
            raise FinPercepImageError(f"{role} directory {directory}: {keyed[key].name} and {path.name} share a name.")
        keyed[key] = path
    if not keyed:
        raise FinPercepImageError(f"{role} directory {directory} contains no images.")
    return keyed


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    return shown + (f" ... and {len(names) - MAX_LISTED_NAMES} more" if len(names) > MAX_LISTED_NAMES else "")


def pair_images(sr_dir: str | os.PathLike, gt_dir: str | os.PathLike | None = None) -> list[FinPercepImagePair]:
    """Pair the images of ``sr_dir`` with those of ``gt_dir`` by name (see the module docstring), sorted by key."""
    sr_images = _keyed_images(Path(sr_dir), "SR")
    if gt_dir is None:
        return [FinPercepImagePair(key, path, None) for key, path in sorted(sr_images.items())]
    gt_images = _keyed_images(Path(gt_dir), "GT")
    without_gt = sorted(set(sr_images) - set(gt_images))
    without_sr = sorted(set(gt_images) - set(sr_images))
    if without_gt:
        raise FinPercepImageError(f"SR images with no GT image of the same name in {gt_dir}: {_listed(without_gt)}.")
    if without_sr:
        raise FinPercepImageError(f"GT images with no SR output of the same name in {sr_dir}: {_listed(without_sr)}.")
    return [FinPercepImagePair(key, sr_images[key], gt_images[key]) for key in sorted(sr_images)]


def _load_within(path: Path, max_pixels: int) -> Image.Image:
    """`load_image` (which refuses decompression bombs), refusing an image of more than ``max_pixels`` pixels."""
    image = load_image(path)
    if max_pixels and image.width * image.height > max_pixels:
        raise FinPercepImageError(
            f"{path} is {image.width}x{image.height} = {image.width * image.height} pixels, over --max_pixels "
            f"{max_pixels}."
        )
    return image


def evaluate_pairs(
    pairs: list[FinPercepImagePair],
    metrics: Mapping[str, FinPercepMetric],
    progress: bool = True,
    crop_border: int = 0,
    max_pixels: int = 0,
) -> list[dict[str, float | str]]:
    """Score every pair with every metric, one image at a time; returns ``[{"image": key, name: score, ...}]``.

    Reference metrics need every pair to have a GT image; an SR/GT size mismatch is an error naming both files.
    ``crop_border`` pixels are shaved off every side before PSNR and SSIM (BasicSR's ``crop_border``; SR papers
    use the scale, 4); the other metrics see the whole image. An image of more than ``max_pixels`` pixels (0: no
    limit) is a `FinPercepImageError` naming it: metrics compare pixels, so nothing is downscaled.
    """
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}.")
    needs_reference = [name for name, metric in metrics.items() if metric.spec.needs_reference]
    if needs_reference and any(pair.image_gt is None for pair in pairs):
        raise ValueError(f"full-reference metrics {', '.join(needs_reference)} need GT images (--gt DIR).")
    rows = []
    for pair in tqdm(pairs, desc="evaluating", unit="img", disable=not progress, file=sys.stderr):
        image_sr = _load_within(pair.image_sr, max_pixels)
        image_gt = _load_within(pair.image_gt, max_pixels) if pair.image_gt is not None else None
        if image_gt is not None and image_gt.size != image_sr.size:
            raise FinPercepImageError(
                f"{pair.image_sr} is {image_sr.size[0]}x{image_sr.size[1]} but its GT image {pair.image_gt} is "
                f"{image_gt.size[0]}x{image_gt.size[1]}."
            )
        tensor_sr = pil_to_tensor(image_sr).unsqueeze(0)
        tensor_gt = pil_to_tensor(image_gt).unsqueeze(0) if image_gt is not None else None
        row: dict[str, float | str] = {"image": pair.key}
        for name, metric in metrics.items():
            if crop_border and isinstance(metric, FinPercepReferenceMetric):
                if 2 * crop_border >= min(tensor_sr.shape[-2:]):
                    raise ValueError(f"crop_border {crop_border} leaves nothing of {pair.image_sr}.")
                shave = (..., slice(crop_border, -crop_border), slice(crop_border, -crop_border))
                row[name] = metric(tensor_sr[shave], tensor_gt[shave]).item()
            else:
                row[name] = metric(tensor_sr, tensor_gt).item()
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, float | str]], dataset: str, run: str) -> list[FinPercepResult]:
    """Mean of each metric column of `evaluate_pairs`' rows (NaN scores left out) as table records."""
    if not rows:
        return []
    results = []
    for name in (key for key in rows[0] if key != "image"):
        values = [row[name] for row in rows if not math.isnan(row[name])]
        results.append(FinPercepResult(dataset, name, run, sum(values) / len(values) if values else math.nan))
    return results


__all__ = ["FinPercepImagePair", "evaluate_pairs", "pair_images", "summarize"]
