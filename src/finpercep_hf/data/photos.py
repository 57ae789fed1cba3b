"""The real photos that installed packages ship, as named sources for offline training and evaluation.

Names are ``"skimage:<name>"`` (scikit-image's ``skimage.data``, no download) and ``"sklearn:<name>"``
(scikit-learn's ``load_sample_images``: ``china``, ``flower``; optional, skipped when scikit-learn is not
installed). `BUNDLED_PHOTOS` lists every natural or scientific photograph among them; synthetic images (logos,
checkerboards, binary masks), the right half of the stereo pair and ``cat`` (the same photo as ``chelsea``) are
left out, so a held-out photo never reappears under another name.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_BUNDLED = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "stereo_motorcycle", "text",
)  # fmt: skip
SKLEARN_BUNDLED = ("china", "flower")
BUNDLED_PHOTOS = tuple(f"skimage:{name}" for name in SKIMAGE_BUNDLED) + tuple(
    f"sklearn:{name}" for name in SKLEARN_BUNDLED
)


def available_photos(exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """`BUNDLED_PHOTOS` whose package is installed, minus ``exclude`` (names with or without the prefix)."""
    has_sklearn = importlib.util.find_spec("sklearn") is not None
    return tuple(
        name
        for name in BUNDLED_PHOTOS
        if name not in exclude
        and name.split(":", 1)[1] not in exclude
        and (has_sklearn or name.startswith("skimage:"))
    )


def load_bundled_photo(name: str) -> Image.Image:
    """The RGB photo ``"skimage:<name>"`` or ``"sklearn:<name>"`` (gray photos are repeated over 3 channels)."""
    package, _, photo = name.partition(":")
    if package == "skimage" and photo in SKIMAGE_BUNDLED:
        from skimage import data

        array = getattr(data, photo)()
        array = array[0] if isinstance(array, tuple) else array  # stereo_motorcycle: (left, right, disparity)
    elif package == "sklearn" and photo in SKLEARN_BUNDLED:
        from sklearn.datasets import load_sample_image

        array = load_sample_image(f"{photo}.jpg")
    else:
        raise ValueError(f"unknown bundled photo {name!r}; known: {', '.join(BUNDLED_PHOTOS)}.")
    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def export_photos(names: tuple[str, ...], directory: str | Path) -> list[Path]:
    """Write the named bundled photos as PNG files ``<package>_<name>.png`` into ``directory``; returns the paths
    (an FGR build reads them with ``FGRBuildConfig(images=[directory])``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = directory / (name.replace(":", "_") + ".png")
        if not path.exists():
            load_bundled_photo(name).save(path)
        paths.append(path)
    return paths


__all__ = ["BUNDLED_PHOTOS", "available_photos", "export_photos", "load_bundled_photo"]
