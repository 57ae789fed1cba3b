"""Running an SR generator over a directory of LR images before evaluation (``finpercep evaluate --generator``).

`load_generator` accepts what the generator trainers write and what diffusers, spandrel and users publish:

* a training run directory with LoRA weights (``pytorch_lora_weights.safetensors``): the base generator comes from
  ``base_model`` or, when that is None, from the ``base_model`` field of the run's model card (README.md); the LoRA
  is added to it from the file;
* a training run directory with a full UNet (``unet/``) or ControlNet (``controlnet/``), trained without LoRA: the
  same, with that model swapped in;
* anything `finpercep_hf.generators.load_generator` loads: a pipeline checkpoint of any family (SD-x4 upscaler,
  ControlNet SR, one-step SR; local directory or Hub id), a feed-forward SR weights file or a run directory with
  ``model.safetensors``, ``module.py:Name``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..images import list_images, load_image, pil_to_tensor, tensor_to_pil


def _run_base_model(run_dir: Path, base_model: str | None) -> str:
    if base_model is not None:
        return base_model
    card_path = run_dir / "README.md"
    if card_path.is_file():
        from huggingface_hub import ModelCard

        found = ModelCard.load(card_path).data.to_dict().get("base_model")
        if found:
            return found[0] if isinstance(found, list) else found
    raise ValueError(f"{run_dir} holds generator weights but names no base pipeline: pass --base-model PIPELINE.")


def load_generator(path: str | os.PathLike, base_model: str | None = None, num_inference_steps: int | None = None):
    """Load an SR generator from a training run or a checkpoint of any family (see the module docstring)."""
    from ..generators import LORA_WEIGHT_NAME
    from ..generators.loading import load_generator_with_options

    run = Path(path)
    trained_parts = [name for name in ("unet", "controlnet") if (run / name).is_dir()]
    if not ((run / LORA_WEIGHT_NAME).is_file() or trained_parts) or (run / "model_index.json").is_file():
        return load_generator_with_options(str(path), num_inference_steps=num_inference_steps)
    options = {"trainable": "controlnet"} if trained_parts == ["controlnet"] else {}
    generator = load_generator_with_options(
        _run_base_model(run, base_model), num_inference_steps=num_inference_steps, **options
    )
    if trained_parts:
        generator.trainable_model = type(generator.trained_model).from_pretrained(run / trained_parts[0])
    else:
        generator.load_lora_weights(run)
    return generator


def generate_sr_directory(
    generator,
    lr_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    pad_multiple: int = 8,
    progress: bool = True,
) -> Path:
    """Super-resolve every image of ``lr_dir`` (recursively) into ``out_dir`` as PNG with the same relative name.

    Each image is sampled alone with a ``torch.Generator`` seeded by ``seed``, so a result does not depend on the
    other images. LR images whose sides are not multiples of ``pad_multiple`` (the generator's downsampling, 8 for
    the SD-x4 upscaler) are padded by edge replication and the SR output is cropped back to ``scale`` x the LR
    size, as usual in SR evaluation. Returns ``out_dir``.
    """
    lr_dir, out_dir = Path(lr_dir), Path(out_dir)
    paths = list_images([lr_dir])
    if not paths:
        raise ValueError(f"LR directory {lr_dir} contains no images.")
    for path in tqdm(paths, desc="super-resolving", unit="img", disable=not progress, file=sys.stderr):
        image_lr = pil_to_tensor(load_image(path)).unsqueeze(0)
        height, width = image_lr.shape[-2:]
        padding = (0, -width % pad_multiple, 0, -height % pad_multiple)
        padded = F.pad(image_lr, padding, mode="replicate") if any(padding) else image_lr
        sample = generator.sample(padded, generator=torch.Generator().manual_seed(seed))
        image_sr = sample.images[0, :, : generator.scale * height, : generator.scale * width]
        target = (out_dir / path.relative_to(lr_dir)).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        tensor_to_pil(image_sr.float().cpu()).save(target)
    return out_dir


__all__ = ["generate_sr_directory", "load_generator"]
