"""Labelled offline artifact generators: SR stand-ins that need no checkpoint.

Each generator upsamples the degraded LR image x4 and then adds one named, hand-made artifact typical of
over-eager SR models. They are honest stand-ins for building FGR offline (the embedded ``mini`` preset): their
``name`` is ``"artifact:<kind>"`` and their ``artifact_kind`` is ``<kind>``, so a dataset built with them never
presents their outputs as diffusion outputs. Every parameter is drawn per call from the generator passed to
``__call__``: the kind's own strengths, then a blending weight ``t ~ U(BLEND_RANGE)`` that mixes the artifact with
the plain bicubic upsampling (``up + t * (artifact - up)``), so no single strength can be memorised.

Kinds (``ARTIFACT_KINDS``):

- ``oversharpen_halo``: strong unsharp masking -> bright/dark halos along edges and amplified noise;
- ``jpeg_in_the_loop``: 1-3 rounds of low-quality JPEG (quality 5-25) on shifted 8x8 grids -> blocking, ringing;
- ``hallucinated_texture``: oriented band-pass noise pushed through ``tanh`` and added with a strength that peaks
  in mid-tones -> crisp, fake high-frequency texture;
- ``waxy_oversmoothing``: an edge-preserving (self-guided) filter -> flat, plastic regions with lost texture;
- ``color_bleeding``: shifted, blurred and over-saturated chroma -> colour fringes and bleeding;
- ``aliasing_jaggies``: nearest-neighbour upsampling -> staircase edges and blocky detail;
- ``ringing``: an ideal (brick-wall) low-pass in the Fourier domain -> Gibbs ripples along edges;
- ``banding``: quantisation to 5-16 levels per channel after a light blur -> contour bands in smooth gradients;
- ``checkerboard``: a periodic 2-4 px pattern modulating the image -> the transposed-convolution artifact;
- ``detail_blur``: a Gaussian blur -> lost detail, as a regression-to-the-mean SR model.

`ARTIFACT_FAMILIES` groups the kinds by the mechanism behind them; leave-kinds-out evaluation trains without one
family and tests on it.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from .degradations import blur_kernel, jpeg, uniform

ARTIFACT_KINDS = (
    "oversharpen_halo",
    "jpeg_in_the_loop",
    "hallucinated_texture",
    "waxy_oversmoothing",
    "color_bleeding",
    "aliasing_jaggies",
    "ringing",
    "banding",
    "checkerboard",
    "detail_blur",
)
ARTIFACT_FAMILIES = {
    "sharpening": ("oversharpen_halo", "ringing"),
    "compression": ("jpeg_in_the_loop", "banding"),
    "texture": ("hallucinated_texture", "checkerboard"),
    "smoothing": ("waxy_oversmoothing", "detail_blur"),
    "colour": ("color_bleeding",),
    "aliasing": ("aliasing_jaggies",),
}
BLEND_RANGE = (0.6, 1.0)


def _randint(generator: torch.Generator | None, low: int, high: int) -> int:
    """An integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator).item())


