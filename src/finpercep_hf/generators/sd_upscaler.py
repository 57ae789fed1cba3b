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

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel

from .base import SRCondition
from .latent_diffusion import LatentDiffusionSRGenerator


class SDUpscalerGenerator(LatentDiffusionSRGenerator):
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

    lora_pipeline_class = StableDiffusionUpscalePipeline

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
        super().__init__(vae, unet, scheduler, prompt_embeds, num_inference_steps)
        self.unet_config = unet.config
        self.low_res_scheduler = low_res_scheduler
        self.noise_level = noise_level
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
        return self.trained_model

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

    def latent_shape(self, condition: SRCondition) -> tuple[int, ...]:
        """x_T has the LR image's size: (B, latent_channels, h, w)."""
        batch, _, height, width = condition.image_lr.shape
        return (batch, self.vae.config.latent_channels, height, width)

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


__all__ = ["SDUpscalerGenerator"]
