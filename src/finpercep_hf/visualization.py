"""Pictures: PDM heatmap overlays with a colour bar, and simple line plots. Matplotlib's Agg backend, no display."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

PDM_COLORMAP = "inferno"


def save_pdm_overlay(
    image: Image.Image,
    pdm: np.ndarray | None,
    path: str | Path,
    title: str | None = None,
    mask: np.ndarray | None = None,
    alpha: float = 0.55,
) -> Path:
    """Write a PNG with the image, the map (H, W) in [0, 1] blended over it, and a colour bar.

    With ``mask`` (H, W) in {0, 1} (e.g. the FGR swap mask), its outline is drawn in cyan over both panels.
    A ``None`` map (a stage-0 model) writes the image alone with the title.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.asarray(image.convert("RGB"))
    panels = 1 if pdm is None else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels + 0.6, 4.2), squeeze=False)
    axes = axes[0]
    axes[0].imshow(rgb)
    axes[0].set_title("image")
    if pdm is not None:
        if pdm.shape != rgb.shape[:2]:
            raise ValueError(f"pdm shape {pdm.shape} does not match the image's {rgb.shape[:2]}.")
        axes[1].imshow(rgb)
        shown = axes[1].imshow(np.clip(pdm, 0, 1), cmap=PDM_COLORMAP, vmin=0, vmax=1, alpha=alpha)
        axes[1].set_title("perceptual degradation map")
        figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, label="defect (pdm)")
    if mask is not None:
        for axis in axes:
            axis.contour(mask.astype(float), levels=[0.5], colors="cyan", linewidths=1.0)
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_line_plot(
    series: dict[str, tuple[list[float], list[float]]], path: str | Path, xlabel: str, ylabel: str, title: str = ""
) -> Path:
    """One line per ``name -> (xs, ys)``, with markers and a legend, written to a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for name, (xs, ys) in series.items():
        axis.plot(xs, ys, marker="o", label=name)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if title:
        axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


__all__ = ["PDM_COLORMAP", "save_line_plot", "save_pdm_overlay"]
