"""[`FlowSRGenerator`]: the `SRGenerator` protocol over a flow-matching SD3 / SD3.5 DiT (the DiT4SR family).

Rectified flow (``prediction_type = "flow"``), sigma = timestep / 1000 in [0, 1]:

```
x_sigma = (1 - sigma) * x_0 + sigma * eps,      v = eps - x_0,      x_0 = x_sigma - sigma * v
image_lr (B,3,h,w) in [0,1] -> bicubic x scale -> VAE encode -> (z - shift_factor) * scaling_factor = LR latents
LR latents ++ x_sigma ++ prompt embeddings -> transformer (LR stream) | ControlNet + transformer -> v (B,16,sh/8,sw/8)
x_0 latents -> / scaling_factor + shift_factor -> VAE decode -> (B,3,s*h,s*w) in [-1,1] -> [0,1]
```

Two conditioning modes:

* ``lr_stream``: a transformer that takes the LR latents as ``controlnet_image`` (DiT4SR's keyword), e.g.
  [`SD3LRStreamTransformer2DModel`] or DiT4SR's own class given as ``transformer_class="module.py:Class"``;
* ``controlnet``: a stock `SD3Transformer2DModel` + `SD3ControlNetModel` whose ``controlnet_cond`` are the LR latents.

The prompt embeddings are computed once (default prompt ``""``, as the paper's generators) and cached in a file
(see `prompt_embeds.py`): the three text encoders are never resident during training. No classifier-free guidance.
LoRA goes on the transformer (``trainable_model``) and is saved in diffusers' SD3 format, so that
``StableDiffusion3Pipeline.load_lora_weights`` (or the ControlNet pipeline's) loads it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3ControlNetModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from diffusers.utils import convert_unet_state_dict_to_peft
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from ..data.sr_pool import import_object
from .base import SRCondition
from .latent_diffusion import LORA_WEIGHT_NAME, LatentDiffusionSRGenerator
from .policy import FlowSDEPolicy
from .prompt_embeds import cached_prompt_embeddings, load_prompt_embeddings
from .sd3_lr_stream import SD3LRStreamTransformer2DModel

CONDITIONING_MODES = ("lr_stream", "controlnet")
LR_KEYWORD = "controlnet_image"
PROMPT_EMBEDS_FILE = "prompt_embeds.safetensors"


class FlowSRGenerator(LatentDiffusionSRGenerator):
    """A flow-matching SD3-family SR generator driven step by step, LoRA on the transformer through PEFT.

    Args:
        vae: `AutoencoderKL` with 16 latent channels, ``shift_factor`` and ``scaling_factor`` (SD3's).
        transformer: the DiT; in ``lr_stream`` mode it takes the LR latents as ``controlnet_image``.
        scheduler: `FlowMatchEulerDiscreteScheduler` (its ``shift`` shapes the sampling sigmas).
        prompt_embeds: (1, L, D) prompt embeddings; pooled_prompt_embeds: (1, P).
        controlnet: an `SD3ControlNetModel` on the LR latents (``controlnet`` mode) or None (``lr_stream`` mode).
        scale: SR factor: LR (h, w) -> SR (scale * h, scale * w).
        num_inference_steps: default number of sampling steps of `sample`.
        controlnet_conditioning_scale: weight of the ControlNet residuals.

    Example:

    ```python
    >>> gen = FlowSRGenerator.from_pretrained(
    ...     "stabilityai/stable-diffusion-3.5-medium", prompt_embeds_file="runs/sd35-empty-prompt.safetensors"
    ... )  # an SD3.5 base with a fresh LR stream; a DiT4SR checkpoint: transformer_class="transformer_sd3.py:..."
    >>> gen.add_lora(rank=16)
    >>> gen.sample(image_lr, num_inference_steps=28).images.shape  # image_lr: (B, 3, 128, 128) in [0, 1]
    torch.Size([B, 3, 512, 512])
    ```
    """

    prediction_type = "flow"
    lora_pipeline_class = StableDiffusion3Pipeline
    trainable_subfolder = "transformer"

    def __init__(
        self,
        vae: AutoencoderKL,
        transformer: nn.Module,
        scheduler: FlowMatchEulerDiscreteScheduler,
        prompt_embeds: torch.Tensor,
        pooled_prompt_embeds: torch.Tensor,
        controlnet: SD3ControlNetModel | None = None,
        scale: int = 4,
        num_inference_steps: int = 28,
        controlnet_conditioning_scale: float = 1.0,
    ):
        if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
            raise ValueError(f"scheduler must be a FlowMatchEulerDiscreteScheduler, got {type(scheduler).__name__}.")
        if vae.config.latent_channels != transformer.config.in_channels:
            raise ValueError(
                f"vae.latent_channels ({vae.config.latent_channels}) != transformer.in_channels "
                f"({transformer.config.in_channels})."
            )
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}.")
        # The base's __init__ checks for a DDPM prediction type; the fields it would set are set here.
        self.vae = vae.requires_grad_(False).eval()
        self.trainable_model = transformer
        self.transformer_config = transformer.config
        self.controlnet = None if controlnet is None else controlnet.requires_grad_(False).eval()
        self.conditioning = "lr_stream" if controlnet is None else "controlnet"
        self.scheduler = scheduler
        self.prompt_embeds = prompt_embeds
        self.pooled_prompt_embeds = pooled_prompt_embeds
        self.scale = scale
        self.num_inference_steps = num_inference_steps
        self.controlnet_conditioning_scale = controlnet_conditioning_scale
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    # Construction

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        prompt: str = "",
        prompt_embeds_file: str | Path | None = None,
        transformer_class: str | None = None,
        controlnet: str | None = None,
        **kwargs,
    ) -> FlowSRGenerator:
        """Load an SD3-family checkpoint (Hub id or directory with ``vae/``, ``transformer/``, ``scheduler/``).

        The transformer class: ``transformer_class`` ("module.py:Class") if given; else the checkpoint's own when
        it is an `SD3LRStreamTransformer2DModel`; else (a stock SD3 / SD3.5 transformer) ``controlnet`` mode with
        the `SD3ControlNetModel` at ``controlnet`` (or the checkpoint's ``controlnet/``) or, without one, the SD3
        weights in an `SD3LRStreamTransformer2DModel` with a fresh LR stream. The prompt embeddings come from
        ``prompt_embeds_file`` if it exists (default: the checkpoint's ``prompt_embeds.safetensors`` when it is a
        directory holding one), else from the checkpoint's text encoders (then written to that file).
        """
        if prompt_embeds_file is None and (Path(name_or_path) / PROMPT_EMBEDS_FILE).is_file():
            prompt_embeds_file = Path(name_or_path) / PROMPT_EMBEDS_FILE
        transformer_config = SD3Transformer2DModel.load_config(name_or_path, subfolder="transformer")
        if controlnet is None and (Path(name_or_path) / "controlnet").is_dir():
            controlnet = str(Path(name_or_path) / "controlnet")
        if transformer_class is not None:
            transformer = import_object(transformer_class, what="transformer_class").from_pretrained(
                name_or_path, subfolder="transformer"
            )
        elif transformer_config["_class_name"] == SD3LRStreamTransformer2DModel.__name__:
            transformer = SD3LRStreamTransformer2DModel.from_pretrained(name_or_path, subfolder="transformer")
        else:
            transformer = SD3Transformer2DModel.from_pretrained(name_or_path, subfolder="transformer")
            if controlnet is None:
                transformer = SD3LRStreamTransformer2DModel.from_sd3(transformer)
        prompt_embeds, pooled_prompt_embeds = cached_prompt_embeddings(name_or_path, prompt, prompt_embeds_file)
        return cls(
            vae=AutoencoderKL.from_pretrained(name_or_path, subfolder="vae"),
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(name_or_path, subfolder="scheduler"),
            prompt_embeds=prompt_embeds,
            pooled_prompt_embeds=pooled_prompt_embeds,
            controlnet=None if controlnet is None else SD3ControlNetModel.from_pretrained(controlnet),
            **kwargs,
        )

    @classmethod
    def from_components(
        cls, vae, transformer, scheduler, prompt_embeds_file: str | Path, controlnet=None, **kwargs
    ) -> FlowSRGenerator:
        """Build from loaded components and a prompt-embeddings file (see `prompt_embeds.py`)."""
        prompt_embeds, pooled_prompt_embeds = load_prompt_embeddings(prompt_embeds_file)
        return cls(vae, transformer, scheduler, prompt_embeds, pooled_prompt_embeds, controlnet=controlnet, **kwargs)

    @property
    def transformer(self) -> nn.Module:
        """The bare transformer (unwrapped from the DDP/compile wrappers the trainer may have put around it)."""
        return self.trained_model

    def frozen_modules(self) -> list[nn.Module]:
        """The ControlNet in ``controlnet`` mode (frozen; the LoRA goes on the transformer)."""
        return [] if self.controlnet is None else [self.controlnet]

    def latent_shape(self, condition: SRCondition) -> tuple[int, ...]:
        """x_1 has the LR latents' shape (B, 16, H/8, W/8)."""
        return tuple(condition.image_lr.shape)

    def prepare_latents(self, condition: SRCondition, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial noise x_1 ~ N(0, I) of `latent_shape` (sigma = 1: no scaling)."""
        shape = self.latent_shape(condition)
        latents = torch.randn(shape, generator=generator, device=generator.device if generator else self.device)
        return latents.to(self.device, self.dtype)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> FlowSRGenerator:
        """Move every module and the prompt embeddings to ``device``/``dtype``; trainable parameters stay float32."""
        super().to(device, dtype=dtype)
        self.pooled_prompt_embeds = self.pooled_prompt_embeds.to(device, dtype=dtype)
        return self

    # Conditioning and sampling

    def encode_condition(self, image_lr: torch.Tensor, generator: torch.Generator | None = None) -> SRCondition:
        """LR images (B, 3, h, w) float in [0, 1] -> LR latents (B, 16, s*h/8, s*w/8) and the prompt embeddings.

        ``generator`` is unused (the LR latents are the VAE posterior mean); s*h/8 and s*w/8 must be multiples of
        the transformer's patch size.
        """
        if image_lr.ndim != 4 or image_lr.shape[1] != 3:
            raise ValueError(f"image_lr must be (B, 3, h, w), got shape {tuple(image_lr.shape)}.")
        multiple = self.vae_scale_factor * self.transformer_config.patch_size
        height, width = image_lr.shape[-2] * self.scale, image_lr.shape[-1] * self.scale
        if height % multiple or width % multiple:
            raise ValueError(f"scale x image_lr sides must be multiples of {multiple}, got {height}x{width}.")
        upsampled = F.interpolate(image_lr.float(), size=(height, width), mode="bicubic", align_corners=False)
        lr_latents = self.encode_images(upsampled.clamp(0, 1))
        batch = image_lr.shape[0]
        return SRCondition(
            image_lr=lr_latents,
            encoder_hidden_states=self.prompt_embeds.expand(batch, -1, -1),
            extra={"pooled_projections": self.pooled_prompt_embeds.expand(batch, -1)},
        )

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition) -> torch.Tensor:
        """One transformer call: latents x_sigma (B, C, h, w) at ``timestep`` (scalar or (B,), sigma * 1000) -> v.

        Runs through ``trainable_model`` (so a DDP wrapper synchronises gradients) with grad if grad is enabled.
        """
        batch = latents.shape[0]
        timestep = torch.as_tensor(timestep, device=latents.device).expand(batch)
        pooled = condition.extra["pooled_projections"].to(latents.dtype)
        prompt_embeds = condition.encoder_hidden_states.to(latents.dtype)
        lr_latents = condition.image_lr.to(latents.dtype)
        inputs = dict(
            hidden_states=latents, encoder_hidden_states=prompt_embeds, pooled_projections=pooled, timestep=timestep
        )
        if self.controlnet is None:
            return self.trainable_model(**inputs, **{LR_KEYWORD: lr_latents}, return_dict=False)[0]
        controlnet_config = self.controlnet.config
        residuals = self.controlnet(
            hidden_states=latents,
            controlnet_cond=lr_latents,
            conditioning_scale=self.controlnet_conditioning_scale,
            encoder_hidden_states=prompt_embeds if controlnet_config.joint_attention_dim is not None else None,
            pooled_projections=torch.zeros_like(pooled)
            if controlnet_config.force_zeros_for_pooled_projection
            else pooled,
            timestep=timestep,
            return_dict=False,
        )[0]
        return self.trainable_model(**inputs, block_controlnet_hidden_states=residuals, return_dict=False)[0]

    def sigmas(self, timestep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """sigma = timestep / num_train_timesteps, shaped (B, 1, 1, 1) like ``like`` (B, C, h, w), float32."""
        sigma = torch.as_tensor(timestep, device=like.device).float() / self.scheduler.config.num_train_timesteps
        return sigma.reshape(-1, *([1] * (like.ndim - 1)))

    def predict_x0(self, model_output: torch.Tensor, timestep: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """x_0 = x_sigma - sigma * v (closed form; no scheduler state)."""
        x0 = latents.float() - self.sigmas(timestep, latents) * model_output.float()
        return x0.to(model_output.dtype)

    def stochastic_policy(
        self, num_inference_steps: int, eta: float, device: torch.device | str = "cpu"
    ) -> FlowSDEPolicy:
        """GRPO's policy: the Flow-GRPO SDE over this scheduler's sigmas, ``eta`` as the noise level ``a``."""
        return FlowSDEPolicy(self.scheduler, num_inference_steps, noise_level=eta, device=device)

    # VAE and denoising-loss helpers

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> latents (B, 16, H/8, W/8): ``(mean - shift_factor) * scaling_factor``."""
        posterior = self.vae.encode(images.to(self.device, self.dtype) * 2 - 1).latent_dist
        config = self.vae.config
        return (posterior.mean - (config.shift_factor or 0.0)) * config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, 16, h, w) -> pixels (B, 3, 8h, 8w) float in [0, 1]; differentiable."""
        config = self.vae.config
        latents = latents.to(self.dtype) / config.scaling_factor + (config.shift_factor or 0.0)
        images = self.vae.decode(latents, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0, 1)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_sigma = (1 - sigma) x_0 + sigma eps with sigma = timesteps / num_train_timesteps, timesteps (B,)."""
        sigma = self.sigmas(timesteps, latents)
        return ((1 - sigma) * latents.float() + sigma * noise.float()).to(latents.dtype)

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The flow-matching target v = eps - x_0 (independent of the timestep)."""
        return noise - latents

    # LoRA

    def save_lora_weights(self, save_directory: str | Path) -> Path:
        """Write ``pytorch_lora_weights.safetensors`` (``transformer.``-prefixed keys), loadable by
        `StableDiffusion3Pipeline.load_lora_weights`. Returns the file's path."""
        if not self.has_lora:
            raise ValueError("this generator has no LoRA adapter to save (call add_lora first).")
        save_directory = Path(save_directory)
        config = next(iter(self.transformer.peft_config.values()))
        StableDiffusion3Pipeline.save_lora_weights(
            save_directory,
            transformer_lora_layers=get_peft_model_state_dict(self.transformer),
            weight_name=LORA_WEIGHT_NAME,
            transformer_lora_adapter_metadata=config.to_dict(),
        )
        return save_directory / LORA_WEIGHT_NAME

    def load_lora_weights(self, directory: str | Path) -> None:
        """Load LoRA weights written by `save_lora_weights`: into the existing adapter (same rank and targets), or,
        with none, as a new adapter whose rank, alpha and targets come from the file's metadata."""
        if not self.has_lora:
            self.transformer.load_lora_adapter(str(directory), prefix="transformer", weight_name=LORA_WEIGHT_NAME)
            return
        state_dict = StableDiffusion3Pipeline.lora_state_dict(str(directory), weight_name=LORA_WEIGHT_NAME)
        prefix = "transformer."
        transformer_state = {
            key.removeprefix(prefix): value for key, value in state_dict.items() if key.startswith(prefix)
        }
        result = set_peft_model_state_dict(self.transformer, convert_unet_state_dict_to_peft(transformer_state))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(
                f"{directory}: LoRA keys do not match the transformer's adapter: {result.unexpected_keys[:3]}"
            )


__all__ = [
    "CONDITIONING_MODES",
    "FlowSRGenerator",
    "LR_KEYWORD",
    "PROMPT_EMBEDS_FILE",
]
