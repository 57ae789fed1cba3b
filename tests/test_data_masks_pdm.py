"""Masks (random and SAM), region swap, and pdm_target maps (1 - SSIM fallback and a tiny random DINOv3)."""

import importlib.util

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from finpercep_hf.data import (
    FGRBuildConfig,
    FGRSynthesizer,
    PDMTargetBuilder,
    SemanticMasker,
    random_mask,
    region_swap,
)
from finpercep_hf.data.degradations import degrade
from finpercep_hf.data.sr_pool import ClassicalUpsampler
from finpercep_hf.images import pil_to_tensor


@pytest.fixture(scope="module")
def tiny_dino_dir(tmp_path_factory):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    config = DINOv3ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8,
        num_register_tokens=2, image_size=64,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-dinov3")
    DINOv3ViTModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_sam_dir(tmp_path_factory):
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(0)
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=16, output_channels=8, num_hidden_layers=2, num_attention_heads=2, image_size=64,
            patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=32, num_pos_feats=4,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=8, image_size=64, patch_size=8, mask_input_channels=4
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=8, mlp_dim=16, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=8
        ),
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-sam")
    SamModel(config).save_pretrained(path)
    SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16},
    ).save_pretrained(path)  # fmt: skip
    return str(path)


@pytest.fixture(scope="module")
def swap_triplet(skimage_photos):
    """A real photo, its degraded-then-bicubic SR, a rectangle mask and the swapped sample, (1, 3, 96, 128)."""
    image_gt = pil_to_tensor(skimage_photos["astronaut"].crop((40, 20, 168, 116)))[None]
    image_sr = ClassicalUpsampler("bicubic")(degrade(image_gt, seed=2))
    mask = torch.zeros(96, 128)
    mask[20:70, 30:100] = 1
    return image_gt, image_sr, mask, region_swap(image_gt, image_sr, mask)


# Masks
@pytest.mark.parametrize("kind", ["rectangle", "stroke"])
@pytest.mark.parametrize("area_range", [(0.05, 0.15), (0.3, 0.6)])
def test_random_masks_are_binary_and_within_area_bounds(kind, area_range):
    generator = torch.Generator().manual_seed(0)
    areas = []
    for _ in range(12):
        mask = random_mask(96, 128, kind, generator, area_range)
        assert mask.shape == (96, 128) and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        areas.append(mask.mean().item())
    assert all(area_range[0] <= area <= area_range[1] for area in areas)
    assert len(set(areas)) > 6  # masks vary


