"""Ground-truth Perceptual Degradation Maps (paper Eq. 4).

    pdm_target = Normalize(alpha * Diff_pixel + (1 - alpha) * Diff_feat)
    Diff_pixel = |image_syn - image_gt|, averaged over the 3 channels
    Diff_feat  = 1 - cos(f_syn, f_gt), f = DINOv3 patch features (CLS and register tokens skipped), upsampled
                 bilinearly from the patch grid to (H, W)
    Normalize  = divide by a dataset-level scale (a high percentile of the raw map, estimated once per dataset and
                 stored in the dataset card), then clip to [0, 1]

Offline fallback (no DINOv3 checkpoint): ``Diff_feat = 1 - SSIM_local(image_syn, image_gt)``, the channel mean of
the local SSIM map (Wang et al. 2004: Gaussian window of ``ssim_window`` pixels, sigma 1.5, reflect borders, c1 =
0.01^2, c2 = 0.03^2, as ``kornia.metrics.ssim``), clipped to >= 0. Like the DINOv3 term it responds to structure and
texture changes rather than plain intensity offsets; unlike it, it has no semantics. The dataset card records which
feature term a dataset was built with.

Cost (one CPU thread, 512x512, the FGR hot path). ``local_ssim`` filters the local moments as one 12-channel
separable convolution (the means of a, b, a*b and a^2 + b^2: SSIM needs the two energies only through their sum),
channels-last, in strips of ``STRIP_ROWS`` rows that stay in cache, instead of kornia's five 3-channel passes over
the whole image (2-3x less time; the same map to float32 rounding, ~4e-4 from a float64 evaluation for either). And
since the local SSIM at a pixel depends only on the window around it, where ``image_syn`` equals ``image_gt`` within
``ssim_window // 2`` pixels the map is 1 (the term 0): ``ssim_distance`` computes only the strips whose windows see a
changed pixel, and in each only the span of columns from the first to the last changed column its windows see, grown
by twice the window radius (reflect padding then only acts at true image borders, or on pixels equal in both images).
It writes 0 elsewhere, where the whole-image map is 1 up to float rounding (~1e-6 in float32), so the cost follows the
region that FGR's swap changed (10-50% of the image) rather than the image. Spans are rounded up to multiples of
``SPAN_QUANTUM`` pixels: oneDNN compiles a kernel for every new convolution shape, which on a new shape cost more than
the SSIM itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import kornia
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# local_ssim works through the image in strips of this many rows (plus the window's halo): a strip's 12 moment planes
# stay in the CPU cache, which made a 512x512 map 1.5-2x faster than filtering the whole image at once (one thread);
# 64-128 rows measured alike.
STRIP_ROWS = 96


def local_ssim(image_a: torch.Tensor, image_b: torch.Tensor, window: int = 11) -> torch.Tensor:
    """The local SSIM map: (B, C, H, W) x 2 in [0, 1] -> (B, C, H, W) in [-1, 1]; 1 where both windows match.

    Gaussian window of ``window`` taps (odd, sigma 1.5), reflect padding (H and W must exceed ``window // 2``), c1 =
    0.01^2 and c2 = 0.03^2; no epsilon in the denominator (it is >= c1 * c2 > 0). Computed in strips of
    ``STRIP_ROWS`` rows, each with ``window // 2`` rows of context above and below (the same map).
    """
    out = torch.empty_like(image_a)
    for top, bottom, low, high in _strips(image_a.shape[-2], window // 2):
        strip = _local_ssim_rows(image_a[..., low:high, :], image_b[..., low:high, :], window)
        out[..., top:bottom, :] = strip[..., top - low : bottom - low, :]
    return out


def _strips(height: int, halo: int, first: int = 0, last: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """``(top, bottom, low, high)`` of the STRIP_ROWS-row strips (on a grid from row 0, so their shapes recur) that
    hold rows ``first`` to ``last``: output rows ``[top, bottom)``, input rows ``[low, high)`` with ``halo`` rows of
    context inside the image."""
    last = height if last is None else min(height, last)
    for top in range(max(0, first) // STRIP_ROWS * STRIP_ROWS, last, STRIP_ROWS):
        bottom = min(height, top + STRIP_ROWS)
        yield top, bottom, max(0, top - halo), min(height, bottom + halo)


def _local_ssim_rows(image_a: torch.Tensor, image_b: torch.Tensor, window: int) -> torch.Tensor:
    """``local_ssim`` of one strip; its reflect padding is right only at true image borders (the caller crops)."""
    channels, pad = image_a.shape[1], window // 2
    taps = kornia.filters.get_gaussian_kernel1d(window, 1.5, device=image_a.device, dtype=image_a.dtype)[0]
    # SSIM needs E[a^2] and E[b^2] only through their sum: four filtered moments rather than five.
    energy = torch.addcmul(image_a * image_a, image_b, image_b)
    moments = torch.cat([image_a, image_b, energy, image_a * image_b], dim=1)
    groups = moments.shape[1]
    # oneDNN's depthwise convolutions run faster on channels-last data (a strip converts in cache)
    moments = F.pad(moments, (pad, pad, pad, pad), mode="reflect").contiguous(memory_format=torch.channels_last)
    moments = F.conv2d(moments, taps.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    moments = F.conv2d(moments, taps.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups).contiguous()
    mean_a, mean_b, energy, product = moments.split(channels, dim=1)
    c1, c2 = 0.01**2, 0.03**2
    mean_ab = mean_a * mean_b
    mean_energy = torch.addcmul(mean_a * mean_a, mean_b, mean_b)
    numerator = (2 * mean_ab + c1) * (2 * (product - mean_ab) + c2)
    return numerator / ((mean_energy + c1) * (energy - mean_energy + c2))


# Column spans are rounded up to this many pixels: oneDNN compiles a convolution kernel for each new input shape (tens
# of ms, more than the convolution), so a bounded set of strip shapes keeps a long build on compiled kernels.
SPAN_QUANTUM = 32


def _snapped_span(start: int, stop: int, length: int) -> slice:
    """``[start, stop)`` clipped to ``[0, length)``, widened to a multiple of SPAN_QUANTUM (or ``length``) and shifted
    back inside the image when the widening overruns its end."""
    start, stop = max(0, start), min(length, stop)
    size = min(length, -(-(stop - start) // SPAN_QUANTUM) * SPAN_QUANTUM)
    start = min(start, length - size)
    return slice(start, start + size)


class PDMTargetBuilder:
    """Computes ``pdm_target`` maps from (``image_syn``, ``image_gt``) pairs.

    Args:
        dino: a DINOv3 checkpoint id or path, a loaded ``DINOv3ViTModel``, or None for the ``1 - SSIM`` fallback.
        alpha: weight of the pixel term (paper default 0.5; 1 keeps only the pixel term).
        scale: the dataset-level normalisation scale; set it, or estimate it with ``estimate_scale``, before
            calling the builder.
        ssim_window: window of the fallback's local SSIM (odd).
        image_mean, image_std: normalisation of the DINOv3 inputs (ImageNet's, as the LVD-1689M checkpoints).
        device: where the DINOv3 model runs (default: the current CUDA device when there is one, else CPU).
    """

    def __init__(
        self,
        dino=None,
        alpha: float = 0.5,
        scale: float | None = None,
        ssim_window: int = 11,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        device: str | torch.device | None = None,
    ) -> None:
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        if scale is not None and scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}.")
        if ssim_window % 2 == 0:
            raise ValueError(f"ssim_window must be odd, got {ssim_window}.")
        if isinstance(dino, str):
            from transformers import DINOv3ViTModel

            dino = DINOv3ViTModel.from_pretrained(dino)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dino = dino.to(self.device).eval() if dino is not None else None
        self.alpha, self.scale, self.ssim_window = alpha, scale, ssim_window
        self.image_mean = torch.tensor(image_mean).view(1, 3, 1, 1)
        self.image_std = torch.tensor(image_std).view(1, 3, 1, 1)

    @property
    def feature_name(self) -> str:
        """``"dinov3:<checkpoint>"`` or ``"1-ssim"``: which feature term the maps use."""
        if self.dino is None:
            return "1-ssim"
        return f"dinov3:{self.dino.config.name_or_path or 'unnamed'}"

    @staticmethod
    def pixel_term(image_syn: torch.Tensor, image_gt: torch.Tensor) -> torch.Tensor:
        """``|image_syn - image_gt|`` averaged over channels: (B, 3, H, W) x 2 -> (B, 1, H, W) in [0, 1]."""
        return (image_syn - image_gt).abs().mean(dim=1, keepdim=True)

    @torch.no_grad()
    def dino_patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """DINOv3 patch tokens of (B, 3, H, W) images in [0, 1] as a (B, D, H / p, W / p) grid.

        The images are resized (bilinear) to the nearest multiple of the patch size p first; the CLS and register
        tokens are dropped.
        """
        patch = self.dino.config.patch_size
        grid = (max(1, round(images.shape[-2] / patch)), max(1, round(images.shape[-1] / patch)))
        pixels = F.interpolate(images, size=(grid[0] * patch, grid[1] * patch), mode="bilinear", align_corners=False)
        pixels = ((pixels - self.image_mean) / self.image_std).to(self.device, self.dino.dtype)
        tokens = self.dino(pixel_values=pixels).last_hidden_state
        patches = tokens[:, 1 + self.dino.config.num_register_tokens :]
        return patches.transpose(1, 2).reshape(images.shape[0], -1, *grid).float().cpu()

    def ssim_distance(
        self, image_syn: torch.Tensor, image_gt: torch.Tensor, changed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``1 - SSIM_local`` (channel mean, clipped to >= 0): (B, 3, H, W) x 2 -> (B, 1, H, W), computed only around
        the pixels where the images differ (0 elsewhere; see the module docstring). ``changed``: (B, H, W) bool, where
        they differ, when the caller has it already (``raw`` reads it off the pixel term)."""
        out = image_syn.new_zeros(image_syn.shape[0], 1, *image_syn.shape[-2:])
        (height, width), halo = image_syn.shape[-2:], self.ssim_window // 2
        if changed is None:
            changed = (image_syn != image_gt).any(dim=1)
        for index in range(image_syn.shape[0]):
            rows = changed[index].any(dim=1).nonzero()
            if rows.numel() == 0:
                continue
            for top, bottom, low, high in _strips(height, halo, int(rows[0]) - halo, int(rows[-1]) + 1 + halo):
                cols = changed[index, low:high].any(dim=0).nonzero()  # changed columns the strip's windows see
                if cols.numel() == 0:
                    continue
                span = _snapped_span(int(cols[0]) - 2 * halo, int(cols[-1]) + 1 + 2 * halo, width)
                ssim = _local_ssim_rows(
                    image_syn[index : index + 1, :, low:high, span], image_gt[index : index + 1, :, low:high, span],
                    self.ssim_window,
                )  # fmt: skip
                out[index, :, top:bottom, span] = (1 - ssim[0, :, top - low : bottom - low].mean(dim=0)).clamp(min=0)
        return out

    def feature_term(
        self, image_syn: torch.Tensor, image_gt: torch.Tensor, changed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``1 - cos`` of DINOv3 patch features (or ``1 - SSIM`` offline, see ``ssim_distance`` for ``changed``),
        (B, 1, H, W), >= 0."""
        if self.dino is None:
            return self.ssim_distance(image_syn, image_gt, changed)
        features = self.dino_patch_features(torch.cat([image_syn, image_gt]))
        feature_syn, feature_gt = features.chunk(2)
        distance = 1 - F.cosine_similarity(feature_syn, feature_gt, dim=1, eps=1e-8)[:, None]
        distance = F.interpolate(distance, size=image_syn.shape[-2:], mode="bilinear", align_corners=False)
        return distance.clamp(min=0)

    def raw(self, image_syn: torch.Tensor, image_gt: torch.Tensor) -> torch.Tensor:
        """The un-normalised map ``alpha * Diff_pixel + (1 - alpha) * Diff_feat``: (B, 1, H, W) float32, >= 0.

        Args:
            image_syn, image_gt: (B, 3, H, W) float in [0, 1].
        """
        if image_syn.shape != image_gt.shape or image_syn.ndim != 4 or image_syn.shape[1] != 3:
            raise ValueError(
                f"image_syn {tuple(image_syn.shape)} and image_gt {tuple(image_gt.shape)} must both be (B, 3, H, W)."
            )
        image_syn, image_gt = image_syn.float().cpu(), image_gt.float().cpu()
        pixel = self.pixel_term(image_syn, image_gt)
        out = self.alpha * pixel
        if self.alpha < 1:
            # a mean of absolute differences is 0 exactly where the images are equal (or differ by < 1e-45)
            out = out + (1 - self.alpha) * self.feature_term(image_syn, image_gt, changed=pixel[:, 0] > 0)
        return out

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        """``clip(raw / scale, 0, 1)``; needs ``scale``."""
        if self.scale is None:
            raise ValueError("PDMTargetBuilder.scale is not set: pass scale= or call estimate_scale() first.")
        return (raw / self.scale).clamp(0, 1)

    def __call__(self, image_syn: torch.Tensor, image_gt: torch.Tensor) -> torch.Tensor:
        """``pdm_target``: (B, 3, H, W) x 2 in [0, 1] -> (B, 1, H, W) float32 in [0, 1]."""
        return self.normalize(self.raw(image_syn, image_gt))

    def estimate_scale(self, raw_maps: Iterable[torch.Tensor], percentile: float = 99.0) -> float:
        """Set and return ``scale`` = the ``percentile`` of all pixels of ``raw_maps`` (maps from ``raw``)."""
        values = np.concatenate([raw.detach().float().cpu().numpy().ravel() for raw in raw_maps])
        if values.size == 0:
            raise ValueError("estimate_scale needs at least one raw map.")
        self.scale = max(float(np.percentile(values, percentile)), 1e-6)
        return self.scale


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PDMTargetBuilder", "local_ssim"]
