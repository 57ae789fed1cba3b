"""`FGRBuildConfig`: every choice of an FGR build (sources, SR pool, masks, pdm_target), and the FGR-mini preset."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..degradations import DegradationConfig
from ..masks import MASK_TYPES
from .schema import MINI_SR_MODELS, SKIMAGE_PHOTOS


@dataclass
class FGRBuildConfig:
    """Everything that determines an FGR build; two builds with equal configs produce identical rows."""

    # Sources
    images: list[str] = field(
        default_factory=list,
        metadata={"help": "Files or folders of high-quality photos; empty: use the skimage photos below."},
    )
    skimage_photos: tuple[str, ...] = field(
        default=SKIMAGE_PHOTOS,
        metadata={"help": f"scikit-image photo names used when images is empty; any of {SKIMAGE_PHOTOS}."},
    )
    source_scale_range: tuple[float, float] = field(
        default=(0.5, 1.0),
        metadata={"help": "Each source is resized by a factor drawn from this range before cropping."},
    )
    # Samples
    num_samples: int = field(default=30000, metadata={"help": "Number of samples (before skipping broken sources)."})
    crop_size: int = field(default=512, metadata={"help": "Side of the square crops, divisible by 4."})
    seed: int = field(default=0, metadata={"help": "Build seed; sample i is reproducible from (seed, i)."})
    samples_per_shard: int = field(default=500, metadata={"help": "Rows per Parquet shard (the unit of resume)."})
    # SR pool
    sr_models: list[str] = field(
        default_factory=lambda: list(MINI_SR_MODELS),
        metadata={
            "help": "SR model specs: bicubic | bilinear | lanczos | artifact:<kind> | module.py:Class | a "
            "diffusers SR pipeline id or path."
        },
    )
    sr_weights: list[float] | None = field(default=None, metadata={"help": "Sampling weights of sr_models."})
    sr_num_inference_steps: int = field(default=20, metadata={"help": "Denoising steps of diffusers SR models."})
    sr_guidance_scale: float = field(
        default=0.0, metadata={"help": "Classifier-free guidance of diffusers SR models."}
    )
    sr_prompt: str = field(default="", metadata={"help": "Text prompt of StableDiffusionUpscalePipeline members."})
    # Masks
    mask_types: tuple[str, ...] = field(
        default=("rectangle", "stroke"), metadata={"help": f"Mask types to draw from, any of {MASK_TYPES}."}
    )
    mask_weights: tuple[float, ...] | None = field(default=None, metadata={"help": "Sampling weights of mask_types."})
    area_range: tuple[float, float] = field(default=(0.1, 0.5), metadata={"help": "Bounds of the mask area ratio."})
    sam: str | None = field(default=None, metadata={"help": "SAM checkpoint for semantic masks (mask-generation)."})
    sam_points_per_batch: int = field(default=64, metadata={"help": "SAM prompt points per forward pass."})
    sam_points_per_crop: int = field(default=32, metadata={"help": "SAM prompt grid side (points_per_crop^2 points)."})
    sam_pred_iou_thresh: float = field(default=0.88, metadata={"help": "SAM predicted-IoU filter."})
    sam_stability_score_thresh: float = field(default=0.95, metadata={"help": "SAM stability-score filter."})
    # pdm_target
    dino: str | None = field(default=None, metadata={"help": "DINOv3 checkpoint; None: the 1 - SSIM fallback."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the pixel term in Eq. 4."})
    pdm_scale: float | None = field(default=None, metadata={"help": "Fixed normalisation scale; None: estimate."})
    scale_percentile: float = field(default=99.0, metadata={"help": "Percentile of raw maps used as the scale."})
    calibration_samples: int = field(default=64, metadata={"help": "Samples used to estimate the scale."})
    # Degradation and card
    degradation: DegradationConfig = field(
        default_factory=DegradationConfig, metadata={"help": "Real-ESRGAN degradation ranges."}
    )
    license: str = field(default="other", metadata={"help": "Licence field of the dataset card."})
    pretty_name: str = field(default="FGR", metadata={"help": "Dataset name shown in the card."})

    def __post_init__(self) -> None:
        if isinstance(self.degradation, dict):
            self.degradation = DegradationConfig(**self.degradation)
        if self.crop_size % self.degradation.scale or self.crop_size < 16 * self.degradation.scale:
            raise ValueError(
                f"crop_size must be a multiple of {self.degradation.scale} and >= 64, got {self.crop_size}."
            )
        if self.num_samples < 1 or self.samples_per_shard < 1:
            raise ValueError(
                f"num_samples and samples_per_shard must be >= 1, got {self.num_samples}, {self.samples_per_shard}."
            )
        unknown = set(self.mask_types) - set(MASK_TYPES)
        if unknown or not self.mask_types:
            raise ValueError(f"mask_types must be a non-empty subset of {MASK_TYPES}, got {self.mask_types}.")
        if "semantic" in self.mask_types and not self.sam:
            raise ValueError("mask_types includes 'semantic' but no SAM checkpoint is given (sam=...).")
        if not self.images:
            unknown = set(self.skimage_photos) - set(SKIMAGE_PHOTOS)
            if unknown or not self.skimage_photos:
                raise ValueError(
                    f"skimage_photos must be a non-empty subset of {SKIMAGE_PHOTOS}, got {unknown or ()}."
                )
        low, high = self.source_scale_range
        if not 0 < low <= high:
            raise ValueError(f"source_scale_range must satisfy 0 < low <= high, got {self.source_scale_range}.")

    @classmethod
    def mini(cls, **overrides) -> FGRBuildConfig:
        """The offline FGR-mini preset: skimage photos, 160 px crops, 320 samples, classical upsamplers plus every
        labelled artifact generator, rectangle and stroke masks, the ``1 - SSIM`` feature term. About a minute on
        2 CPU cores; any field can be overridden (e.g. ``skimage_photos=...`` to hold photos out)."""
        values = {
            "num_samples": 320,
            "crop_size": 160,
            "samples_per_shard": 64,
            "source_scale_range": (0.35, 1.0),
            "calibration_samples": 32,
            "pretty_name": "FGR-mini",
            "license": "other",
        }
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists); ``FGRBuildConfig.from_dict`` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> FGRBuildConfig:
        """Rebuild a config from ``to_dict`` output (e.g. the ``config`` entry of a build's ``fgr_build.json``)."""
        tuples = {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}
        values = {k: tuple(v) if k in tuples and v is not None else v for k, v in values.items()}
        values["degradation"] = DegradationConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values["degradation"].items()}
        )
        return cls(**values)

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.samples_per_shard)


__all__ = [
    "FGRBuildConfig",
]
