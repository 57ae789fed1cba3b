"""Real-ESRGAN degradation: seeded reproducibility, output shape, kernels."""

import math

import pytest
import torch

from finpercep_hf.data.degradations import (
    KERNEL_TYPES,
    DegradationConfig,
    blur_kernel,
    degrade,
    jpeg,
    random_blur_kernel,
    sinc_kernel,
)
from finpercep_hf.images import pil_to_tensor


@pytest.fixture(scope="module")
def image_gt(skimage_photos):
    return pil_to_tensor(skimage_photos["astronaut"].crop((0, 0, 128, 96)))[None]  # (1, 3, 96, 128)


def test_degrade_is_reproducible_from_seed_and_quarter_size(image_gt):
    first = degrade(image_gt, seed=7)
    assert first.shape == (1, 3, 24, 32) and first.dtype == torch.float32
    assert torch.equal(first, degrade(image_gt, seed=7))
    assert torch.equal(first, degrade(image_gt, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, degrade(image_gt, seed=8))
    assert 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, (first * 255).round() / 255)  # on the 8-bit grid
    assert degrade(image_gt[0], seed=7).shape == (3, 24, 32)


def test_degrade_draws_each_batch_item_differently(image_gt):
    batch = degrade(image_gt.repeat(2, 1, 1, 1), seed=3)
    assert batch.shape == (2, 3, 24, 32) and not torch.equal(batch[0], batch[1])
    assert torch.equal(batch[:1], degrade(image_gt, seed=3))  # item 0 uses the generator first


def test_degraded_image_is_close_to_but_not_the_downscaled_gt(image_gt):
    lr = degrade(image_gt, seed=1)
    plain = torch.nn.functional.interpolate(image_gt, size=(24, 32), mode="area")
    error = (lr - plain).abs().mean().item()
    assert 0.005 < error < 0.25


def test_degrade_rejects_sizes_not_divisible_by_scale(image_gt):
    with pytest.raises(ValueError, match="divisible by 4"):
        degrade(image_gt[..., :95, :], seed=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        degrade(image_gt[:, :1], seed=0)


@pytest.mark.parametrize("kind", KERNEL_TYPES)
def test_each_kernel_type_sums_to_one_and_peaks_at_centre(kind):
    kernel = blur_kernel(kind, 21, sigma_x=2.5, sigma_y=0.8, rotation=0.6, beta=1.7)
    assert kernel.shape == (21, 21)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert kernel.argmax().item() == 10 * 21 + 10 and (kernel >= 0).all()
    if kind.endswith("aniso"):
        assert not torch.allclose(kernel, kernel.T, atol=1e-4)  # rotated elliptic kernel: not symmetric
    else:
        assert torch.allclose(kernel, kernel.T, atol=1e-6) and torch.allclose(kernel, kernel.flip(0), atol=1e-6)


def test_sinc_kernel_sums_to_one_and_has_negative_lobes():
    kernel = sinc_kernel(math.pi / 3, 21)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert kernel.min() < 0 < kernel[10, 10]


def test_random_kernels_sum_to_one_with_odd_sizes():
    generator = torch.Generator().manual_seed(0)
    config = DegradationConfig()
    sizes = set()
    for _ in range(40):
        kernel = random_blur_kernel(generator, config, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), sinc_prob=0.3)
        sizes.add(kernel.shape[0])
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1 and 7 <= kernel.shape[0] <= 21
        assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert len(sizes) > 3


def test_jpeg_is_a_real_lossy_codec(image_gt):
    low, high = jpeg(image_gt, 10), jpeg(image_gt, 95)
    assert low.shape == image_gt.shape
    assert (low - image_gt).abs().mean() > (high - image_gt).abs().mean() > 0


def test_config_validation():
    with pytest.raises(ValueError, match="odd"):
        DegradationConfig(kernel_sizes=(7, 8))
    with pytest.raises(ValueError, match="kernel_probs"):
        DegradationConfig(kernel_probs=(0.5, 0.5))


@pytest.mark.parametrize("size", [(8, 9), (40, 52), (97, 131)])
@pytest.mark.parametrize("kernel_size", [7, 13, 21])
@pytest.mark.parametrize("fft_min_kernel", [13, 1])
def test_filtering_matches_kornia_on_both_paths(size, kernel_size, fft_min_kernel):
    """Kernels of ``fft_min_kernel`` taps or more go through the FFT; the result must equal kornia's filter2d."""
    import kornia

    from finpercep_hf.data.degradations import _filter

    torch.manual_seed(0)
    image, kernel = torch.rand(1, 3, *size), torch.rand(kernel_size, kernel_size)
    border = "reflect" if kernel_size // 2 < min(size) else "replicate"
    expected = kornia.filters.filter2d(image, kernel[None], border_type=border)
    assert torch.allclose(_filter(image, kernel, fft_min_kernel), expected, atol=1e-5)


def test_smooth_fft_size_is_the_next_2_3_5_smooth_number():
    from finpercep_hf.data.degradations import smooth_fft_size

    def is_smooth(number):
        for prime in (2, 3, 5):
            while number % prime == 0:
                number //= prime
        return number == 1

    for length in [1, 7, 11, 131, 524, 532, 541, 1000, 1031]:
        size = smooth_fft_size(length)
        assert size >= length and is_smooth(size)
        assert not any(is_smooth(candidate) for candidate in range(length, size))
    assert smooth_fft_size(524) == 540 and smooth_fft_size(512) == 512


def test_poisson_levels_count_distinct_codes_like_torch_unique():
    from finpercep_hf.data.degradations import poisson_levels

    generator = torch.Generator().manual_seed(0)
    for distinct in (1, 2, 3, 5, 64, 65, 200, 256):
        codes = torch.randperm(256, generator=generator)[:distinct].float()
        image = codes[torch.randint(0, distinct, (3, 40, 50), generator=generator)]
        image.view(-1)[:distinct] = codes  # every chosen code present
        expected = 2 ** math.ceil(math.log2(max(2, torch.unique(image).numel())))
        assert poisson_levels(image) == expected
