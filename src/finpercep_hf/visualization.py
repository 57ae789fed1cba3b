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


def save_image_grid(
    cells: list[tuple[Image.Image, np.ndarray | None, str]], path: str | Path, alpha: float = 0.55
) -> Path:
    """Images side by side (top row, titled) and, below each, its map (H, W) in [0, 1] blended over it (a blank
    cell for a ``None`` map); one shared colour bar. Written to a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(2, len(cells), figsize=(2.2 * len(cells) + 0.8, 4.8), squeeze=False)
    shown = None
    for column, (image, pdm, title) in enumerate(cells):
        rgb = np.asarray(image.convert("RGB"))
        axes[0, column].imshow(rgb)
        axes[0, column].set_title(title, fontsize=8)
        if pdm is not None:
            axes[1, column].imshow(rgb)
            shown = axes[1, column].imshow(np.clip(pdm, 0, 1), cmap=PDM_COLORMAP, vmin=0, vmax=1, alpha=alpha)
    for axis in axes.flat:
        axis.axis("off")
    if shown is not None:
        figure.colorbar(shown, ax=list(axes[1]), fraction=0.02, pad=0.01, label="defect (pdm)")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def save_curve_panels(
    panels: dict[str, dict[str, tuple[list[float], list[float]]]], path: str | Path, xlabel: str, title: str = ""
) -> Path:
    """One subplot per ``panel title -> {line name -> (xs, ys)}`` (the same lines in every panel, one legend),
    in rows of three, written to a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = -(-len(panels) // 3)
    figure, axes = plt.subplots(rows, 3, figsize=(13, 3.4 * rows + 0.6), squeeze=False)
    for axis, (panel_title, series) in zip(axes.flat, panels.items()):
        for name, (xs, ys) in series.items():
            axis.plot(xs, ys, marker="o", markersize=3, label=name)
        axis.set_title(panel_title, fontsize=10)
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


__all__ = ["PDM_COLORMAP", "save_curve_panels", "save_image_grid", "save_line_plot", "save_pdm_overlay"]
