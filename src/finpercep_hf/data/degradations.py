"""The Real-ESRGAN second-order degradation (Wang et al., 2021), written in torch.

``degrade(image_gt, seed)`` turns a high-quality image (B, 3, H, W) float in [0, 1] into its low-resolution
counterpart (B, 3, H / 4, W / 4) float in [0, 1] (values on the 8-bit grid), with every random choice drawn from one
``torch.Generator`` so that a sample is reproducible from its seed. The steps and their published ranges:

1. blur with a random kernel (size 7-21, odd; isotropic / anisotropic / generalized / plateau Gaussians with
   probabilities [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], or a sinc kernel with p = 0.1), random resize
   (up / down / keep with p [0.2, 0.7, 0.1], scale in [0.15, 1.5], area / bilinear / bicubic), Gaussian noise
   (p = 0.5, sigma 1-30 on the 0-255 scale) or Poisson noise (scale 0.05-3), gray noise with p = 0.4, JPEG with
   quality 30-95 (a real codec: ``torchvision.io``);
2. the same again with the second-stage ranges (blur with p = 0.8, sigma [0.2, 1.5], resize p [0.3, 0.4, 0.3] in
   [0.3, 1.2], noise sigma 1-25 or Poisson 0.05-2.5);
3. the final resize to the x4 low-resolution size, a sinc filter (p = 0.8) and JPEG, in the order
   resize -> sinc -> JPEG or JPEG -> resize -> sinc (50 / 50).

Filtering (correlation with reflect borders, as Real-ESRGAN's ``filter2D``) is one depthwise ``F.conv2d`` for kernels
under 13 taps: ``kornia.filters.filter2d`` computes the same but its wrapper took 2-3x the convolution's time at
512-768 px (one CPU thread). Wider kernels go through a real FFT whose size is rounded up to a 2-3-5-smooth number
(same result to 1e-6; at 512x512 a 13-21 tap kernel takes ~11 ms this way, 2-6x less than direct convolution and up
to 3x less than an FFT of the raw padded size, whose prime factors can be large: 524 = 4 * 131). Resizing uses
``torch.nn.functional.interpolate`` (the same call and modes as Real-ESRGAN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import kornia
import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass
class DegradationConfig:
    """Parameters of the second-order degradation; defaults are Real-ESRGAN's published training options."""

    scale: int = field(default=4, metadata={"help": "Down-scaling factor between image_gt and the LR image."})
    kernel_sizes: tuple[int, ...] = field(
        default=(7, 9, 11, 13, 15, 17, 19, 21), metadata={"help": "Odd blur kernel sizes, drawn uniformly."}
    )
    kernel_probs: tuple[float, ...] = field(
        default=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
        metadata={"help": f"Probabilities of the kernel types {KERNEL_TYPES}."},
    )
    # First stage
    blur_sigma: tuple[float, float] = field(default=(0.2, 3.0), metadata={"help": "Gaussian sigma range, stage 1."})
    betag_range: tuple[float, float] = field(default=(0.5, 4.0), metadata={"help": "Generalized beta, stage 1."})
    betap_range: tuple[float, float] = field(default=(1.0, 2.0), metadata={"help": "Plateau beta, stage 1."})
    sinc_prob: float = field(default=0.1, metadata={"help": "Probability of a sinc blur kernel, stage 1."})
    resize_prob: tuple[float, float, float] = field(
        default=(0.2, 0.7, 0.1), metadata={"help": "Probabilities of up / down / keep, stage 1."}
    )
    resize_range: tuple[float, float] = field(default=(0.15, 1.5), metadata={"help": "Resize scale range, stage 1."})
    gaussian_noise_prob: float = field(default=0.5, metadata={"help": "Gaussian (else Poisson) noise, stage 1."})
    noise_range: tuple[float, float] = field(default=(1.0, 30.0), metadata={"help": "Noise sigma (0-255), stage 1."})
    poisson_scale_range: tuple[float, float] = field(default=(0.05, 3.0), metadata={"help": "Poisson scale, stage 1."})
    gray_noise_prob: float = field(default=0.4, metadata={"help": "Probability of gray noise, stage 1."})
    jpeg_range: tuple[int, int] = field(default=(30, 95), metadata={"help": "JPEG quality range, stage 1."})
    # Second stage
    second_blur_prob: float = field(default=0.8, metadata={"help": "Probability of the stage-2 blur."})
    blur_sigma2: tuple[float, float] = field(default=(0.2, 1.5), metadata={"help": "Gaussian sigma range, stage 2."})
    betag_range2: tuple[float, float] = field(default=(0.5, 4.0), metadata={"help": "Generalized beta, stage 2."})
    betap_range2: tuple[float, float] = field(default=(1.0, 2.0), metadata={"help": "Plateau beta, stage 2."})
    sinc_prob2: float = field(default=0.1, metadata={"help": "Probability of a sinc blur kernel, stage 2."})
    resize_prob2: tuple[float, float, float] = field(
        default=(0.3, 0.4, 0.3), metadata={"help": "Probabilities of up / down / keep, stage 2."}
    )
    resize_range2: tuple[float, float] = field(default=(0.3, 1.2), metadata={"help": "Resize scale range, stage 2."})
    gaussian_noise_prob2: float = field(default=0.5, metadata={"help": "Gaussian (else Poisson) noise, stage 2."})
    noise_range2: tuple[float, float] = field(default=(1.0, 25.0), metadata={"help": "Noise sigma (0-255), stage 2."})
    poisson_scale_range2: tuple[float, float] = field(
        default=(0.05, 2.5), metadata={"help": "Poisson scale, stage 2."}
    )
    gray_noise_prob2: float = field(default=0.4, metadata={"help": "Probability of gray noise, stage 2."})
    jpeg_range2: tuple[int, int] = field(default=(30, 95), metadata={"help": "JPEG quality range, stage 2."})
    # Final stage
    final_sinc_prob: float = field(default=0.8, metadata={"help": "Probability of the final sinc filter."})

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}.")
        if any(size % 2 == 0 or size < 3 for size in self.kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd and >= 3, got {self.kernel_sizes}.")
        if len(self.kernel_probs) != len(KERNEL_TYPES):
            raise ValueError(
                f"kernel_probs needs {len(KERNEL_TYPES)} entries ({KERNEL_TYPES}), got {self.kernel_probs}."
            )


# Random draws, all from one generator
def uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high) with ``generator`` (the data modules' shared random draw)."""
    return low + (high - low) * torch.rand((), generator=generator).item()


def _choice(generator: torch.Generator, options: tuple, probs: tuple[float, ...] | None = None):
    weights = torch.ones(len(options)) if probs is None else torch.tensor(probs, dtype=torch.float64)
    return options[torch.multinomial(weights, 1, generator=generator).item()]


def _beta(generator: torch.Generator, beta_range: tuple[float, float]) -> float:
    """Real-ESRGAN's shape draw: half the time below 1, half the time above."""
    if uniform(generator, 0, 1) < 0.5:
        return uniform(generator, beta_range[0], 1.0)
    return uniform(generator, 1.0, beta_range[1])


# Kernels
def _mahalanobis_grid(size: int, sigma_x: float, sigma_y: float, rotation: float) -> torch.Tensor:
    """x^T Sigma^-1 x on a (size, size) grid centred on the middle pixel, Sigma = R diag(sx^2, sy^2) R^T."""
    axis = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    cos, sin = math.cos(rotation), math.sin(rotation)
    u = cos * xx + sin * yy
    v = -sin * xx + cos * yy
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def blur_kernel(
    kind: str, size: int, sigma_x: float, sigma_y: float, rotation: float = 0.0, beta: float = 1.0
) -> torch.Tensor:
    """A (size, size) float32 blur kernel that sums to 1.

    ``kind`` is one of KERNEL_TYPES; the iso kinds use ``sigma_x`` for both axes and no rotation; ``beta`` is the
    shape of the generalized (``exp(-0.5 d^beta)``) and plateau (``1 / (1 + d^beta)``) kernels.
    """
    if kind not in KERNEL_TYPES:
        raise ValueError(f"kind must be one of {KERNEL_TYPES}, got {kind!r}.")
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, rotation = sigma_x, 0.0
    distance = _mahalanobis_grid(size, sigma_x, sigma_y, rotation)
    if kind.startswith("generalized"):
        kernel = torch.exp(-0.5 * distance**beta)
    elif kind.startswith("plateau"):
        kernel = 1.0 / (distance**beta + 1.0)
    else:
        kernel = torch.exp(-0.5 * distance)
    return (kernel / kernel.sum()).float()


def sinc_kernel(omega_c: float, size: int) -> torch.Tensor:
    """A (size, size) float32 circular low-pass (2-D sinc) kernel with cutoff ``omega_c`` (rad/pixel), sum 1."""
    axis = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    radius = torch.sqrt(xx**2 + yy**2)
    safe = radius.clamp(min=1e-12)
    kernel = omega_c * torch.special.bessel_j1(omega_c * safe) / (2 * math.pi * safe)
    kernel = torch.where(radius == 0, torch.full_like(kernel, omega_c**2 / (4 * math.pi)), kernel)
    return (kernel / kernel.sum()).float()


def random_blur_kernel(
    generator: torch.Generator,
    config: DegradationConfig,
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
    sinc_prob: float,
) -> torch.Tensor:
    """Draw one stage's blur kernel (size, size) as Real-ESRGAN does (sinc with ``sinc_prob``, else a Gaussian)."""
    size = _choice(generator, config.kernel_sizes)
    if uniform(generator, 0, 1) < sinc_prob:
        omega_c = uniform(generator, math.pi / 3, math.pi) if size < 13 else uniform(generator, math.pi / 5, math.pi)
        return sinc_kernel(omega_c, size)
    kind = _choice(generator, KERNEL_TYPES, config.kernel_probs)
    sigma_x = uniform(generator, *sigma_range)
    sigma_y = uniform(generator, *sigma_range)
    rotation = uniform(generator, -math.pi, math.pi)
    beta = 1.0
    if kind.startswith("generalized"):
        beta = _beta(generator, betag_range)
    elif kind.startswith("plateau"):
        beta = _beta(generator, betap_range)
    return blur_kernel(kind, size, sigma_x, sigma_y, rotation, beta)


# Operations on (1, 3, H, W) images
# Kernels at least this wide are applied through the FFT (one CPU thread, 512x512: ~11 ms for any width against 24-60
# ms with direct convolution at 13-21 taps); below 13 taps direct convolution is as fast and stays exact.
FFT_MIN_KERNEL = 13


def smooth_fft_size(length: int) -> int:
    """The smallest integer >= ``length`` whose only prime factors are 2, 3 and 5 (fast for pocketfft / cuFFT)."""
    size = max(1, length)
    while True:
        rest = size
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def _filter(image: torch.Tensor, kernel: torch.Tensor, fft_min_kernel: int = FFT_MIN_KERNEL) -> torch.Tensor:
    """Correlate (1, 3, H, W) with a (k, k) kernel, reflect borders (replicate on images smaller than k / 2).

    Kernels of ``fft_min_kernel`` taps or more go through the FFT. Pass 1 for an image of a size not seen before:
    oneDNN compiles a convolution kernel for each new input shape, which made a direct 7-11 tap filter of a randomly
    resized image 2x slower than the FFT (30 against 14 ms at ~450x450, one thread); on a repeated shape the direct
    filter is the faster one (12 against 14 ms at 512x512).
    """
    pad = kernel.shape[-1] // 2
    border = "reflect" if pad < min(image.shape[-2:]) else "replicate"
    padded = F.pad(image, (pad, pad, pad, pad), mode=border)
    if kernel.shape[-1] < fft_min_kernel:  # one depthwise conv2d: kornia's filter2d wrapper costs 2-3x that here
        weight = kernel.to(image).expand(image.shape[1], 1, *kernel.shape)
        return F.conv2d(padded, weight, groups=image.shape[1])
    # Zero-padding the transform to a smooth size keeps the valid part of the circular convolution unchanged.
    size = tuple(smooth_fft_size(length) for length in padded.shape[-2:])
    spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(kernel.flip(-2, -1).to(image), s=size)
    out = torch.fft.irfft2(spectrum, s=size)  # circular convolution; the valid part starts at 2 * pad
    return out[..., 2 * pad : 2 * pad + image.shape[-2], 2 * pad : 2 * pad + image.shape[-1]]


def _resize(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    if mode == "area":
        return F.interpolate(image, size=size, mode="area")
    return F.interpolate(image, size=size, mode=mode, align_corners=False)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip with a real codec: (B, 3, H, W) float in [0, 1] -> same shape, decoded at ``quality``."""
    pixels = image.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    codes = encode_jpeg(list(pixels), quality=int(quality))
    return torch.stack([decode_jpeg(code) for code in codes]).to(image.dtype).div_(255.0)


def poisson_levels(codes: torch.Tensor) -> int:
    """Real-ESRGAN's Poisson resolution ``2 ** ceil(log2(number of distinct values))`` (at least 2) of an image of
    8-bit codes (any shape, float values in 0-255). A histogram counts them without the sort that ``torch.unique``
    needs (10 ms at 512x512)."""
    distinct = int(torch.count_nonzero(torch.bincount(codes.flatten().long(), minlength=256)))
    return 2 ** math.ceil(math.log2(max(2, distinct)))


def _add_noise(
    image: torch.Tensor,
    generator: torch.Generator,
    gaussian_prob: float,
    sigma_range: tuple[float, float],
    poisson_range: tuple[float, float],
    gray_prob: float,
) -> torch.Tensor:
    gaussian = uniform(generator, 0, 1) < gaussian_prob
    gray = uniform(generator, 0, 1) < gray_prob
    if gaussian:
        sigma = uniform(generator, *sigma_range) / 255.0
        shape = (image.shape[0], 1 if gray else 3, *image.shape[-2:])
        noise = torch.randn(shape, generator=generator) * sigma
    else:
        scale = uniform(generator, *poisson_range)
        base = kornia.color.rgb_to_grayscale(image) if gray else image
        codes = base.clamp(0, 1).mul(255).round()
        base = codes / 255.0
        levels = poisson_levels(codes)
        noise = (torch.poisson(base * levels, generator=generator) / levels - base) * scale
    return (image + noise).clamp(0, 1)


def _random_scale(generator: torch.Generator, probs: tuple[float, ...], scale_range: tuple[float, float]) -> float:
    direction = _choice(generator, ("up", "down", "keep"), probs)
    if direction == "up":
        return uniform(generator, 1.0, scale_range[1])
    if direction == "down":
        return uniform(generator, scale_range[0], 1.0)
    return 1.0


def _degrade_one(image: torch.Tensor, generator: torch.Generator, config: DegradationConfig) -> torch.Tensor:
    height, width = image.shape[-2:]
    kernel1 = random_blur_kernel(
        generator, config, config.blur_sigma, config.betag_range, config.betap_range, config.sinc_prob
    )
    kernel2 = random_blur_kernel(
        generator, config, config.blur_sigma2, config.betag_range2, config.betap_range2, config.sinc_prob2
    )
    if uniform(generator, 0, 1) < config.final_sinc_prob:
        size = _choice(generator, config.kernel_sizes)
        final_kernel = sinc_kernel(uniform(generator, math.pi / 3, math.pi), size)
    else:
        final_kernel = None  # no final sinc filter

    # First stage
    out = _filter(image, kernel1)
    factor = _random_scale(generator, config.resize_prob, config.resize_range)
    out = _resize(out, (int(height * factor), int(width * factor)), _choice(generator, RESIZE_MODES))
    out = _add_noise(
        out,
        generator,
        config.gaussian_noise_prob,
        config.noise_range,
        config.poisson_scale_range,
        config.gray_noise_prob,
    )
    out = jpeg(out, round(uniform(generator, *config.jpeg_range)))

    # Second stage
    if uniform(generator, 0, 1) < config.second_blur_prob:
        out = _filter(out, kernel2, fft_min_kernel=1)  # the first resize gave ``out`` a random size
    factor = _random_scale(generator, config.resize_prob2, config.resize_range2)
    size = (int(height / config.scale * factor), int(width / config.scale * factor))
    out = _resize(out, size, _choice(generator, RESIZE_MODES))
    out = _add_noise(
        out,
        generator,
        config.gaussian_noise_prob2,
        config.noise_range2,
        config.poisson_scale_range2,
        config.gray_noise_prob2,
    )

    # Final stage: resize to the LR size, sinc and JPEG in one of two orders
    lr_size = (height // config.scale, width // config.scale)
    mode = _choice(generator, RESIZE_MODES)
    quality = round(uniform(generator, *config.jpeg_range2))
    if uniform(generator, 0, 1) < 0.5:
        out = _resize(out, lr_size, mode)
        out = jpeg(out if final_kernel is None else _filter(out, final_kernel), quality)
    else:
        out = _resize(jpeg(out, quality), lr_size, mode)
        out = out if final_kernel is None else _filter(out, final_kernel)
    return out.clamp(0, 1).mul(255).round() / 255.0


def degrade(
    image_gt: torch.Tensor, seed: int | torch.Generator, config: DegradationConfig | None = None
) -> torch.Tensor:
    """Real-ESRGAN second-order degradation.

    Args:
        image_gt: (B, 3, H, W) or (3, H, W) float in [0, 1], H and W divisible by ``config.scale``.
        seed: an int (a fresh generator is seeded with it) or a ``torch.Generator`` (consumed in place); the same
            seed gives the same output.
        config: the parameter ranges (Real-ESRGAN's defaults when None).

    Returns:
        (B, 3, H / scale, W / scale) (or unbatched like the input) float32 in [0, 1], on the 8-bit grid.
    """
    config = config or DegradationConfig()
    if image_gt.ndim not in (3, 4) or image_gt.shape[-3] != 3:
        raise ValueError(f"image_gt must be (B, 3, H, W) or (3, H, W), got shape {tuple(image_gt.shape)}.")
    height, width = image_gt.shape[-2:]
    if height % config.scale or width % config.scale:
        raise ValueError(f"image_gt height and width must be divisible by {config.scale}, got {height}x{width}.")
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    batch = image_gt.float().cpu()
    batch = batch[None] if batch.ndim == 3 else batch
    out = torch.cat([_degrade_one(item[None], generator, config) for item in batch])
    return out[0] if image_gt.ndim == 3 else out


__all__ = [
    "KERNEL_TYPES",
    "uniform",
    "DegradationConfig",
    "blur_kernel",
    "degrade",
    "jpeg",
    "random_blur_kernel",
    "sinc_kernel",
]
