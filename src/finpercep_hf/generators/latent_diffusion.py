"""[`LatentDiffusionSRGenerator`]: what every latent-diffusion SR generator shares, whatever its conditioning.

A VAE (frozen), a denoiser that is trained (``trainable_model``: a UNet, or a ControlNet) with LoRA through PEFT
or in full, a diffusers scheduler with ``alphas_cumprod`` and prompt embeddings computed once. Subclasses
implement the conditioning (``encode_condition``), the shape of x_T (``latent_shape``) and the denoiser call
(``denoise``); this class gives them the rest of the [`SRGenerator`] protocol: x0 from a model output, VAE
encode/decode in [0, 1] pixels, the forward process and its training targets, DDIM-style sampling with an optional
trajectory, LoRA add / reference policy / save / load in diffusers' format, device and dtype moves.

The families built on it: [`SDUpscalerGenerator`] (SD-x4 upscaler), [`ControlNetSRGenerator`] (SeeSR / DiffBIR:
SD2 UNet + ControlNet), [`OneStepSRGenerator`] (OSEDiff: one UNet call from the LR latent).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from .base import SRCondition, SRSample

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module under the DDP (``module``) and ``torch.compile`` (``_orig_mod``) wrappers a trainer adds."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


class LatentDiffusionSRGenerator:
    """Base of the latent-diffusion SR generators (see the module docstring).

    Args:
        vae: `AutoencoderKL`; frozen.
        trainable_model: the denoiser part that is trained (its LoRA, or all of it with ``use_lora=False``).
        scheduler: a diffusers scheduler with ``alphas_cumprod`` (DDIM/DDPM) and a ``prediction_type``.
        prompt_embeds: (1, L, D) prompt embeddings, computed once.
        num_inference_steps: default number of steps of `sample`.

    Subclasses set ``lora_pipeline_class`` (the diffusers pipeline whose ``load_lora_weights`` reads the saved LoRA)
    and ``trainable_subfolder`` (where `save_trained_model` writes a fully fine-tuned ``trainable_model``).
    """

    lora_pipeline_class: type
    trainable_subfolder = "unet"

    def __init__(
        self,
        vae: AutoencoderKL,
        trainable_model: nn.Module,
        scheduler,
        prompt_embeds: torch.Tensor,
        num_inference_steps: int,
    ):
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"scheduler.prediction_type must be in {PREDICTION_TYPES}, got {self.prediction_type}.")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}.")
        self.vae = vae.requires_grad_(False).eval()
        self.trainable_model = trainable_model
        self.scheduler = scheduler
        self.prompt_embeds = prompt_embeds
        self.num_inference_steps = num_inference_steps

    # To implement

    def frozen_modules(self) -> list[nn.Module]:
        """The frozen modules besides the VAE (moved by `to`)."""
        return []

    def latent_shape(self, condition: SRCondition) -> tuple[int, ...]:
        """Shape (B, C, h', w') of the latents that decode to the SR images of ``condition``."""
        raise NotImplementedError

    def encode_condition(self, image_lr: torch.Tensor, generator: torch.Generator | None = None) -> SRCondition:
        raise NotImplementedError

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition) -> torch.Tensor:
        raise NotImplementedError

    # Modules, device, dtype

    @property
    def trained_model(self) -> nn.Module:
        """``trainable_model`` unwrapped from the DDP/compile wrappers the trainer may have put around it."""
        return unwrap_model(self.trainable_model)

    @property
    def device(self) -> torch.device:
        return self.prompt_embeds.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the frozen weights (the VAE); LoRA weights stay float32."""
        return self.vae.dtype

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None):
        """Move every module to ``device``/``dtype``; trainable parameters are kept in float32."""
        for module in (self.vae, self.trained_model, *self.frozen_modules()):
            module.to(device, dtype=dtype)
        self.prompt_embeds = self.prompt_embeds.to(device, dtype=dtype)
        for parameter in self.trainable_parameters():
            parameter.data = parameter.data.float()
        return self

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the activations of the denoiser(s) and of the VAE decoder in backward."""
        for module in (self.trained_model, *self.frozen_modules(), self.vae):
            if getattr(module, "_supports_gradient_checkpointing", False):
                module.enable_gradient_checkpointing()

    # Latents

    def prepare_latents(self, condition: SRCondition, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial noise x_T of `latent_shape`, scaled by the scheduler's ``init_noise_sigma``."""
        shape = self.latent_shape(condition)
        latents = torch.randn(shape, generator=generator, device=generator.device if generator else self.device)
        return latents.to(self.device, self.dtype) * self.scheduler.init_noise_sigma

    def _alphas(self, timestep: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alphas_cumprod = self.scheduler.alphas_cumprod.to(like.device)
        alpha = alphas_cumprod[torch.as_tensor(timestep, device=like.device).long()].float()
        alpha = alpha.reshape(-1, *([1] * (like.ndim - 1)))
        return alpha.sqrt(), (1 - alpha).sqrt()

    def predict_x0(self, model_output: torch.Tensor, timestep: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """x0 implied by a model output at ``timestep`` (closed form from ``alphas_cumprod``; no scheduler state)."""
        sqrt_alpha, sqrt_one_minus_alpha = self._alphas(timestep, latents)
        if self.prediction_type == "epsilon":
            x0 = (latents.float() - sqrt_one_minus_alpha * model_output.float()) / sqrt_alpha
        elif self.prediction_type == "v_prediction":
            x0 = sqrt_alpha * latents.float() - sqrt_one_minus_alpha * model_output.float()
        else:
            x0 = model_output.float()
        return x0.to(model_output.dtype)

    def predict_x0_with_grad(
        self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition
    ) -> torch.Tensor:
        """One denoiser call with grad at ``timestep`` and its x0 estimate (B, C, h, w): REFL's differentiable step."""
        with torch.enable_grad():
            return self.predict_x0(self.denoise(latents, timestep, condition), timestep, latents)

    @torch.no_grad()
    def sample(
        self,
        image_lr: torch.Tensor,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> SRSample:
        """Sample SR images (B, 3, scale*h, scale*w) in [0, 1] from LR images (B, 3, h, w) in [0, 1], no grad."""
        condition = self.encode_condition(image_lr, generator=generator)
        latents = self.prepare_latents(condition, generator=generator)
        self.scheduler.set_timesteps(num_inference_steps or self.num_inference_steps, device=self.device)
        trajectory = [latents] if return_trajectory else None
        for timestep in self.scheduler.timesteps:
            model_output = self.denoise(latents, timestep, condition)
            latents = self.scheduler.step(model_output, timestep, latents, generator=generator).prev_sample
            if trajectory is not None:
                trajectory.append(latents)
        return SRSample(
            images=self.decode(latents),
            latents=latents,
            timesteps=self.scheduler.timesteps.clone(),
            condition=condition,
            trajectory=trajectory,
        )

    # VAE and denoising-loss helpers

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> scaled latents (B, C, H/f, W/f) (posterior mean; f = VAE factor)."""
        posterior = self.vae.encode(images.to(self.device, self.dtype) * 2 - 1).latent_dist
        return posterior.mean * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> pixels (B, 3, f*h, f*w) float in [0, 1]; differentiable."""
        images = self.vae.decode(latents.to(self.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x_0) of the training scheduler."""
        return self.scheduler.add_noise(latents, noise, timesteps)

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What ``denoise`` should output for x_t = add_noise(latents, noise, t): eps, v or x0."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(latents, noise, timesteps)
        return latents

    # LoRA

    def add_lora(
        self,
        rank: int,
        alpha: float | None = None,
        target_modules: list[str] | None = None,
        adapter_name: str = "default",
    ) -> None:
        """Add a LoRA adapter (PEFT) to the attention projections of ``trainable_model``; freeze everything else."""
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}.")
        model = self.trained_model
        model.requires_grad_(False)
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            init_lora_weights="gaussian",
            target_modules=list(target_modules or DEFAULT_LORA_TARGETS),
        )
        model.add_adapter(config, adapter_name=adapter_name)
        for parameter in self.trainable_parameters():
            parameter.data = parameter.data.float()

    @property
    def has_lora(self) -> bool:
        return bool(getattr(self.trained_model, "_hf_peft_config_loaded", False))

    @contextmanager
    def reference_policy(self):
        """Within this context the denoiser runs without its adapters: the frozen reference policy pi_ref."""
        if not self.has_lora:
            raise ValueError(
                "reference_policy needs LoRA adapters (call add_lora first): without them the "
                "trained model and the reference are the same weights."
            )
        self.trained_model.disable_adapters()
        try:
            yield
        finally:
            self.trained_model.enable_adapters()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (parameter for parameter in self.trained_model.parameters() if parameter.requires_grad)

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA weights of ``trainable_model`` in diffusers' key format (unprefixed)."""
        return convert_state_dict_to_diffusers(get_peft_model_state_dict(self.trained_model))

    def save_lora_weights(self, save_directory: str | Path) -> Path:
        """Write ``pytorch_lora_weights.safetensors``, loadable by ``lora_pipeline_class.load_lora_weights``.

        Returns the file's path.
        """
        if not self.has_lora:
            raise ValueError("this generator has no LoRA adapter to save (call add_lora first).")
        save_directory = Path(save_directory)
        config = next(iter(self.trained_model.peft_config.values()))
        self.lora_pipeline_class.save_lora_weights(
            save_directory,
            unet_lora_layers=self.lora_state_dict(),
            weight_name=LORA_WEIGHT_NAME,
            unet_lora_adapter_metadata=config.to_dict(),
        )
        return save_directory / LORA_WEIGHT_NAME

    def load_lora_weights(self, directory: str | Path) -> None:
        """Load LoRA weights written by `save_lora_weights`: into the existing adapter (same rank and targets), or,
        with none, as a new adapter whose rank, alpha and targets come from the file's metadata."""
        if not self.has_lora:
            self.trained_model.load_lora_adapter(str(directory), prefix="unet", weight_name=LORA_WEIGHT_NAME)
            return
        state_dict, _ = self.lora_pipeline_class.lora_state_dict(str(directory), weight_name=LORA_WEIGHT_NAME)
        unet_state = {key.removeprefix("unet."): value for key, value in state_dict.items() if key.startswith("unet.")}
        result = set_peft_model_state_dict(self.trained_model, convert_unet_state_dict_to_peft(unet_state))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{directory}: LoRA keys do not match this model's adapter: {result.unexpected_keys[:3]}")

    def save_trained_model(self, save_directory: str | Path) -> Path:
        """A fully fine-tuned ``trainable_model`` as ``save_directory/<trainable_subfolder>`` (diffusers format)."""
        path = Path(save_directory) / self.trainable_subfolder
        self.trained_model.save_pretrained(path)
        return path


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "LORA_WEIGHT_NAME",
    "LatentDiffusionSRGenerator",
    "PREDICTION_TYPES",
    "unwrap_model",
]
