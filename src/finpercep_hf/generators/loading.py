"""`load_generator`: an SR generator of the right family from a checkpoint, a Hub id or a Python class.

How the family is found (``generator_type=None``):

* a diffusers pipeline directory or Hub id: the ``_class_name`` of its ``model_index.json``
  (`StableDiffusionUpscalePipeline` -> ``sd_upscaler``, `StableDiffusionControlNetPipeline` -> ``controlnet_sr``,
  `StableDiffusionPipeline` -> ``one_step``, `StableDiffusion3Pipeline` / `StableDiffusion3ControlNetPipeline` ->
  ``flow``);
* a weights file (``.pth``, ``.pt``, ``.safetensors``, ``.ckpt``, ``.bin``) or a directory with ``model.safetensors``
  and no ``model_index.json``: a feed-forward network whose architecture spandrel detects (``feed_forward``);
* ``path/to/module.py:Name`` or ``package.module:Name``: ``Name()`` is called; an ``nn.Module`` result is wrapped as
  a feed-forward network, an [`SRGenerator`] is returned as it is.

``generator_type`` forces a family; ``register_generator_type`` adds one (and, optionally, the pipeline class
names that select it). ``kwargs`` go to the family's ``from_pretrained`` (e.g. ``prompt``, ``controlnet``,
``trainable``, ``fidelity``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..data.sr_pool import import_object
from .fidelity import FidelityConfig

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")


def lazy_from_pretrained(module: str, class_name: str) -> Callable[..., Any]:
    """A loader that imports ``finpercep_hf.generators.<module>.<class_name>`` only when called and calls its
    ``from_pretrained(name_or_path, **kwargs)``."""

    def load(name_or_path: str, **kwargs):
        generator_class = getattr(importlib.import_module(f"{__package__}.{module}"), class_name)
        return generator_class.from_pretrained(name_or_path, **kwargs)

    return load


GENERATOR_LOADERS: dict[str, Callable[..., Any]] = {
    "sd_upscaler": lazy_from_pretrained("sd_upscaler", "SDUpscalerGenerator"),
    "controlnet_sr": lazy_from_pretrained("controlnet_sr", "ControlNetSRGenerator"),
    "one_step": lazy_from_pretrained("one_step", "OneStepSRGenerator"),
    "feed_forward": lazy_from_pretrained("feed_forward", "FeedForwardSRGenerator"),
    "flow": lazy_from_pretrained("flow_sd3", "FlowSRGenerator"),
}
GENERATOR_OPTIONS: dict[str, tuple[str, ...]] = {
    "sd_upscaler": ("prompt", "noise_level"),
    "controlnet_sr": ("prompt", "controlnet", "trainable"),
    "one_step": ("prompt", "fidelity"),
    "feed_forward": ("fidelity",),
    "flow": ("prompt", "controlnet", "prompt_embeds_file", "transformer_class"),
}
OPTION_DEFAULTS = {"fidelity": FidelityConfig()}
MULTI_STEP_TYPES = ["sd_upscaler", "controlnet_sr", "flow"]
PIPELINE_CLASS_TYPES = {
    "StableDiffusionUpscalePipeline": "sd_upscaler",
    "StableDiffusionControlNetPipeline": "controlnet_sr",
    "StableDiffusionPipeline": "one_step",
    "StableDiffusion3Pipeline": "flow",
    "StableDiffusion3ControlNetPipeline": "flow",
}


def register_generator_type(name: str, loader: Callable[..., Any], pipeline_class_names: tuple[str, ...] = ()) -> None:
    """Add a family: ``loader(name_or_path, **kwargs) -> generator``, chosen by ``generator_type=name`` or by the
    ``_class_name`` of a pipeline's ``model_index.json`` in ``pipeline_class_names``."""
    GENERATOR_LOADERS[name] = loader
    for class_name in pipeline_class_names:
        PIPELINE_CLASS_TYPES[class_name] = name


def _pipeline_class_name(name_or_path: str) -> str | None:
    """``_class_name`` of a local or Hub ``model_index.json``, or None when there is none."""
    path = Path(name_or_path)
    if path.is_dir():
        index = path / "model_index.json"
        return json.loads(index.read_text())["_class_name"] if index.is_file() else None
    if path.exists():
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return json.loads(Path(hf_hub_download(name_or_path, "model_index.json")).read_text())["_class_name"]
    except EntryNotFoundError:
        return None


