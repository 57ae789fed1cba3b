"""Training pairs for the generator RL trainers: `LRHRDataset` (HR photos, LR made on the fly) and
`PreferencePairDataset` (pre-ranked HR pairs for offline Diffusion-DPO).

Random crops are a pure function of ``(seed, epoch, index)`` (the trainer calls ``set_epoch`` at every epoch), so
a run resumed mid-epoch sees exactly the crops of an uninterrupted one, whatever was drawn before the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..images import list_images, load_image, pil_to_tensor, to_rgb


class _EpochCrops:
    """Crop boxes aligned to the scale, drawn from ``np.random.default_rng([seed, epoch, index])``."""

    def __init__(self, resolution: int, scale: int, random_crop: bool, seed: int):
        if resolution < 1 or scale < 1 or resolution % scale:
            raise ValueError(f"resolution {resolution} must be a positive multiple of the scale {scale}.")
        self.resolution, self.scale, self.random_crop, self.seed = resolution, scale, random_crop, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the crops of ``epoch`` (called by the trainers before each epoch)."""
        self.epoch = epoch

    def item_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner (left, top) of a ``resolution`` crop, both multiples of ``scale``."""
        crop, scale = self.resolution, self.scale
        if self.random_crop:
            left = int(rng.integers(0, (width - crop) // scale + 1)) * scale
            top = int(rng.integers(0, (height - crop) // scale + 1)) * scale
            return left, top
        return (width - crop) // (2 * scale) * scale, (height - crop) // (2 * scale) * scale


class LRHRDataset(_EpochCrops, Dataset):
    """LR/HR training pairs for SR generators: items ``{"image_lr": (3, h, w), "image_gt": (3, s*h, s*w)}`` in [0, 1].

    ``images_gt`` are HR images (paths or PIL); with no ``images_lr`` paired, LR is made from the HR crop by
    ``degrade(crop (3, H, W), seed) -> (3, H / scale, W / scale)`` (e.g. `finpercep_hf.data.degradations.degrade`,
    seeded per item), or by bicubic x``scale`` downsampling when ``degrade`` is None. Each item is a
    ``resolution`` crop of HR (random when ``random_crop``, else centred) and the matching LR. Images smaller than
    ``resolution`` are an error naming the image.
    """

    def __init__(
        self,
        images_gt: list,
        images_lr: list | None = None,
        resolution: int = 512,
        scale: int = 4,
        random_crop: bool = True,
        seed: int = 0,
        degrade: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ):
        super().__init__(resolution, scale, random_crop, seed)
        if images_lr is not None and len(images_lr) != len(images_gt):
            raise ValueError(f"got {len(images_gt)} HR images but {len(images_lr)} LR images.")
        if not images_gt:
            raise ValueError("LRHRDataset needs at least one HR image.")
        self.images_gt, self.images_lr = images_gt, images_lr
        self.degrade = degrade

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> LRHRDataset:
        """HR images in ``directory`` (recursive); with ``gt/`` and ``lr/`` subfolders, pairs matched by name."""
        directory = Path(directory)
        if (directory / "gt").is_dir() and (directory / "lr").is_dir():
            images_gt = list_images([directory / "gt"])
            images_lr = [directory / "lr" / path.relative_to(directory / "gt") for path in images_gt]
            return cls(images_gt, images_lr, **kwargs)
        return cls(list_images([directory]), **kwargs)

    def __len__(self) -> int:
        return len(self.images_gt)

    @staticmethod
    def _open(item) -> Image.Image:
        return item.convert("RGB") if isinstance(item, Image.Image) else load_image(item)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_gt = self._open(self.images_gt[index])
        crop, scale = self.resolution, self.scale
        width, height = image_gt.size
        if width < crop or height < crop:
            raise ValueError(
                f"HR image {index} ({self.images_gt[index]}) is {width}x{height}, smaller than the "
                f"{crop}x{crop} crop (lower --resolution)."
            )
        rng = self.item_rng(index)
        left, top = self.box(width, height, rng)
        lr_crop = crop // scale
        gt = image_gt.crop((left, top, left + crop, top + crop))
        image_gt = pil_to_tensor(gt)
        if self.images_lr is not None:
            box = (left // scale, top // scale, left // scale + lr_crop, top // scale + lr_crop)
            image_lr = pil_to_tensor(self._open(self.images_lr[index]).crop(box))
        elif self.degrade is not None:
            image_lr = self.degrade(image_gt, int(rng.integers(0, 2**31)))
        else:
            image_lr = pil_to_tensor(gt.resize((lr_crop, lr_crop), Image.BICUBIC))
        return {"image_lr": image_lr, "image_gt": image_gt}


class PreferencePairDataset(_EpochCrops, Dataset):
    """Pre-ranked HR pairs for offline Diffusion-DPO, from rows with PIL image columns (e.g. an FGR dataset).

    Items: ``{"image_lr": (3, r/s, r/s), "image_gt", "image_chosen", "image_rejected": (3, r, r)}`` float in [0, 1]:
    the same ``resolution`` crop (random when ``random_crop``, else centred) of the three HR columns, and the
    bicubic x``scale`` downsampling of the ``gt_column`` crop as the LR input both candidates answer.

    Args:
        rows: a `datasets.Dataset` or a sequence of dicts with PIL images in the named columns, all the same size.
        chosen_column, rejected_column: the preferred and the rejected image (FGR's ranking is SR < SYN < GT).
        gt_column: the HR reference (LR source and the monitor's fidelity reference).
    """

    def __init__(
        self,
        rows: Sequence[dict],
        chosen_column: str = "image_syn",
        rejected_column: str = "image_sr",
        gt_column: str = "image_gt",
        resolution: int = 256,
        scale: int = 4,
        random_crop: bool = True,
        seed: int = 0,
    ):
        super().__init__(resolution, scale, random_crop, seed)
        if len(rows) == 0:
            raise ValueError("PreferencePairDataset needs at least one row.")
        missing = {chosen_column, rejected_column, gt_column} - set(rows[0])
        if missing:
            raise ValueError(f"the preference rows have no column(s) {sorted(missing)}; columns: {sorted(rows[0])}.")
        self.rows = rows
        self.columns = {"image_chosen": chosen_column, "image_rejected": rejected_column, "image_gt": gt_column}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        images = {key: to_rgb(row[column], name=f"row {index} {column}") for key, column in self.columns.items()}
        sizes = {image.size for image in images.values()}
        if len(sizes) != 1:
            raise ValueError(f"row {index}: the columns {list(self.columns.values())} differ in size: {sizes}.")
        width, height = sizes.pop()
        crop, scale = self.resolution, self.scale
        if width < crop or height < crop:
            raise ValueError(f"row {index} is {width}x{height}, smaller than the {crop}x{crop} crop.")
        left, top = self.box(width, height, self.item_rng(index))
        crops = {key: image.crop((left, top, left + crop, top + crop)) for key, image in images.items()}
        item = {key: pil_to_tensor(image) for key, image in crops.items()}
        item["image_lr"] = pil_to_tensor(crops["image_gt"].resize((crop // scale, crop // scale), Image.BICUBIC))
        return item


__all__ = ["LRHRDataset", "PreferencePairDataset"]
