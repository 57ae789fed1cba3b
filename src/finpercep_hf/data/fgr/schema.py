"""Column schema and file layout of an FGR build: ``FGR_FEATURES``, the shard folder, the build record, the
bundled photo list and the FGR-mini SR pool."""

from __future__ import annotations

import datasets

from ..artifacts import ARTIFACT_KINDS

# Colour and gray photos that ship with scikit-image (no download).
SKIMAGE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "camera", "coins", "moon", "grass", "gravel", "brick", "clock", "page", "text",
)  # fmt: skip
MINI_SR_MODELS = ("bicubic", "lanczos", *(f"artifact:{kind}" for kind in ARTIFACT_KINDS))
BUILD_FILE = "fgr_build.json"
DATA_DIR = "data"

FGR_FEATURES = datasets.Features(
    {
        "image_gt": datasets.Image(),
        "image_sr": datasets.Image(),
        "image_syn": datasets.Image(),
        "mask": datasets.Image(),
        "pdm_target": datasets.Image(),
        "sr_model": datasets.Value("string"),
        "artifact_kind": datasets.Value("string"),
        "mask_type": datasets.Value("string"),
        "mask_area": datasets.Value("float32"),
        "degradation_seed": datasets.Value("int64"),
        "source_id": datasets.Value("string"),
        "crop_box": datasets.List(datasets.Value("int32"), length=4),
        "source_scale": datasets.Value("float32"),
        "sample_index": datasets.Value("int64"),
    }
)


__all__ = [
    "BUILD_FILE",
    "DATA_DIR",
    "FGR_FEATURES",
    "MINI_SR_MODELS",
    "SKIMAGE_PHOTOS",
]
