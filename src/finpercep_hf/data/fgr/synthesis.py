"""`FGRSynthesizer`: one FGR sample from (build seed, index): crop, degrade, super-resolve, swap, pdm_target."""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch
from PIL import Image

from ...images import FinPercepImageError, list_images, load_image, pil_to_tensor, tensor_to_pil
from ..degradations import degrade, uniform
from ..masks import SemanticMasker, random_mask, region_swap
from ..pdm_targets import PDMTargetBuilder
from ..sr_pool import SRPool
from .config import FGRBuildConfig

logger = logging.getLogger(__name__)


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a build with ``seed`` (stable across processes and versions)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class FGRSynthesizer:
    """Builds single FGR samples: ``synthesizer.sample(i)`` -> a row dict (see the module docstring).

    Loads the sources lazily (a small cache), the SR pool, the SAM masker and the pdm_target builder once.
    """

    def __init__(self, config: FGRBuildConfig) -> None:
        self.config = config
        if config.images:
            self.sources = [str(path) for path in list_images(config.images)]
            if not self.sources:
                raise FinPercepImageError(f"no image files found in {config.images}.")
        else:
            self.sources = [f"skimage:{name}" for name in config.skimage_photos]
        self.sr_pool = SRPool(
            config.sr_models,
            config.sr_weights,
            scale=config.degradation.scale,
            num_inference_steps=config.sr_num_inference_steps,
            guidance_scale=config.sr_guidance_scale,
            prompt=config.sr_prompt,
        )
        self.masker = (
            SemanticMasker(
                config.sam,
                area_range=config.area_range,
                points_per_batch=config.sam_points_per_batch,
                points_per_crop=config.sam_points_per_crop,
                pred_iou_thresh=config.sam_pred_iou_thresh,
                stability_score_thresh=config.sam_stability_score_thresh,
            )
            if "semantic" in config.mask_types
            else None
        )
        self.pdm = PDMTargetBuilder(config.dino, alpha=config.alpha, scale=config.pdm_scale)
        weights = config.mask_weights or (1.0,) * len(config.mask_types)
        self.mask_weights = torch.tensor(weights, dtype=torch.float64)

    @functools.lru_cache(maxsize=32)  # noqa: B019 (the synthesizer lives for the whole build)
    def load_source(self, source_id: str) -> Image.Image:
        """The RGB photo behind ``source_id`` (a path or ``skimage:<name>``)."""
        if source_id.startswith("skimage:"):
            from skimage import data

            array = getattr(data, source_id.split(":", 1)[1])()
            return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")
        return load_image(source_id)

    def _crop(self, photo: Image.Image, generator: torch.Generator) -> tuple[Image.Image, list[int], float]:
        size = self.config.crop_size
        low, high = self.config.source_scale_range
        factor = max(uniform(generator, low, high), size / min(photo.size))
        scaled = (
            photo.resize(
                (max(size, round(photo.width * factor)), max(size, round(photo.height * factor))), Image.BICUBIC
            )
            if factor != 1
            else photo
        )
        left = int(torch.randint(0, scaled.width - size + 1, (), generator=generator))
        top = int(torch.randint(0, scaled.height - size + 1, (), generator=generator))
        box = [left, top, left + size, top + size]
        return scaled.crop(box), box, factor

    def _mask(self, image_gt: Image.Image, generator: torch.Generator) -> tuple[torch.Tensor, str]:
        mask_type = self.config.mask_types[torch.multinomial(self.mask_weights, 1, generator=generator).item()]
        if mask_type == "semantic":
            mask = self.masker(image_gt, generator)
            if mask is not None:
                return mask, mask_type
            mask_type = "rectangle" if torch.rand((), generator=generator).item() < 0.5 else "stroke"
        size = self.config.crop_size
        return random_mask(size, size, mask_type, generator, self.config.area_range), mask_type

    def synthesize(self, index: int) -> dict:
        """Sample ``index`` as tensors plus provenance: ``image_gt``, ``image_sr``, ``image_syn`` (3, S, S) and
        ``mask`` (S, S) float in [0, 1], ``raw_pdm`` (S, S) float32 (before normalisation), and the metadata."""
        generator = torch.Generator().manual_seed(sample_seed(self.config.seed, index))
        source_id = self.sources[index % len(self.sources)]
        crop, box, factor = self._crop(self.load_source(source_id), generator)
        image_gt = pil_to_tensor(crop)[None]
        degradation_seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
        lr = degrade(image_gt, degradation_seed, self.config.degradation)
        sr_model = self.sr_pool.pick(generator)
        image_sr = sr_model(lr, generator=generator)
        mask, mask_type = self._mask(crop, generator)
        image_syn = region_swap(image_gt, image_sr, mask)
        return {
            "image_gt": image_gt[0],
            "image_sr": image_sr[0],
            "image_syn": image_syn[0],
            "mask": mask,
            "raw_pdm": self.pdm.raw(image_syn, image_gt)[0, 0],
            "sr_model": sr_model.name,
            "artifact_kind": sr_model.artifact_kind,
            "mask_type": mask_type,
            "mask_area": float(mask.mean()),
            "degradation_seed": degradation_seed,
            "source_id": source_id,
            "crop_box": box,
            "source_scale": float(factor),
            "sample_index": index,
        }

    def to_row(self, sample: dict) -> dict:
        """Turn a ``synthesize`` result into a dataset row (PIL images, normalised ``pdm_target``)."""
        row = {key: value for key, value in sample.items() if key != "raw_pdm"}
        for key in ("image_gt", "image_sr", "image_syn"):
            row[key] = tensor_to_pil(sample[key])
        row["mask"] = Image.fromarray((sample["mask"].numpy() * 255).round().astype(np.uint8), mode="L")
        pdm_target = self.pdm.normalize(sample["raw_pdm"]).numpy().astype(np.float32)
        row["pdm_target"] = Image.fromarray(pdm_target, mode="F")
        return row

    def sample(self, index: int) -> dict | None:
        """Row ``index``, or None (logged) when its source image cannot be read."""
        try:
            return self.to_row(self.synthesize(index))
        except FinPercepImageError as error:
            logger.warning("FGR sample %d skipped: %s", index, error)
            return None

    def estimate_scale(self) -> float:
        """Estimate the normalisation scale from the raw maps of samples 0 .. calibration_samples - 1."""
        raw_maps = []
        for index in range(min(self.config.calibration_samples, self.config.num_samples)):
            try:
                raw_maps.append(self.synthesize(index)["raw_pdm"])
            except FinPercepImageError as error:
                logger.warning("FGR calibration sample %d skipped: %s", index, error)
        return self.pdm.estimate_scale(raw_maps, self.config.scale_percentile)


__all__ = [
    "FGRSynthesizer",
    "sample_seed",
]
