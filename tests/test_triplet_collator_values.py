"""Values of the triplet collator's pieces (map decoding, validation, crop boxes, resizing, colour jitter), which
mutation testing showed the alignment tests alone leave free."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from finpercep_hf.data.triplet_collator import FinPercepTripletCollator, _map_to_tensor
from finpercep_hf.images import pil_to_tensor


def ramp_row(height: int, width: int) -> dict:
    """Distinct pixels everywhere (so every crop offset and flip shows), a binary mask and a soft pdm_target."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red, green = x / max(width - 1, 1), y / max(height - 1, 1)
    image = Image.fromarray((np.stack([red, green, 1 - red], axis=2) * 255).round().astype(np.uint8))
    mask = ((x + 2 * y) % 7 < 3).astype(np.uint8) * 255
    return {
        "image_gt": image, "image_sr": image, "image_syn": image,
        "mask": Image.fromarray(mask), "pdm_target": Image.fromarray(red * green),
    }  # fmt: skip


def test_map_to_tensor_thresholds_binary_maps_and_keeps_soft_ones():
    levels = np.array([[0, 127, 128, 255]], np.uint8)
    assert _map_to_tensor(Image.fromarray(levels), binary=True).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    unit = np.array([[0.0, 0.5, 0.51, 1.0]], np.float32)
    assert _map_to_tensor(Image.fromarray(unit), binary=True).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    soft = _map_to_tensor(Image.fromarray(unit), binary=False)
    assert soft.dtype == torch.float32 and soft.shape == (1, 1, 4) and soft.tolist() == [[unit[0].tolist()]]
    rgb = np.stack([levels, np.full_like(levels, 255), np.zeros_like(levels)], axis=2)  # only channel 0 counts
    assert _map_to_tensor(rgb, binary=True).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    assert _map_to_tensor(np.zeros((1, 3), np.float32), binary=True).tolist() == [[[0.0, 0.0, 0.0]]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": 0}, r"^crop_size must be >= 1 or None, got 0\.$"),
        ({"scale_range": (0.0, 0.5)}, r"^scale_range must satisfy 0 < low <= high <= 1, got \(0\.0, 0\.5\)\.$"),
        ({"scale_range": (0.6, 0.5)}, r"^scale_range must satisfy 0 < low <= high <= 1"),
        ({"scale_range": (0.5, 1.1)}, r"^scale_range must satisfy 0 < low <= high <= 1"),
        ({"jitter": -0.1}, r"^jitter must be in \[0, 1\), got -0\.1\.$"),
        ({"jitter": 1.0}, r"^jitter must be in \[0, 1\), got 1\.0\.$"),
    ],
)
def test_bad_settings_are_refused_with_their_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FinPercepTripletCollator(**kwargs)


def test_boundary_settings_are_accepted():
    FinPercepTripletCollator(crop_size=1, scale_range=(1.0, 1.0), jitter=0.0)
    FinPercepTripletCollator(crop_size=None, scale_range=(0.01, 0.01), jitter=0.99)


def test_centre_crop_without_augmentation_is_an_exact_slice():
    row = ramp_row(40, 60)
    batch = FinPercepTripletCollator(crop_size=32, augment=False)([row])
    full = pil_to_tensor(row["image_gt"])
    torch.testing.assert_close(batch["image_sr"][0], full[:, 4:36, 14:46], rtol=0, atol=0)
    torch.testing.assert_close(batch["mask"][0], _map_to_tensor(row["mask"], True)[:, 4:36, 14:46], rtol=0, atol=0)
    larger = FinPercepTripletCollator(crop_size=64, augment=False)([row])  # crop > row: centred short side, resized
    centred = _map_to_tensor(row["pdm_target"], False)[None, :, :, 10:50]
    resized = F.interpolate(centred, size=(64, 64), mode="bilinear", align_corners=False)[0].clamp(0, 1)
    assert larger["image_gt"].shape == (1, 3, 64, 64)
    torch.testing.assert_close(larger["pdm_target"][0], resized, rtol=0, atol=1e-6)


def test_no_crop_size_keeps_the_full_row():
    row = ramp_row(24, 40)
    batch = FinPercepTripletCollator(crop_size=None, augment=False)([row])
    torch.testing.assert_close(batch["image_gt"][0], pil_to_tensor(row["image_gt"]), rtol=0, atol=0)
    assert batch["mask"].shape == (1, 1, 24, 40) and batch["pdm_target"].shape == (1, 1, 24, 40)


def test_random_boxes_cover_every_offset_and_stay_inside():
    collator = FinPercepTripletCollator(crop_size=16, scale_range=(1.0, 1.0))
    boxes = {collator._box(40, 60, torch.Generator().manual_seed(seed)) for seed in range(400)}
    assert {side for _, _, side in boxes} == {40} and {top for top, _, _ in boxes} == {0}
    assert {left for _, left, _ in boxes} == set(range(21))  # 0 .. 60 - 40, both ends included
    tall = {collator._box(60, 40, torch.Generator().manual_seed(seed))[0] for seed in range(400)}
    assert tall == set(range(21))


