"""The super-resolution pool: the models that turn a degraded LR image into ``image_sr``.

Protocol: an ``SRModel`` has a ``name`` (recorded per sample in the ``sr_model`` column), an ``artifact_kind``
(recorded in ``artifact_kind``) and ``__call__(lr, generator=None) -> sr`` with ``lr`` (B, 3, h, w) float in [0, 1]
and ``sr`` (B, 3, scale*h, scale*w) float in [0, 1].

Built-ins, chosen by a spec string in ``load_sr_model``:

- ``"bicubic"``, ``"bilinear"``, ``"lanczos"``: classical upsamplers (:class:`ClassicalUpsampler`);
- ``"artifact:<kind>"``: a labelled offline artifact generator from :mod:`finpercep_hf.data.artifacts`;
- ``"path/to/module.py:Class"`` or ``"package.module:Class"``: an adapter for DiffBIR / SeeSR / DiT4SR-style models
  (:class:`AdapterSR`); ``Class()`` is built with no arguments and called as ``instance(lr)``;
- anything else: a diffusers SR pipeline by Hub id or local path (:class:`DiffusersSR`;
  ``StableDiffusionUpscalePipeline`` and ``LDMSuperResolutionPipeline``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from PIL import Image

from ..images import pil_to_tensor, tensor_to_pil
from .artifacts import ArtifactGenerator


@runtime_checkable
class SRModel(Protocol):
    """``sr = model(lr)``: (B, 3, h, w) float in [0, 1] -> (B, 3, scale*h, scale*w) float in [0, 1]."""

    name: str
    artifact_kind: str

    def __call__(self, lr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...


class ClassicalUpsampler:
    """Bicubic / bilinear (torch) or Lanczos (PIL) upsampling; its ``image_sr`` carries the degradation's blur,
    noise and JPEG residue, so ``artifact_kind`` is ``"upsampled_degradation"``."""

    artifact_kind = "upsampled_degradation"
    MODES = ("bicubic", "bilinear", "lanczos")

    def __init__(self, mode: str = "bicubic", scale: int = 4) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}.")
        self.mode, self.scale, self.name = mode, scale, mode

    def __call__(self, lr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        height, width = lr.shape[-2] * self.scale, lr.shape[-1] * self.scale
        if self.mode == "lanczos":
            return torch.stack(
                [pil_to_tensor(tensor_to_pil(item).resize((width, height), Image.LANCZOS)) for item in lr]
            ).to(lr)
        return F.interpolate(lr, size=(height, width), mode=self.mode, align_corners=False).clamp(0, 1)


class DiffusersSR:
    """A diffusers SR pipeline (``StableDiffusionUpscalePipeline`` or ``LDMSuperResolutionPipeline``) by id or path.

    Args:
        model: Hub id or local path of the pipeline; also its recorded ``name``.
        num_inference_steps: denoising steps per call.
        prompt, guidance_scale, noise_level: ``StableDiffusionUpscalePipeline`` options (ignored by LDM-SR).
        device, dtype: where and in which precision the pipeline runs (default device: CUDA when available).
    """

    artifact_kind = "diffusion_sr"

    def __init__(
        self,
        model: str,
        num_inference_steps: int = 20,
        prompt: str = "",
        guidance_scale: float = 0.0,
        noise_level: int = 20,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        from diffusers import DiffusionPipeline

        self.pipeline = DiffusionPipeline.from_pretrained(model, torch_dtype=dtype)
        self.pipeline.set_progress_bar_config(disable=True)
        self.kind = type(self.pipeline).__name__
        if self.kind not in ("StableDiffusionUpscalePipeline", "LDMSuperResolutionPipeline"):
            raise ValueError(
                f"{model}: a {self.kind} is not an SR pipeline; use StableDiffusionUpscalePipeline or "
                "LDMSuperResolutionPipeline, or wrap the model with a 'module.py:Class' adapter."
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.pipeline.to(self.device)
        self.name = str(model)
        self.num_inference_steps, self.prompt = num_inference_steps, prompt
        self.guidance_scale, self.noise_level = guidance_scale, noise_level

    @torch.no_grad()
    def __call__(self, lr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        lr = lr.to(self.device, self.pipeline.dtype)
        if self.kind == "StableDiffusionUpscalePipeline":
            images = self.pipeline(
                prompt=[self.prompt] * lr.shape[0],
                image=lr,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                noise_level=self.noise_level,
                generator=generator,
                output_type="pt",
            ).images
        else:
            images = self.pipeline(
                image=lr * 2 - 1, num_inference_steps=self.num_inference_steps, generator=generator, output_type="pt"
            ).images
        return images.float().cpu().clamp(0, 1)  # output_type="pt": (B, 3, H, W) in [0, 1]


def import_object(spec: str, what: str = "spec"):
    """The object named by ``"path/to/module.py:Name"`` or ``"package.module:Name"`` (a file is executed as a module
    named ``finpercep_user_<stem>``). Errors name ``what`` and the spec."""
    module_name, _, name = spec.rpartition(":")
    if not module_name or not name:
        raise ValueError(f"{what} must be 'module.py:Name' or 'package.module:Name', got {spec!r}.")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"{what} {spec!r}: no such file {path}.")
        module_spec = importlib.util.spec_from_file_location(f"finpercep_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    if not hasattr(module, name):
        raise ValueError(f"{what} {spec!r}: {module_name} has no attribute {name!r}.")
    return getattr(module, name)


class AdapterSR:
    """Wraps a user class given as ``"path/to/module.py:Class"`` or ``"package.module:Class"``.

    The class is built with no arguments; its instance is called as ``instance(lr)`` (plus ``generator=`` when its
    ``__call__`` accepts one). ``name`` and ``artifact_kind`` come from the instance's attributes of those names
    when present (defaults: the spec and ``"sr_model"``).
    """

    def __init__(self, spec: str) -> None:
        self.model = import_object(spec, what="SR adapter spec")()
        self.name = str(getattr(self.model, "name", spec))
        self.artifact_kind = str(getattr(self.model, "artifact_kind", "sr_model"))
        self._takes_generator = "generator" in inspect.signature(self.model.__call__).parameters

    def __call__(self, lr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        sr = self.model(lr, generator=generator) if self._takes_generator else self.model(lr)
        if not torch.is_tensor(sr) or sr.ndim != 4 or sr.shape[:2] != lr.shape[:2]:
            raise ValueError(f"SR adapter {self.name}: expected a (B, 3, H, W) tensor, got {type(sr).__name__}.")
        return sr.float().cpu().clamp(0, 1)


def load_sr_model(spec: str | SRModel, scale: int = 4, **diffusers_kwargs) -> SRModel:
    """Build an SR model from a spec string (see the module docstring); an ``SRModel`` instance is returned as is.
    ``diffusers_kwargs`` (``num_inference_steps``, ``prompt``, ``guidance_scale``, ...) go to ``DiffusersSR``."""
    if not isinstance(spec, str):
        return spec
    if spec in ClassicalUpsampler.MODES:
        return ClassicalUpsampler(spec, scale=scale)
    if spec.startswith("artifact:"):
        return ArtifactGenerator(spec.split(":", 1)[1], scale=scale)
    if ":" in spec and not Path(spec).exists():
        return AdapterSR(spec)
    return DiffusersSR(spec, **diffusers_kwargs)


class SRPool:
    """A weighted set of SR models; ``pick(generator)`` draws the model for one sample.

    Args:
        models: spec strings or ``SRModel`` instances.
        weights: relative sampling weights (uniform when None).
        scale: the upsampling factor.
        diffusers_kwargs: sampling options of the diffusers members (see ``DiffusersSR``).
    """

    def __init__(
        self, models: list[str | SRModel], weights: list[float] | None = None, scale: int = 4, **diffusers_kwargs
    ) -> None:
        if not models:
            raise ValueError("SRPool needs at least one SR model.")
        if weights is not None and (len(weights) != len(models) or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"weights must be {len(models)} non-negative numbers with a positive sum, got {weights}.")
        self.models = [load_sr_model(model, scale=scale, **diffusers_kwargs) for model in models]
        self.weights = torch.tensor(weights if weights is not None else [1.0] * len(models), dtype=torch.float64)

    def pick(self, generator: torch.Generator) -> SRModel:
        return self.models[torch.multinomial(self.weights, 1, generator=generator).item()]


__all__ = ["AdapterSR", "ClassicalUpsampler", "DiffusersSR", "SRModel", "SRPool", "import_object", "load_sr_model"]
