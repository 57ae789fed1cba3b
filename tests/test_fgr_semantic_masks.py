"""The FGR builder keeps SAM's masks: a stubbed segmenter returns known segments, and every sample must use one
(a builder that dropped every SAM mask and fell back to rectangles or strokes fails here)."""

import numpy as np
import pytest
import torch

from finpercep_hf.data.fgr import FGRBuildConfig, FGRSynthesizer

CROP = 64


def known_segments(height: int, width: int) -> list[np.ndarray]:
    """Two segments: a small 8x8 corner (area 1/64, below ``area_range``) and the left 24 columns (area 0.375)."""
    corner, band = np.zeros((height, width), bool), np.zeros((height, width), bool)
    corner[:8, -8:], band[:, :24] = True, True
    return [corner, band]


class FakeAutomaticMaskGenerator:
    """The interface of ``segment_anything.SamAutomaticMaskGenerator``: ``generate(HxWx3 uint8) -> [dict]``."""

    def __init__(self):
        self.calls = 0

    def generate(self, image: np.ndarray) -> list[dict]:
        assert image.shape == (CROP, CROP, 3) and image.dtype == np.uint8
        self.calls += 1
        return [{"segmentation": segment} for segment in known_segments(*image.shape[:2])]


class FakeMaskGenerationPipeline:
    """The interface of transformers' ``mask-generation`` pipeline: ``pipe(image, **kwargs) -> {"masks": [...]}``."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image, **kwargs) -> dict:
        assert image.size == (CROP, CROP) and kwargs["points_per_crop"] == 2
        self.calls += 1
        return {"masks": known_segments(CROP, CROP)}


@pytest.mark.parametrize("segmenter_class", [FakeAutomaticMaskGenerator, FakeMaskGenerationPipeline])
def test_every_sample_uses_the_sam_segment_that_fits_the_area_range(segmenter_class):
    segmenter = segmenter_class()
    config = FGRBuildConfig.mini(
        num_samples=3, crop_size=CROP, mask_types=("semantic",), sam=segmenter, sam_points_per_crop=2,
        skimage_photos=("coffee", "chelsea"), area_range=(0.1, 0.5), pdm_scale=1.0,
    )  # fmt: skip
    synthesizer = FGRSynthesizer(config)
    band = torch.from_numpy(known_segments(CROP, CROP)[1]).float()
    for index in range(3):
        sample = synthesizer.synthesize(index)
        assert sample["mask_type"] == "semantic"
        assert torch.equal(sample["mask"], band)  # the only segment whose area lies in [0.1, 0.5]
        assert sample["mask_area"] == pytest.approx(24 / 64)
        inside = band.bool().expand(3, -1, -1)
        assert torch.equal(sample["image_syn"][inside], sample["image_sr"][inside])
        assert torch.equal(sample["image_syn"][~inside], sample["image_gt"][~inside])
    assert segmenter.calls == 3


def test_no_fitting_segment_falls_back_and_records_the_fallback_type():
    config = FGRBuildConfig.mini(
        num_samples=2, crop_size=CROP, mask_types=("semantic",), sam=FakeAutomaticMaskGenerator(),
        skimage_photos=("coffee",), area_range=(0.6, 0.9), pdm_scale=1.0,
    )  # fmt: skip
    synthesizer = FGRSynthesizer(config)
    for index in range(2):
        sample = synthesizer.synthesize(index)
        assert sample["mask_type"] in ("rectangle", "stroke")
        assert 0.6 <= sample["mask_area"] <= 0.9