class ArtifactGenerator:
    """``sr = generator(lr, torch_generator)``: (B, 3, h, w) -> (B, 3, scale*h, scale*w), float in [0, 1].

    Args:
        kind: one of ``ARTIFACT_KINDS``.
        scale: the upsampling factor.
    """

    def __init__(self, kind: str, scale: int = 4) -> None:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"artifact kind must be one of {ARTIFACT_KINDS}, got {kind!r}.")
        self.kind, self.scale = kind, scale
        self.name = f"artifact:{kind}"
        self.artifact_kind = kind

    def __call__(self, lr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        size = (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        up = F.interpolate(lr, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        if self.kind == "aliasing_jaggies":
            artifact = F.interpolate(lr, size=size, mode="nearest")
        else:
            artifact = getattr(self, f"_{self.kind}")(up, generator)
        blend = uniform(generator, *BLEND_RANGE)
        return (up + blend * (artifact - up)).clamp(0, 1)

    def _oversharpen_halo(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sigma = uniform(generator, 1.0, 3.0)
        amount = uniform(generator, 2.0, 5.0)
        kernel_size = 2 * round(3 * sigma) + 1
        blurred = kornia.filters.gaussian_blur2d(up, (kernel_size, kernel_size), (sigma, sigma), border_type="reflect")
        return up + amount * (up - blurred)

    def _jpeg_in_the_loop(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        out = up
        for _ in range(_randint(generator, 1, 3)):
            shift = (_randint(generator, 0, 7), _randint(generator, 0, 7))
            out = jpeg(out.roll(shift, dims=(-2, -1)), _randint(generator, 5, 25)).roll(
                (-shift[0], -shift[1]), (-2, -1)
            )
        return out

    def _hallucinated_texture(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        channels = 1 if uniform(generator, 0, 1) < 0.5 else 3
        noise = torch.randn((up.shape[0], channels, *up.shape[-2:]), generator=generator)
        sigma_long, sigma_short = uniform(generator, 1.0, 3.0), uniform(generator, 0.4, 1.0)
        kernel = blur_kernel("aniso", 11, sigma_long, sigma_short, uniform(generator, -math.pi, math.pi))
        fine = kornia.filters.filter2d(noise, kernel[None], border_type="reflect")
        band = fine - kornia.filters.gaussian_blur2d(fine, (9, 9), (2.5, 2.5), border_type="reflect")
        texture = torch.tanh(3.0 * band / band.std().clamp(min=1e-6))
        luminance = kornia.color.rgb_to_grayscale(up)
        strength = uniform(generator, 0.06, 0.16) * (0.3 + 2.8 * luminance * (1 - luminance))
        return up + strength * texture

    def _waxy_oversmoothing(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        size = 2 * _randint(generator, 3, 6) + 1
        return kornia.filters.guided_blur(up, up, (size, size), uniform(generator, 0.003, 0.02))

    def _color_bleeding(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        ycbcr = kornia.color.rgb_to_ycbcr(up)
        chroma = ycbcr[:, 1:] - 0.5
        sigma = uniform(generator, 1.5, 4.0)
        kernel_size = 2 * round(3 * sigma) + 1
        chroma = kornia.filters.gaussian_blur2d(
            chroma, (kernel_size, kernel_size), (sigma, sigma), border_type="reflect"
        )
        shift = (_randint(generator, -6, 6), _randint(generator, -6, 6))
        chroma = chroma.roll(shift, dims=(-2, -1)) * uniform(generator, 1.4, 2.2)
        return kornia.color.ycbcr_to_rgb(torch.cat([ycbcr[:, :1], chroma + 0.5], dim=1))

    def _ringing(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        height, width = up.shape[-2:]
        spectrum = torch.fft.rfft2(up)
        fy = torch.fft.fftfreq(height).abs()[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        cutoff = uniform(generator, 0.03, 0.08)  # cycles per pixel (x4 upsampling carries <= 0.125)
        return torch.fft.irfft2(spectrum * ((fy <= cutoff) & (fx <= cutoff)), s=(height, width))

    def _banding(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        levels = _randint(generator, 5, 16)
        smooth = kornia.filters.gaussian_blur2d(up, (5, 5), (1.0, 1.0), border_type="reflect")
        return torch.round(smooth * levels) / levels

    def _checkerboard(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        period = _randint(generator, 2, 4)
        rows = torch.arange(up.shape[-2])[:, None] // (period // 2 or 1)
        cols = torch.arange(up.shape[-1])[None, :] // (period // 2 or 1)
        pattern = ((rows + cols) % 2).float() * 2 - 1
        return up * (1 + uniform(generator, 0.08, 0.2) * pattern)

    def _detail_blur(self, up: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        sigma = uniform(generator, 1.2, 3.0)
        kernel_size = 2 * round(3 * sigma) + 1
        return kornia.filters.gaussian_blur2d(up, (kernel_size, kernel_size), (sigma, sigma), border_type="reflect")


def kinds_without(families: tuple[str, ...]) -> tuple[str, ...]:
    """`ARTIFACT_KINDS` minus the kinds of the named `ARTIFACT_FAMILIES` (for leave-kinds-out training)."""
    unknown = set(families) - set(ARTIFACT_FAMILIES)
    if unknown:
        raise ValueError(f"unknown artifact families {sorted(unknown)}; known: {sorted(ARTIFACT_FAMILIES)}.")
    left_out = {kind for family in families for kind in ARTIFACT_FAMILIES[family]}
    return tuple(kind for kind in ARTIFACT_KINDS if kind not in left_out)


__all__ = ["ARTIFACT_FAMILIES", "ARTIFACT_KINDS", "BLEND_RANGE", "ArtifactGenerator", "kinds_without"]
