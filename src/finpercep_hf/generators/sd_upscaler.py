"""[`SDUpscalerGenerator`]: the `SRGenerator` protocol over the components of diffusers'
`StableDiffusionUpscalePipeline` (stabilityai/stable-diffusion-x4-upscaler).

The x4 upscaler is a latent diffusion model whose VAE downsamples by 4, so the latents have the LR image's size:

```
image_lr (B,3,h,w) in [0,1] -> [-1,1] -> + low-res noise at noise_level (DDPM q-sample) -> cond image (B,3,h,w)
latents x_t (B,4,h,w) ++ cond image -> UNet(7 channels, class_labels=noise_level, prompt embeddings) -> eps | v
x_0 latents -> VAE decode(x_0 / scaling_factor) -> (B,3,4h,4w) in [-1,1] -> [0,1]
```

The prompt embeddings are computed once (default prompt ``""``) and the text encoder is then dropped. No
classifier-free guidance: REFL, Diffusion-DPO and GRPO train the conditional model alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from .base import SRCondition
from .peft_lora import DEFAULT_LORA_TARGETS, LORA_WEIGHT_NAME, PeftLoRAMixin
from .sampling import SchedulerSamplingMixin

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class SDUpscalerGenerator(SchedulerSamplingMixin, PeftLoRAMixin):
    """SD-x4-upscaler components driven step by step, with LoRA through PEFT (`unet.add_adapter`).

    Args:
        vae: `AutoencoderKL` (3 down blocks: 4x downsampling; ``scaling_factor`` 0.08333 for the real model).
        unet: `UNet2DConditionModel` with ``in_channels = latent_channels + 3`` and noise-level class embeddings.
        scheduler: the sampling scheduler (any diffusers scheduler with ``alphas_cumprod``, e.g. DDIM/DDPM).
        low_res_scheduler: the `DDPMScheduler` that noises the LR conditioning image.
        prompt_embeds: (1, L, D) prompt embeddings, computed once (see `from_pipeline`).
        noise_level: noise level (0..``max_noise_level``) added to the LR image, 20 as in the pipeline.
        num_inference_steps: default number of sampling steps of `sample`.

    Example:

    ```python
    >>> gen = SDUpscalerGenerator.from_pretrained("stabilityai/stable-diffusion-x4-upscaler")
    >>> gen.add_lora(rank=4)
    >>> out = gen.sample(image_lr, num_inference_steps=40)  # image_lr: (B, 3, 128, 128) in [0, 1]
    >>> out.images.shape
    torch.Size([B, 3, 512, 512])
    ```
    """

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        scheduler,
        low_res_scheduler: DDPMScheduler,
        prompt_embeds: torch.Tensor,
        noise_level: int = 20,
        max_noise_level: int = 350,
        num_inference_steps: int = 40,
    ):
        latent_channels = vae.config.latent_channels
        if unet.config.in_channels != latent_channels + 3:
            raise ValueError(
                f"unet.in_channels must be latent_channels + 3 = {latent_channels + 3} (latents ++ LR image), "
                f"got {unet.config.in_channels}."
            )
        if not 0 <= noise_level <= max_noise_level:
            raise ValueError(f"noise_level must be in [0, {max_noise_level}], got {noise_level}.")
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"scheduler.prediction_type must be in {PREDICTION_TYPES}, got {self.prediction_type}.")
        self.vae = vae.requires_grad_(False).eval()
        self.trainable_model = unet
        self.unet_config = unet.config
        self.scheduler = scheduler
        self.low_res_scheduler = low_res_scheduler
        self.prompt_embeds = prompt_embeds
        self.noise_level = noise_level
        self.num_inference_steps = num_inference_steps
        self.scale = 2 ** (len(vae.config.block_out_channels) - 1)

    # Construction

    @classmethod
    def from_pipeline(
        cls, pipeline: StableDiffusionUpscalePipeline, prompt: str = "", **kwargs
    ) -> SDUpscalerGenerator:
        """Take the components of a loaded pipeline; the prompt is encoded once with its text encoder."""
        with torch.no_grad():
            prompt_embeds, _ = pipeline.encode_prompt(
                prompt, pipeline.text_encoder.device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        kwargs.setdefault("max_noise_level", pipeline.config.max_noise_level)
        return cls(
            vae=pipeline.vae,
            unet=pipeline.unet,
            scheduler=pipeline.scheduler,
            low_res_scheduler=pipeline.low_res_scheduler,
            prompt_embeds=prompt_embeds.detach(),
            **kwargs,
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str, prompt: str = "", **kwargs) -> SDUpscalerGenerator:
        """Load a `StableDiffusionUpscalePipeline` checkpoint (Hub id or local directory)."""
        pipeline = StableDiffusionUpscalePipeline.from_pretrained(name_or_path, safety_checker=None, watermarker=None)
        return cls.from_pipeline(pipeline, prompt=prompt, **kwargs)

    @property
    def unet(self) -> UNet2DConditionModel:
        """The bare UNet (unwrapped from DDP/compile wrappers the trainer may have put around it)."""
        return self.base_model

    @property
    def device(self) -> torch.device:
        return self.prompt_embeds.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the frozen weights (the VAE); LoRA weights stay float32."""
        return self.vae.dtype

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> SDUpscalerGenerator:
        """Move the frozen parts to ``device``/``dtype``; trainable parameters are kept in float32."""
        self.vae.to(device, dtype=dtype)
        self.unet.to(device, dtype=dtype)
        self.prompt_embeds = self.prompt_embeds.to(device, dtype=dtype)
        for parameter in self.trainable_parameters():
            parameter.data = parameter.data.float()
        return self

    def enable_gradient_checkpointing(self) -> None:
        """Recompute UNet and VAE-decoder activations in backward (needed for the 24 GB memory target)."""
        self.unet.enable_gradient_checkpointing()
        self.vae.enable_gradient_checkpointing()

    # Conditioning and sampling

    def encode_condition(self, image_lr: torch.Tensor, generator: torch.Generator | None = None) -> SRCondition:
        """LR images (B, 3, h, w) float in [0, 1] -> the noised LR conditioning and the prompt embeddings.

        h and w must be multiples of the UNet's downsampling factor (8 for the real model).
        """
        if image_lr.ndim != 4 or image_lr.shape[1] != 3:
            raise ValueError(f"image_lr must be (B, 3, h, w), got shape {tuple(image_lr.shape)}.")
        multiple = 2 ** (len(self.unet_config.block_out_channels) - 1)
        if image_lr.shape[-2] % multiple or image_lr.shape[-1] % multiple:
            raise ValueError(f"image_lr height and width must be multiples of {multiple}, got {tuple(image_lr.shape)}")
        batch = image_lr.shape[0]
        image = (image_lr.to(self.device, self.dtype) * 2 - 1).contiguous()
        noise_level = torch.full((batch,), self.noise_level, dtype=torch.long, device=self.device)
        noise = torch.randn(image.shape, generator=generator, device=generator.device if generator else self.device)
        image = self.low_res_scheduler.add_noise(image, noise.to(self.device, self.dtype), noise_level)
        return SRCondition(
            image_lr=image,
            encoder_hidden_states=self.prompt_embeds.expand(batch, -1, -1),
            class_labels=noise_level,
        )

    def prepare_latents(self, condition: SRCondition, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial noise x_T: (B, latent_channels, h, w), scaled by the scheduler's ``init_noise_sigma``."""
        batch, _, height, width = condition.image_lr.shape
        shape = (batch, self.vae.config.latent_channels, height, width)
        latents = torch.randn(shape, generator=generator, device=generator.device if generator else self.device)
        return latents.to(self.device, self.dtype) * self.scheduler.init_noise_sigma

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition) -> torch.Tensor:
        """One UNet call: latents (B, C, h, w) at ``timestep`` -> model output (eps, v or x0: ``prediction_type``).

        Runs through ``trainable_model`` (so a DDP wrapper synchronises gradients) with grad if grad is enabled.
        """
        model_input = self.scheduler.scale_model_input(latents, timestep)
        model_input = torch.cat([model_input, condition.image_lr.to(model_input.dtype)], dim=1)
        return self.trainable_model(
            model_input,
            timestep,
            encoder_hidden_states=condition.encoder_hidden_states,
            class_labels=condition.class_labels,
            return_dict=False,
        )[0]

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

    # VAE and denoising-loss helpers

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """HR images (B, 3, H, W) in [0, 1] -> scaled latents (B, C, H/scale, W/scale) (posterior mean)."""
        posterior = self.vae.encode(images.to(self.device, self.dtype) * 2 - 1).latent_dist
        return posterior.mean * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> pixels (B, 3, scale*h, scale*w) float in [0, 1]; differentiable."""
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

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA weights in diffusers' key format (``unet.``-prefixed, as `load_lora_weights` expects)."""
        return convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))

    def save_lora_weights(self, save_directory: str | Path) -> Path:
        """Write ``pytorch_lora_weights.safetensors``, loadable by `StableDiffusionUpscalePipeline.load_lora_weights`.

        Returns the file's path.
        """
        if not self.has_lora:
            raise ValueError("this generator has no LoRA adapter to save (call add_lora first).")
        save_directory = Path(save_directory)
        StableDiffusionUpscalePipeline.save_lora_weights(
            save_directory, unet_lora_layers=self.lora_state_dict(), weight_name=LORA_WEIGHT_NAME
        )
        return save_directory / LORA_WEIGHT_NAME

    def load_lora_weights(self, directory: str | Path) -> None:
        """Load LoRA weights written by `save_lora_weights` into the existing adapter (same rank and targets)."""
        state_dict, _ = StableDiffusionUpscalePipeline.lora_state_dict(str(directory), weight_name=LORA_WEIGHT_NAME)
        unet_state = {key.removeprefix("unet."): value for key, value in state_dict.items() if key.startswith("unet.")}
        result = set_peft_model_state_dict(self.unet, convert_unet_state_dict_to_peft(unet_state))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{directory}: LoRA keys do not match this UNet's adapter: {result.unexpected_keys[:3]}")


__all__ = ["DEFAULT_LORA_TARGETS", "LORA_WEIGHT_NAME", "SDUpscalerGenerator"]
