"""Image processor of FinPercep-RM: paths / PIL / numpy / tensors -> ``pixel_values`` (B, 3, H, W) in [0, 1].

CLIP's mean/std normalisation is *not* applied here: the model applies it, so gradients reach raw [0, 1] pixels
(REFL back-propagates from the reward into the generator's output).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ..images import FinPercepImageError, load_image, pil_to_tensor, to_rgb

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def _array_to_tensor(array: np.ndarray, name: str) -> torch.Tensor:
    """(H, W), (H, W, C) or (C, H, W) array -> (3, H, W) float in [0, 1]. Integer arrays are scaled by dtype max."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise FinPercepImageError(f"{name}: expected an (H, W), (H, W, C) or (C, H, W) array, got {array.shape}.")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif array.dtype == bool:
        array = array.astype(np.float32)
    array = array.astype(np.float32)
    if array.shape[-1] == 4:
        alpha = array[..., 3:]
        array = array[..., :3] * alpha + (1.0 - alpha)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def _check_tensor(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise FinPercepImageError(f"{name}: expected a (3, H, W) tensor, got shape {tuple(tensor.shape)}.")
    if not torch.isfinite(tensor).all():
        raise FinPercepImageError(f"{name}: the tensor contains NaN or Inf values.")
    if tensor.min() < 0 or tensor.max() > 1:
        raise FinPercepImageError(
            f"{name}: tensor values must lie in [0, 1], got [{tensor.min().item():.4g}, {tensor.max().item():.4g}]."
        )
    return tensor.float()


def image_to_tensor(image: ImageInput, name: str = "image") -> torch.Tensor:
    """One image of any supported kind -> (3, H, W) float32 in [0, 1]; `FinPercepImageError` names bad input."""
    if isinstance(image, (str, os.PathLike)):
        return pil_to_tensor(load_image(image))
    if isinstance(image, Image.Image):
        return pil_to_tensor(to_rgb(image, name=name))
    if isinstance(image, np.ndarray):
        tensor = _array_to_tensor(image, name)
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor.unsqueeze(0).expand(3, -1, -1)
    else:
        raise FinPercepImageError(f"{name}: unsupported image type {type(image).__name__}.")
    return _check_tensor(tensor, name)


class FinPercepImageProcessor(BaseImageProcessor):
    r"""Turns images into ``pixel_values`` for [`FinPercepRewardModel`].

    Args:
        do_resize (`bool`, *optional*, defaults to `False`): resize so that the short side is ``shortest_edge``.
        shortest_edge (`int`, *optional*, defaults to 512): target short side when resizing (aspect kept).
        do_pad (`bool`, *optional*, defaults to `False`): pad right/bottom by edge replication to a multiple of
            ``pad_multiple`` (padding lets differently sized crops batch; the model itself needs none).
        pad_multiple (`int`, *optional*, defaults to 16): the patch size to pad to.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = False,
        shortest_edge: int = 512,
        do_pad: bool = False,
        pad_multiple: int = 16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if shortest_edge < 1 or pad_multiple < 1:
            raise ValueError("shortest_edge and pad_multiple must be positive.")
        self.do_resize = do_resize
        self.shortest_edge = shortest_edge
        self.do_pad = do_pad
        self.pad_multiple = pad_multiple

    def _transform(self, tensor: torch.Tensor, do_resize: bool, do_pad: bool) -> torch.Tensor:
        if do_resize:
            height, width = tensor.shape[-2:]
            scale = self.shortest_edge / min(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            tensor = F.interpolate(tensor[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
            tensor = tensor.clamp(0, 1)
        if do_pad:
            pad_h, pad_w = -tensor.shape[-2] % self.pad_multiple, -tensor.shape[-1] % self.pad_multiple
            if pad_h or pad_w:
                tensor = F.pad(tensor[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
        return tensor

    def preprocess(
        self,
        images: ImageInput | list[ImageInput],
        do_resize: bool | None = None,
        do_pad: bool | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Images -> ``BatchFeature({"pixel_values": (B, 3, H, W) float32 in [0, 1]})``.

        A (B, 3, H, W) tensor is taken as a batch. All images of one call must end up the same size.
        """
        do_resize = self.do_resize if do_resize is None else do_resize
        do_pad = self.do_pad if do_pad is None else do_pad
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        tensors = [
            self._transform(image_to_tensor(image, name=_describe(image, index)), do_resize, do_pad)
            for index, image in enumerate(images)
        ]
        sizes = {tuple(t.shape[-2:]) for t in tensors}
        if len(sizes) > 1:
            raise FinPercepImageError(
                f"images of one batch must share a size after processing, got {sorted(sizes)}; "
                "score them one at a time or set do_resize/do_pad."
            )
        return BatchFeature({"pixel_values": torch.stack(tensors)}, tensor_type=return_tensors)


def _describe(image: ImageInput, index: int) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else f"image {index} ({type(image).__name__})"


__all__ = ["FinPercepImageProcessor", "image_to_tensor"]