def test_random_box_side_is_the_scaled_short_side_but_at_least_the_crop():
    def sides(crop_size, scale_range, height, width):
        collator = FinPercepTripletCollator(crop_size=crop_size, scale_range=scale_range)
        return {collator._box(height, width, torch.Generator().manual_seed(seed))[2] for seed in range(50)}

    assert sides(16, (0.55, 0.55), 45, 80) == {25}  # round(0.55 * 45) = round(24.75)
    assert sides(32, (0.5, 0.5), 40, 80) == {32}  # 20 is below the crop size
    assert sides(64, (0.5, 0.5), 40, 80) == {40}  # a row smaller than the crop: its short side
    low_high = sides(8, (0.25, 1.0), 40, 40)
    assert min(low_high) >= 10 and max(low_high) <= 40 and len(low_high) > 10


def test_resized_crops_are_antialiased_bilinear_with_a_nearest_mask():
    row = ramp_row(40, 40)
    collator = FinPercepTripletCollator(crop_size=16, scale_range=(0.5, 0.5), jitter=0.0)
    generator = torch.Generator().manual_seed(3)
    top, left, side = collator._box(40, 40, generator)
    flip = bool(torch.rand((), generator=generator) < 0.5)
    batch = collator([{**row, "sample_seed": 3}])
    assert side == 20

    def expected(tensor, **mode):
        out = F.interpolate(tensor[None, :, top : top + 20, left : left + 20], size=(16, 16), **mode)[0]
        return out.flip(-1) if flip else out

    bilinear = {"mode": "bilinear", "align_corners": False}
    image = expected(pil_to_tensor(row["image_gt"]), antialias=True, **bilinear).clamp(0, 1)
    torch.testing.assert_close(batch["image_syn"][0], image, rtol=0, atol=1e-6)
    torch.testing.assert_close(batch["mask"][0], expected(_map_to_tensor(row["mask"], True), mode="nearest"))
    target = expected(_map_to_tensor(row["pdm_target"], False), **bilinear).clamp(0, 1)
    torch.testing.assert_close(batch["pdm_target"][0], target, rtol=0, atol=1e-6)


def test_colour_jitter_formula_on_a_constant_colour():
    """Constant colour x: contrast c about the image mean m, saturation s about the pixel's grey (= m here), then
    brightness b: ((x - m) * c * s + m) * b, clamped to [0, 1]."""
    collator = FinPercepTripletCollator(jitter=0.5)
    image = torch.tensor([0.9, 0.3, 0.6]).view(3, 1, 1).expand(3, 4, 4).clone()
    bright = torch.ones(3, 2, 2)
    (out, saturated) = collator._jitter([image, bright], torch.Generator().manual_seed(2))
    u = torch.rand(3, generator=torch.Generator().manual_seed(2))
    b, c, s = (1 + (u * 2 - 1) * 0.5).tolist()
    expected = (((torch.tensor([0.9, 0.3, 0.6]) - 0.6) * c * s + 0.6) * b).clamp(0, 1)
    torch.testing.assert_close(out[:, 0, 0], expected)
    assert saturated.max().item() == pytest.approx(min(1.0, b)) and saturated.min().item() >= 0
    assert abs(b - 1) > 0.05 and abs(c - 1) > 0.05 and abs(s - 1) > 0.05  # the seed moves all three


def test_rows_of_different_sizes_are_refused_with_the_source_id():
    row = ramp_row(32, 32)
    row["mask"] = Image.fromarray(np.zeros((32, 31), np.uint8))
    with pytest.raises(ValueError, match=r"^row photo-7: images, mask and pdm_target differ in size\.$"):
        FinPercepTripletCollator(crop_size=16)([{**row, "source_id": "photo-7"}])


def test_colour_jitter_saturates_about_each_pixels_grey_and_clamps_below():
    collator = FinPercepTripletCollator(jitter=0.5)
    image = torch.tensor([[1.0, 0.1], [0.0, 0.3], [0.2, 0.9]]).view(3, 1, 2)
    (out,) = collator._jitter([image], torch.Generator().manual_seed(26))
    u = torch.rand(3, generator=torch.Generator().manual_seed(26))
    b, c, s = (1 + (u * 2 - 1) * 0.5).tolist()
    contrasted = (image - image.mean()) * c + image.mean()
    grey = contrasted.mean(dim=0)  # per pixel, not the image mean
    unclamped = ((contrasted - grey) * s + grey) * b
    assert unclamped.min() < 0 and unclamped.max() > 1  # both ends of the clamp matter here
    torch.testing.assert_close(out, unclamped.clamp(0, 1))


def test_maps_are_float32_and_unnamed_rows_are_reported_as_question_marks():
    assert _map_to_tensor(Image.fromarray(np.array([[0, 255]], np.uint8)), binary=True).dtype == torch.float32
    assert _map_to_tensor(np.array([[0, 255]], np.uint8), binary=False).dtype == torch.float32
    row = ramp_row(32, 32)
    row["pdm_target"] = Image.fromarray(np.zeros((31, 32), np.float32))
    with pytest.raises(ValueError, match=r"^row \?: images, mask and pdm_target differ in size\.$"):
        FinPercepTripletCollator(crop_size=16)([row])
