"""`SRGenerator`: what the generator RL trainers (REFL, Diffusion-DPO, GRPO) need from a diffusion SR model.

The trainers never touch a pipeline: they drive a generator through this protocol. It has two layers.

High level (REFL, validation):

* ``sample(image_lr, num_inference_steps, generator, return_trajectory)`` -> [`SRSample`]: full sampling, no grad.
* ``predict_x0_with_grad(latents, timestep, condition)``: one UNet call *with* grad and the x0 estimate it implies.

Low level (Diffusion-DPO and GRPO build their losses from these):

* ``encode_condition(image_lr, generator)`` -> [`SRCondition`]: the LR conditioning computed once per batch.
* ``prepare_latents(condition, generator)``: initial noise (B, C, h, w).
* ``denoise(latents, timestep, condition)`` -> model output (eps / v / sample, see ``prediction_type``).
* ``scheduler`` (a diffusers scheduler with ``alphas_cumprod``) and ``prediction_type``.
* ``predict_x0(model_output, timestep, latents)``: the x0 estimate of a model output (no scheduler state used).
* ``encode_images(image_gt)`` -> latents and ``decode(latents)`` -> pixels (B, 3, H, W) in [0, 1], differentiable.
* ``add_noise(latents, noise, timesteps)`` and ``training_target(latents, noise, timesteps)`` for denoising losses.
* ``add_lora(rank, ...)``, ``reference_policy()`` (a context in which adapters are disabled: the frozen reference
  policy pi_ref of DPO/GRPO is the same network without its LoRA), ``trainable_parameters()``,
  ``save_lora_weights(dir)`` / ``load_lora_weights(dir)`` in diffusers' format.
* ``save_trained_model(dir)``: a fully fine-tuned ``trainable_model`` in its own format (``use_lora=False``).
* ``trainable_model``: the ``nn.Module`` that holds the trainable parameters; the trainer replaces it by its
  ``accelerator.prepare``-d wrapper (DDP), so ``denoise`` must call ``self.trainable_model``.

How another generator plugs in (SeeSR, DiT4SR, DiffBIR): write a class with the methods above over that model's
components and pass it to any trainer; nothing in the trainers depends on the SD-x4 upscaler. SeeSR: its
``ControlNet``-style conditioning (LR image + DAPE tag embeddings) goes in ``SRCondition.extra`` and is computed
once in ``encode_condition``; ``denoise`` runs ControlNet + UNet; ``trainable_model`` is the UNet (LoRA) or the
ControlNet. DiT4SR: a ``SD3Transformer2DModel``-style DiT with LR tokens; ``denoise`` returns the flow velocity and
``prediction_type = "flow"``, ``predict_x0`` is ``x_t - sigma * v``; the VAE has 8x downsampling, so
``encode_condition`` also upsamples the LR image. [`SDUpscalerGenerator`] is the reference implementation.

Families in this package: [`SDUpscalerGenerator`] (SD-x4 upscaler), [`ControlNetSRGenerator`] (SeeSR / DiffBIR:
SD2 UNet + ControlNet on the upsampled LR image, tags or restoration output in ``SRCondition.extra``),
[`OneStepSRGenerator`] (OSEDiff: one UNet call from the LR latent) and [`FeedForwardSRGenerator`] (Real-ESRGAN,
SwinIR, HAT, ... through spandrel); the last two are also [`DirectSRGenerator`]s. `loading.load_generator` picks
the family of a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class SRCondition:
    """The conditioning of one batch of LR images, computed once by ``encode_condition``.

    Attributes:
        image_lr: the LR input as the denoiser consumes it, e.g. (B, 3, h, w) float in [-1, 1] after the low-res
            noise of the SD-x4 upscaler.
        encoder_hidden_states: (B, L, D) prompt embeddings (the same prompt for every image).
        class_labels: (B,) long, e.g. the SD-x4 upscaler's noise level; ``None`` if unused.
        extra: anything else a generator needs (ControlNet images, tag embeddings, ...); tensors in it are
            per-item, (B, ...), and `repeat` repeats them with the rest.
    """

    image_lr: torch.Tensor
    encoder_hidden_states: torch.Tensor
    class_labels: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.image_lr.shape[0]

    def repeat(self, times: int) -> SRCondition:
        """Each item repeated ``times`` times in a row (K samples per LR image, as GRPO and DPO draw them)."""
        return SRCondition(
            image_lr=self.image_lr.repeat_interleave(times, dim=0),
            encoder_hidden_states=self.encoder_hidden_states.repeat_interleave(times, dim=0),
            class_labels=None if self.class_labels is None else self.class_labels.repeat_interleave(times, dim=0),
            extra={
                key: value.repeat_interleave(times, dim=0) if isinstance(value, torch.Tensor) else value
                for key, value in self.extra.items()
            },
        )


@dataclass
class SRSample:
    """Output of `SRGenerator.sample`.

    Attributes:
        images: (B, 3, H, W) float in [0, 1], the SR images (H = scale * h).
        latents: (B, C, h', w') the final latents.
        trajectory: with ``return_trajectory``, the latents x_T, ..., x_0 (``len(timesteps) + 1`` tensors).
        timesteps: (T,) the scheduler timesteps that were used.
        condition: the [`SRCondition`] the samples were drawn with (reuse it to recompute log-probs).
    """

    images: torch.Tensor
    latents: torch.Tensor
    timesteps: torch.Tensor
    condition: SRCondition
    trajectory: list[torch.Tensor] | None = None


@runtime_checkable
class SRGenerator(Protocol):
    """A diffusion SR generator as the RL trainers use it (see the module docstring for each method's role)."""

    scale: int
    prediction_type: str
    scheduler: Any
    trainable_model: nn.Module

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> SRGenerator: ...

    def encode_condition(self, image_lr: torch.Tensor, generator: torch.Generator | None = None) -> SRCondition: ...

    def prepare_latents(self, condition: SRCondition, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition) -> torch.Tensor: ...

    def predict_x0(
        self, model_output: torch.Tensor, timestep: torch.Tensor, latents: torch.Tensor
    ) -> torch.Tensor: ...

    def predict_x0_with_grad(
        self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition
    ) -> torch.Tensor: ...

    def sample(
        self,
        image_lr: torch.Tensor,
        num_inference_steps: int = ...,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> SRSample: ...

    def encode_images(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor: ...

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor: ...

    def add_lora(self, rank: int, alpha: float | None = None, target_modules: list[str] | None = None) -> None: ...

    @property
    def has_lora(self) -> bool: ...

    @property
    def device(self) -> torch.device: ...

    def reference_policy(self) -> AbstractContextManager[None]: ...

    def trainable_parameters(self) -> Iterator[nn.Parameter]: ...

    def save_lora_weights(self, save_directory: str | Path) -> Path: ...

    def load_lora_weights(self, directory: str | Path) -> None: ...

    def save_trained_model(self, save_directory: str | Path) -> Path: ...

    def enable_gradient_checkpointing(self) -> None: ...


@runtime_checkable
class DirectSRGenerator(Protocol):
    """A generator whose SR image is one differentiable call of the LR image: one-step diffusion SR (OSEDiff) and
    feed-forward SR networks. REFL trains it by the direct reward gradient through the whole generator, plus the
    generator's own fidelity terms (see `fidelity.FidelityConfig`), instead of a denoising rollout."""

    def generate_with_grad(self, image_lr: torch.Tensor) -> torch.Tensor: ...

    def fidelity_loss(
        self, image_sr: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


__all__ = ["DirectSRGenerator", "SRCondition", "SRGenerator", "SRSample"]