def detect_generator_type(name_or_path: str) -> str:
    """The family of a checkpoint (see the module docstring); an error names what was found."""
    path = Path(name_or_path)
    if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
        return "feed_forward"
    class_name = _pipeline_class_name(name_or_path)
    if class_name is None:
        if path.is_dir() and (path / "model.safetensors").is_file():
            return "feed_forward"
        raise ValueError(
            f"{name_or_path}: no model_index.json and no SR weights file ({', '.join(WEIGHT_SUFFIXES)}); "
            "pass generator_type or a 'module.py:Class'."
        )
    if class_name not in PIPELINE_CLASS_TYPES:
        raise ValueError(
            f"{name_or_path}: pipeline class {class_name} has no SR generator; known: {sorted(PIPELINE_CLASS_TYPES)} "
            "(register_generator_type adds one)."
        )
    return PIPELINE_CLASS_TYPES[class_name]


def _is_code_reference(name_or_path: str) -> bool:
    module, separator, attribute = name_or_path.rpartition(":")
    return bool(separator and module and attribute.isidentifier() and not Path(name_or_path).exists())


def load_generator(name_or_path: str, generator_type: str | None = None, **kwargs):
    """Load an SR generator (see the module docstring for how the family is chosen).

    Args:
        name_or_path: a pipeline directory or Hub id, a weights file, or ``module.py:Name``.
        generator_type: one of ``GENERATOR_LOADERS`` (default: detected).
        kwargs: passed to the family's loader (for ``module.py:Name`` wrapping an ``nn.Module``: to
            `FeedForwardSRGenerator`).
    """
    if generator_type is not None and generator_type not in GENERATOR_LOADERS:
        raise ValueError(f"generator_type must be one of {sorted(GENERATOR_LOADERS)}, got {generator_type!r}.")
    if generator_type is None and _is_code_reference(name_or_path):
        built = import_object(name_or_path, what="generator")()
        if isinstance(built, nn.Module):
            from .feed_forward import FeedForwardSRGenerator

            return FeedForwardSRGenerator(built, **kwargs)
        return built
    return GENERATOR_LOADERS[generator_type or detect_generator_type(name_or_path)](name_or_path, **kwargs)


def load_generator_with_options(
    name_or_path: str, generator_type: str | None = None, num_inference_steps: int | None = None, **options
):
    """`load_generator` from a training script's flags.

    ``options`` (``prompt``, ``noise_level``, ``controlnet``, ``trainable``, ``fidelity``) that are None or equal to
    their default (``FidelityConfig()``) are left to the family's defaults; one that is set but not taken by the
    family is an error naming the family.
    ``num_inference_steps`` goes to the families that sample in several steps (``MULTI_STEP_TYPES``).
    """
    if generator_type is None:
        generator_type = "feed_forward" if _is_code_reference(name_or_path) else detect_generator_type(name_or_path)
    if generator_type not in GENERATOR_LOADERS:
        raise ValueError(f"generator_type must be one of {sorted(GENERATOR_LOADERS)}, got {generator_type!r}.")
    given = {
        name: value for name, value in options.items() if value is not None and value != OPTION_DEFAULTS.get(name)
    }
    unused = sorted(set(given) - set(GENERATOR_OPTIONS.get(generator_type, ())))
    if unused:
        raise ValueError(f"{', '.join(unused)}: not an option of a {generator_type} generator ({name_or_path}).")
    if generator_type in MULTI_STEP_TYPES and num_inference_steps is not None:
        given["num_inference_steps"] = num_inference_steps
    if _is_code_reference(name_or_path):
        return load_generator(name_or_path, **given)
    return load_generator(name_or_path, generator_type, **given)


__all__ = [
    "GENERATOR_LOADERS",
    "GENERATOR_OPTIONS",
    "MULTI_STEP_TYPES",
    "PIPELINE_CLASS_TYPES",
    "detect_generator_type",
    "lazy_from_pretrained",
    "load_generator",
    "load_generator_with_options",
    "register_generator_type",
]
