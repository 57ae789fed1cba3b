"""The triplet collator keeps images, mask and pdm_target aligned under every augmentation, and draws its
randomness only from per-row seeds or its own generator."""

import numpy as np
import torch
from PIL import Image

from finpercep_hf.data import EpochShuffleSampler, FinPercepTripletCollator, SeededDataset


def asymmetric_row(size: int = 64) -> dict:
    """A row whose every column is the same left-heavy L-shaped pattern (so a flip or a shift shows)."""
    pattern = np.zeros((size, size), np.float32)
    pattern[:, : size // 3] = 1
    pattern[: size // 4, :] = 1
    image = Image.fromarray(np.repeat((pattern * 255).astype(np.uint8)[..., None], 3, axis=2))
    return {
        "image_gt": image, "image_sr": image, "image_syn": image,
        "mask": Image.fromarray((pattern * 255).astype(np.uint8)), "pdm_target": Image.fromarray(pattern),
    }  # fmt: skip


def test_augmentations_keep_images_mask_and_pdm_target_aligned():
    collator = FinPercepTripletCollator(crop_size=32, augment=True, jitter=0.0)
    rows = [{**asymmetric_row(), "sample_seed": seed} for seed in range(24)]
    batch = collator(rows)
    flipped = 0
    for index in range(len(rows)):
        mask, target = batch["mask"][index, 0], batch["pdm_target"][index, 0]
        for column in ("image_gt", "image_sr", "image_syn"):
            image = batch[column][index].mean(dim=0)
            assert ((image > 0.5).float() != mask).float().mean() < 0.05, (index, column)
        assert (target - mask).abs().mean() < 0.05, index
        flipped += int(mask[:, -2:].mean() > mask[:, :2].mean())  # the left band moved to the right
    assert 0 < flipped < len(rows)  # both flipped and unflipped rows were checked


def test_seeded_rows_are_reproducible_and_ignore_the_global_rng():
    collator = FinPercepTripletCollator(crop_size=32, augment=True)
    rows = [{**asymmetric_row(), "sample_seed": 7}, {**asymmetric_row(), "sample_seed": 8}]
    torch.manual_seed(0)
    first = collator(rows)
    torch.manual_seed(123)
    second = FinPercepTripletCollator(crop_size=32, augment=True)(rows)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert not torch.equal(first["image_gt"][0], first["image_gt"][1])


def test_rows_without_seed_use_the_collators_own_generator():
    rows = [asymmetric_row()] * 3
    torch.manual_seed(0)
    a = FinPercepTripletCollator(crop_size=32, seed=5)(rows)
    torch.manual_seed(99)
    b = FinPercepTripletCollator(crop_size=32, seed=5)(rows)
    c = FinPercepTripletCollator(crop_size=32, seed=6)(rows)
    assert torch.equal(a["image_gt"], b["image_gt"]) and not torch.equal(a["image_gt"], c["image_gt"])


def test_epoch_sampler_order_depends_only_on_seed_and_epoch():
    sampler = EpochShuffleSampler(10, seed=3, with_seeds=True)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(0)
    list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == first
    assert sorted(index for index, _ in first) == list(range(10))
    assert len({seed for _, seed in first}) == 10
    sampler.set_epoch(2)
    assert list(sampler) != first
    wrapped = SeededDataset([{"a": 1}, {"a": 2}])
    assert wrapped[(1, 42)] == {"a": 2, "sample_seed": 42} and wrapped[0] == {"a": 1}


def test_native_scale_crops_are_windows_of_the_row():
    """``rescale=False``: every crop is a crop_size window of the row itself (possibly flipped), never resampled."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    row = {"image_gt": image, "image_sr": image, "image_syn": image, "mask": Image.fromarray(pixels[..., 0]),
           "pdm_target": Image.fromarray(pixels[..., 0].astype(np.float32) / 255)}  # fmt: skip
    source = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    windows = {(top, left) for top in range(48 - 20 + 1) for left in range(48 - 20 + 1)}
    batch = FinPercepTripletCollator(crop_size=20, augment=True, rescale=False, jitter=0.0)(
        [{**row, "sample_seed": seed} for seed in range(8)]
    )
    assert batch["image_gt"].shape == (8, 3, 20, 20)
    found = set()
    for crop in batch["image_gt"]:
        matches = [
            (top, left)
            for top, left in windows
            for candidate in (crop, crop.flip(-1))
            if torch.allclose(candidate, source[:, top : top + 20, left : left + 20], atol=1e-6)
        ]
        assert matches, "a native-scale crop must equal a window of the row"
        found.add(matches[0])
    assert len(found) > 1  # the position is drawn per row
    # With rescale (the default) the crop side is drawn from scale_range and resized: no longer a plain window.
    resized = FinPercepTripletCollator(crop_size=20, augment=True, jitter=0.0)([{**row, "sample_seed": 0}])
    crop = resized["image_gt"][0]
    assert not any(
        torch.allclose(candidate, source[:, top : top + 20, left : left + 20], atol=1e-6)
        for top, left in windows
        for candidate in (crop, crop.flip(-1))
    )
