"""Reading images from disk and converting images between PIL, numpy and torch, with errors that name the input.

Conventions used across the package: a *tensor image* is float (B, 3, H, W) or (3, H, W) in [0, 1]; a *PIL
image* is mode RGB unless said otherwise (masks are mode L, ``pdm_target`` is mode F).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Integer modes whose full range is not 0-255: divide by the mode's maximum before converting to RGB.
HIGH_BIT_DEPTH_MAX = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}


class FinPercepImageError(ValueError):
    """An image could not be read or converted; the message names the input."""


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK, ...) to RGB; alpha is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in HIGH_BIT_DEPTH_MAX or image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = HIGH_BIT_DEPTH_MAX.get(image.mode, 1.0)
        if image.mode == "I" and array.max(initial=0) <= 255:
            scale = 255.0
        gray = np.clip(array / scale, 0.0, 1.0)
        return Image.fromarray(np.round(gray * 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise FinPercepImageError(f"{name}: cannot convert mode {image.mode!r} to RGB ({error}).") from error


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file fully and return it as RGB; raise `FinPercepImageError` naming the file otherwise.

    Empty, truncated and unreadable files are errors (PIL's lazy loading would otherwise fail later, elsewhere), and
    so is a file whose header claims more pixels than PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``),
    before anything is decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FinPercepImageError(f"{path}: no such image file.")
    if path.stat().st_size == 0:
        raise FinPercepImageError(f"{path}: the file is empty (0 bytes).")
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return to_rgb(image, name=str(path))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise FinPercepImageError(f"{path}: refused as a possible decompression bomb ({error}).") from error
    except UnidentifiedImageError as error:
        raise FinPercepImageError(f"{path}: not a readable image ({error}).") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise FinPercepImageError(f"{path}: truncated or corrupt image ({error}).") from error
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def list_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (searched recursively, sorted) into image paths; files are kept as given."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()))
        else:
            paths.append(item)
    return paths


DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def read_images(inputs: list[str | os.PathLike]) -> tuple[list[tuple[str, Image.Image]], list[str]]:
    """Read files/directories into ``(name, RGB image)`` pairs, plus one error message per unreadable file.

    With no inputs, the scikit-image demo photos (``DEMO_PHOTOS``) are returned, named ``skimage:<name>``.
    """
    if not inputs:
        from skimage import data

        return [(f"skimage:{name}", Image.fromarray(getattr(data, name)()).convert("RGB")) for name in DEMO_PHOTOS], []
    images, errors = [], []
    for path in list_images(inputs):
        try:
            images.append((str(path), load_image(path)))
        except FinPercepImageError as error:
            errors.append(str(error))
    return images, errors


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [0, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> RGB PIL image (values are clamped and rounded)."""
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


__all__ = [
    "DEMO_PHOTOS",
    "FinPercepImageError",
    "IMAGE_EXTENSIONS",
    "list_images",
    "load_image",
    "pil_to_tensor",
    "read_images",
    "tensor_to_pil",
    "to_rgb",
]