def test_random_mask_is_reproducible_and_validates_input():
    first = random_mask(64, 64, "stroke", torch.Generator().manual_seed(5))
    assert torch.equal(first, random_mask(64, 64, "stroke", torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="area_range"):
        random_mask(64, 64, "rectangle", area_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="'rectangle' or 'stroke'"):
        random_mask(64, 64, "semantic")


def test_region_swap_is_exact_inside_and_outside_the_mask(swap_triplet):
    image_gt, image_sr, mask, image_syn = swap_triplet
    inside = mask.bool().expand(1, 3, -1, -1)
    assert torch.equal(image_syn[inside], image_sr[inside])
    assert torch.equal(image_syn[~inside], image_gt[~inside])
    with pytest.raises(ValueError, match="mask"):
        region_swap(image_gt, image_sr, mask[:10])


def test_sam_masks_lie_within_area_bounds(tiny_sam_dir, skimage_photos):
    image = skimage_photos["coffee"].crop((0, 0, 128, 128))
    masker = SemanticMasker(
        tiny_sam_dir, area_range=(0.1, 0.5), points_per_crop=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    segments = masker.segments(image)
    assert segments and all(segment.shape == (128, 128) and segment.dtype == bool for segment in segments)
    for seed in range(3):
        mask = masker.pick(segments, torch.Generator().manual_seed(seed))
        assert mask is not None and mask.shape == (128, 128) and set(mask.unique().tolist()) <= {0.0, 1.0}
        assert 0.1 <= mask.mean().item() <= 0.5
        assert (mask.numpy().astype(bool) <= np.logical_or.reduce(segments)).all()  # made of SAM segments
    union_area = np.logical_or.reduce(segments).mean()
    assert union_area < 0.99
    masker.area_range = (union_area + 0.005, 1.0)  # no segment, and no union, fits
    assert masker.pick(segments, torch.Generator().manual_seed(0)) is None
    assert masker.pick([], torch.Generator().manual_seed(0)) is None


def test_segment_anything_generators_are_accepted(skimage_photos):
    class FakeAutomaticMaskGenerator:  # the interface of segment_anything.SamAutomaticMaskGenerator
        def generate(self, image):
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            small, large = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
            small[:8, :8], large[:, :40] = True, True
            return [{"segmentation": small}, {"segmentation": large}]

    masker = SemanticMasker(FakeAutomaticMaskGenerator(), area_range=(0.5, 0.7))
    mask = masker(skimage_photos["coffee"].crop((0, 0, 64, 64)), torch.Generator().manual_seed(0))
    assert mask is not None and mask.mean().item() == pytest.approx(40 / 64)


@pytest.mark.skipif(importlib.util.find_spec("segment_anything") is not None, reason="segment_anything installed")
def test_segment_anything_spec_without_the_package_says_what_to_install():
    with pytest.raises(ImportError, match=r"finpercep-hf\[sam\]"):
        SemanticMasker("segment_anything:vit_b:sam_vit_b.pth")


def test_semantic_masks_in_the_builder_record_their_type(tiny_sam_dir):
    config = FGRBuildConfig.mini(
        num_samples=2, crop_size=64, mask_types=("semantic",), sam=tiny_sam_dir, sam_points_per_crop=2,
        sam_pred_iou_thresh=0.0, sam_stability_score_thresh=0.0, skimage_photos=("coffee",), pdm_scale=1.0,
    )  # fmt: skip
    synthesizer = FGRSynthesizer(config)
    for index in range(2):
        sample = synthesizer.synthesize(index)
        assert sample["mask_type"] in ("semantic", "rectangle", "stroke")
        assert 0.1 <= sample["mask_area"] <= 0.5
    with pytest.raises(ValueError, match="no SAM checkpoint"):
        FGRBuildConfig.mini(mask_types=("semantic",))


# pdm_target
def test_pixel_only_target_is_zero_outside_the_mask(swap_triplet):
    image_gt, _, mask, image_syn = swap_triplet
    builder = PDMTargetBuilder(alpha=1.0, scale=0.2)
    target = builder(image_syn, image_gt)
    assert target.shape == (1, 1, 96, 128) and target.dtype == torch.float32
    assert target[0, 0][mask == 0].abs().max().item() == 0.0
    assert target[0, 0][mask == 1].mean().item() > 0.05


@pytest.mark.parametrize("use_dino", [False, True])
def test_target_in_unit_range_and_higher_inside_the_mask(swap_triplet, tiny_dino_dir, use_dino):
    image_gt, _, mask, image_syn = swap_triplet
    builder = PDMTargetBuilder(tiny_dino_dir if use_dino else None, alpha=0.5)
    raw = builder.raw(image_syn, image_gt)
    if not use_dino:  # raw() reads the changed pixels off the pixel term; same map as finding them itself
        expected = 0.5 * builder.pixel_term(image_syn, image_gt) + 0.5 * builder.ssim_distance(image_syn, image_gt)
        torch.testing.assert_close(raw, expected, rtol=0, atol=0)
    scale = builder.estimate_scale([raw], percentile=99.0)
    assert scale == pytest.approx(float(np.percentile(raw.numpy(), 99.0)), rel=1e-6)
    target = builder(image_syn, image_gt)
    assert 0 <= target.min() and target.max() <= 1 and target.max() == 1.0  # clipped above the percentile
    inside, outside = target[0, 0][mask == 1].mean(), target[0, 0][mask == 0].mean()
    assert inside > 2 * outside
    assert builder.feature_name == (f"dinov3:{tiny_dino_dir}" if use_dino else "1-ssim")


@pytest.mark.parametrize("height", [64, 300])  # one strip; three strips, the last one partial
def test_local_ssim_matches_kornia_in_float64(skimage_photos, height):
    import kornia

    from finpercep_hf.data.pdm_targets import STRIP_ROWS, local_ssim

    assert height < STRIP_ROWS or height > 2 * STRIP_ROWS
    image_a = pil_to_tensor(skimage_photos["astronaut"].resize((97, height)))[None]
    image_b = (image_a + 0.2 * torch.rand_like(image_a)).clamp(0, 1)
    expected = kornia.metrics.ssim(image_a.double(), image_b.double(), window_size=7, eps=0.0)
    assert torch.allclose(local_ssim(image_a.double(), image_b.double(), window=7), expected, atol=1e-10)
    assert torch.allclose(local_ssim(image_a, image_b, window=7).double(), expected, atol=2e-3)  # float32 moments
    assert torch.allclose(local_ssim(image_a, image_a), torch.ones_like(image_a), atol=1e-4)


def test_ssim_column_spans_are_snapped_inside_the_image():
    from finpercep_hf.data.pdm_targets import SPAN_QUANTUM, _snapped_span

    for start, stop, length in [
        (30, 80, 120),
        (-10, 15, 120),
        (100, 130, 120),
        (0, 120, 120),
        (5, 6, 20),
        (7, 300, 512),
    ]:
        span = _snapped_span(start, stop, length)
        size = span.stop - span.start
        assert 0 <= span.start and span.stop <= length
        assert span.start <= max(0, start) and span.stop >= min(length, stop)  # covers the requested span
        assert size % SPAN_QUANTUM == 0 or size == length
        assert size < max(0, min(length, stop) - max(0, start)) + SPAN_QUANTUM


@pytest.mark.parametrize("placement", ["inside", "corner", "whole", "none", "two"])
def test_ssim_distance_on_changed_strips_equals_whole_image_ssim(skimage_photos, placement):
    """The fallback runs SSIM only around the changed pixels; the map must equal SSIM on the whole image."""
    from finpercep_hf.data.pdm_targets import local_ssim

    image_gt = pil_to_tensor(skimage_photos["astronaut"].resize((160, 120)))[None]
    image_gt = torch.cat([image_gt, torch.full((1, 3, 120, 160), 0.02)]).double()  # a photo and a flat dark image
    mask = torch.zeros(120, 160)
    region = {"inside": (slice(40, 70), slice(50, 90)), "corner": (slice(0, 9), slice(150, 160)),
              "whole": (slice(0, 120), slice(0, 160)), "none": (slice(0, 0), slice(0, 0)),
              "two": (slice(0, 0), slice(0, 0))}[placement]  # fmt: skip
    mask[region] = 1
    if placement == "two":  # a region per strip, in other columns: each strip computes its own span
        mask[0:10, 0:20] = mask[105:120, 130:160] = 1
    image_syn = region_swap(image_gt, (image_gt + 0.3 * torch.rand_like(image_gt)).clamp(0, 1), mask)
    distance = PDMTargetBuilder(alpha=0.0).ssim_distance(image_syn, image_gt)
    expected = (1 - local_ssim(image_syn, image_gt).mean(dim=1, keepdim=True)).clamp(min=0)
    assert distance.shape == (2, 1, 120, 160)
    assert torch.allclose(distance, expected, atol=1e-12)  # float64: no convolution-order rounding
    grown = torch.nn.functional.max_pool2d(mask[None, None], 11, stride=1, padding=5)[0, 0]
    assert (distance[:, 0][:, grown == 0].abs() < 1e-12).all()  # windows without a changed pixel: SSIM 1
    if placement == "inside":  # beyond twice the window radius SSIM is not computed: exactly 0
        # strip rows 0-95 (the next strip's windows see no change); columns 40-99, snapped to 40-103
        assert distance[:, 0, 96:].eq(0).all() and distance[..., :40].eq(0).all() and distance[..., 104:].eq(0).all()
    if placement == "two":  # strip 0 computes columns 0-31 only, strip 1 (rows 96-119) columns 96-159 only
        assert distance[:, 0, :96, 32:].eq(0).all() and distance[:, 0, 96:, :96].eq(0).all()
    if placement != "none":
        assert distance[:, 0][:, mask == 1].mean() > 0.1


def test_dino_features_skip_cls_and_register_tokens(tiny_dino_dir):
    builder = PDMTargetBuilder(tiny_dino_dir)
    images = torch.rand(2, 3, 40, 56)
    features = builder.dino_patch_features(images)
    assert features.shape == (2, 32, 5, 7)
    pixels = (images - builder.image_mean) / builder.image_std
    with torch.no_grad():
        tokens = builder.dino(pixel_values=pixels).last_hidden_state  # 1 CLS + 2 registers + 35 patches
    assert tokens.shape[1] == 1 + 2 + 35
    assert torch.allclose(features[:, :, 0, 0], tokens[:, 3], atol=1e-5)
    assert torch.allclose(features[:, :, 4, 6], tokens[:, -1], atol=1e-5)
    feature_term = builder.feature_term(images, images.flip(0))
    assert feature_term.shape == (2, 1, 40, 56) and feature_term.min() >= 0
    assert builder.feature_term(images, images).abs().max() < 1e-5


def test_target_needs_a_scale_and_valid_inputs(swap_triplet):
    image_gt, _, _, image_syn = swap_triplet
    with pytest.raises(ValueError, match="scale is not set"):
        PDMTargetBuilder()(image_syn, image_gt)
    with pytest.raises(ValueError, match="alpha"):
        PDMTargetBuilder(alpha=1.5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        PDMTargetBuilder(scale=1.0)(image_syn[0], image_gt[0])


def test_mask_is_stored_as_l_and_target_as_f(swap_triplet):
    synthesizer = FGRSynthesizer(FGRBuildConfig.mini(num_samples=1, crop_size=64, pdm_scale=0.5))
    row = synthesizer.to_row(synthesizer.synthesize(0))
    assert row["mask"].mode == "L" and row["pdm_target"].mode == "F"
    assert isinstance(row["image_syn"], Image.Image) and row["image_syn"].size == (64, 64)


def test_full_pipeline_with_diffusers_sr_dinov3_and_sam(tmp_path, tiny_dino_dir, tiny_sam_dir, monkeypatch):
    """All model-backed pieces in one build: a tiny SD-x4 upscaler, DINOv3 features and SAM masks."""
    from finpercep_hf.data import build_fgr
    from finpercep_hf.generators.random_init import build_sd_upscaler_pipeline

    sd_dir = tmp_path / "tiny-sd-x4"
    build_sd_upscaler_pipeline("tiny", seed=0).save_pretrained(sd_dir)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")  # no stale rows
    config = FGRBuildConfig.mini(
        num_samples=2, crop_size=64, samples_per_shard=2, calibration_samples=1, skimage_photos=("coffee",),
        sr_models=[str(sd_dir)], sr_num_inference_steps=2, dino=tiny_dino_dir, sam=tiny_sam_dir,
        mask_types=("semantic",), sam_points_per_crop=2, sam_pred_iou_thresh=0.0, sam_stability_score_thresh=0.0,
    )  # fmt: skip
    path = build_fgr(config, tmp_path / "fgr", progress=False)
    rows = datasets.load_dataset(str(path), split="train")
    assert list(rows["sr_model"]) == [str(sd_dir)] * 2 and set(rows["artifact_kind"]) == {"diffusion_sr"}
    assert all(0.1 <= area <= 0.5 for area in rows["mask_area"])
    card = (path / "README.md").read_text()
    assert f"dinov3:{tiny_dino_dir}" in card and "SAM segments" in card and "Offline build" not in card
