"""[`ControlNetSRGenerator`]: ControlNet SR (the SeeSR / DiffBIR family) on the components of diffusers'
`StableDiffusionControlNetPipeline`: a Stable Diffusion 2 UNet steered by a `ControlNetModel` that reads the LR
image upsampled to the output size.

```
image_lr (B, 3, h, w) in [0, 1] -> bicubic x scale -> control image (B, 3, H, W) in [0, 1]   (or DiffBIR's restored)
x_t (B, 4, H/f, W/f) -> ControlNet(x_t, t, prompt, control) -> residuals -> UNet(x_t, t, prompt, residuals) -> eps | v
DDIM from x_T ~ N(0, I); x_0 -> VAE decode -> SR (B, 3, H, W) in [0, 1]
```

The prompt embeddings are computed once. What SeeSR and DiffBIR add goes in ``SRCondition.extra``, computed once
per LR batch in `encode_condition` by two optional callables:

* ``tagger(image_lr) -> (B, L', D)``: SeeSR's tag-prompt embeddings (its DAPE tags, or any tagging model, encoded by
  the pipeline's text encoder), stored as ``extra["tag_embeds"]`` and appended to the prompt tokens that the UNet
  and the ControlNet cross-attend to;
* ``restoration_module(image_lr) -> (B, 3, H', W')`` in [0, 1]: DiffBIR's restoration stage (e.g. its SwinIR),
  stored as ``extra["restored"]`` (resized to H x W) and used as the control image instead of the bicubic one.

```python
>>> controlnet = ControlNetModel.from_pretrained("path/to/controlnet")
>>> pipe = StableDiffusionControlNetPipeline.from_pretrained("path/to/sd2-base", controlnet=controlnet)
>>> def tagger(image_lr):  # SeeSR: one tag string per LR image from your tagging model, then the text encoder
...     tags = [", ".join(tag_model(image)) for image in image_lr]
...     return pipe.encode_prompt(tags, pipe.device, 1, do_classifier_free_guidance=False)[0]
>>> seesr = ControlNetSRGenerator.from_pipeline(pipe, tagger=tagger)
>>> restorer = FeedForwardSRGenerator.from_pretrained("diffbir_swinir.pth").network  # DiffBIR stage 1
>>> diffbir = ControlNetSRGenerator.from_pipeline(pipe, restoration_module=restorer)
>>> diffbir.encode_condition(image_lr).extra["restored"].shape  # image_lr: (B, 3, 128, 128)
torch.Size([B, 3, 512, 512])
```

The trained part is chosen by ``trainable``: ``"unet"`` (LoRA through PEFT, saved in diffusers' format for
``StableDiffusionControlNetPipeline.load_lora_weights``, or the full UNet) or ``"controlnet"`` (the whole ControlNet,
as SeeSR and DiffBIR train it; saved as ``controlnet/`` for ``ControlNetModel.from_pretrained``). The reference
policy of Diffusion-DPO / GRPO's KL is the UNet without its LoRA, so those need ``trainable="unet"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    StableDiffusionControlNetPipeline,
    UNet2DConditionModel,
)
from torch import nn

from .base import SRCondition
from .latent_diffusion import LatentDiffusionSRGenerator

TRAINABLE_PARTS = ("unet", "controlnet")


class ControlNetSRGenerator(LatentDiffusionSRGenerator):
    """SD2 UNet + ControlNet on the upsampled LR image, DDIM, epsilon or v prediction (see the module docstring).

    Args:
        vae, unet, controlnet: the pipeline's models; all frozen except the ``trainable`` part.
        scheduler: a `DDIMScheduler` (``prediction_type`` epsilon or v_prediction).
        prompt_embeds: (1, L, D) prompt embeddings, computed once.
        scale: the SR factor (the LR image is upsampled by it into the control image).
        trainable: ``"unet"`` or ``"controlnet"``.
        conditioning_scale: multiplier of the ControlNet residuals (1.0).
        num_inference_steps: default number of DDIM steps of `sample`.
        tagger, restoration_module: SeeSR's tag embeddings and DiffBIR's restoration stage (see above).
    """

    lora_pipeline_class = StableDiffusionControlNetPipeline

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        scheduler: DDIMScheduler,
        prompt_embeds: torch.Tensor,
        scale: int = 4,
        trainable: str = "unet",
        conditioning_scale: float = 1.0,
        num_inference_steps: int = 50,
        tagger: Callable[[torch.Tensor], torch.Tensor] | None = None,
        restoration_module: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if trainable not in TRAINABLE_PARTS:
            raise ValueError(f"trainable must be one of {TRAINABLE_PARTS}, got {trainable!r}.")
        if unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(f"unet.in_channels must equal the VAE's latent channels ({vae.config.latent_channels}).")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}.")
        super().__init__(
            vae, unet if trainable == "unet" else controlnet, scheduler, prompt_embeds, num_inference_steps
        )
        self.trainable = self.trainable_subfolder = trainable
        self.frozen_model = (controlnet if trainable == "unet" else unet).requires_grad_(False).eval()
        self.scale, self.conditioning_scale = scale, conditioning_scale
        self.tagger, self.restoration_module = tagger, restoration_module
        if isinstance(restoration_module, nn.Module):
            restoration_module.requires_grad_(False).eval()
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.size_multiple = self.vae_factor * 2 ** (len(unet.config.block_out_channels) - 1)

    @classmethod
    def from_pipeline(
        cls, pipeline: StableDiffusionControlNetPipeline, prompt: str = "", **kwargs
    ) -> ControlNetSRGenerator:
        """Take the components of a loaded pipeline (its scheduler config as a DDIM scheduler); the prompt is
        encoded once with its text encoder."""
        with torch.no_grad():
            prompt_embeds, _ = pipeline.encode_prompt(
                prompt, pipeline.text_encoder.device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        return cls(pipeline.vae, pipeline.unet, pipeline.controlnet, scheduler, prompt_embeds.detach(), **kwargs)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, controlnet: str | None = None, prompt: str = "", **kwargs
    ) -> ControlNetSRGenerator:
        """A saved `StableDiffusionControlNetPipeline`, or an SD2 pipeline plus a ``controlnet`` checkpoint."""
        components = {} if controlnet is None else {"controlnet": ControlNetModel.from_pretrained(controlnet)}
        pipeline = StableDiffusionControlNetPipeline.from_pretrained(name_or_path, safety_checker=None, **components)
        return cls.from_pipeline(pipeline, prompt=prompt, **kwargs)

    @property
    def unet(self) -> UNet2DConditionModel:
        return self.trained_model if self.trainable == "unet" else self.frozen_model

    @property
    def controlnet(self) -> ControlNetModel:
        return self.trained_model if self.trainable == "controlnet" else self.frozen_model

    def frozen_modules(self) -> list[nn.Module]:
        modules = [self.frozen_model]
        return modules + [self.restoration_module] if isinstance(self.restoration_module, nn.Module) else modules

    def add_lora(
        self,
        rank: int,
        alpha: float | None = None,
        target_modules: list[str] | None = None,
        adapter_name: str = "default",
    ) -> None:
        """LoRA on the UNet's attention projections (``trainable="unet"`` only; the ControlNet trains in full)."""
        if self.trainable != "unet":
            raise ValueError(
                "LoRA goes on the UNet (trainable='unet'); with trainable='controlnet' the ControlNet trains in full "
                "(use_lora=False), as SeeSR and DiffBIR train it."
            )
        super().add_lora(rank, alpha=alpha, target_modules=target_modules, adapter_name=adapter_name)

    # Conditioning and the denoiser

    def encode_condition(self, image_lr: torch.Tensor, generator: torch.Generator | None = None) -> SRCondition:
        """LR (B, 3, h, w) in [0, 1] -> ``image_lr`` = the control image (B, 3, scale*h, scale*w) in [0, 1], the
        prompt embeddings and ``extra`` (``tag_embeds``, ``restored``). Deterministic (``generator`` is unused)."""
        if image_lr.ndim != 4 or image_lr.shape[1] != 3:
            raise ValueError(f"image_lr must be (B, 3, h, w), got shape {tuple(image_lr.shape)}.")
        size = (image_lr.shape[-2] * self.scale, image_lr.shape[-1] * self.scale)
        if size[0] % self.size_multiple or size[1] % self.size_multiple:
            raise ValueError(f"the upsampled LR size {size} must be a multiple of {self.size_multiple}.")
        image_lr = image_lr.to(self.device, torch.float32)
        control = F.interpolate(image_lr, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        batch = image_lr.shape[0]
        extra = {}
        with torch.no_grad():
            if self.tagger is not None:
                tag_embeds = self.tagger(image_lr).to(self.device, self.prompt_embeds.dtype)
                if tag_embeds.ndim != 3 or tag_embeds.shape[0] != batch:
                    raise ValueError(
                        f"tagger must return (B={batch}, L, D) embeddings, got {tuple(tag_embeds.shape)}."
                    )
                extra["tag_embeds"] = tag_embeds
            if self.restoration_module is not None:
                restored = self.restoration_module(image_lr.to(self.dtype)).float()
                if restored.shape[-2:] != size:
                    restored = F.interpolate(restored, size=size, mode="bicubic", align_corners=False)
                extra["restored"] = restored.clamp(0, 1)
        return SRCondition(
            image_lr=control.to(self.dtype),
            encoder_hidden_states=self.prompt_embeds.expand(batch, -1, -1),
            extra=extra,
        )

    def latent_shape(self, condition: SRCondition) -> tuple[int, ...]:
        """(B, latent_channels, H/f, W/f) for a control image (B, 3, H, W)."""
        batch, _, height, width = condition.image_lr.shape
        return (batch, self.vae.config.latent_channels, height // self.vae_factor, width // self.vae_factor)

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition) -> torch.Tensor:
        """ControlNet + UNet on latents (B, C, H/f, W/f) at ``timestep`` -> eps or v (``prediction_type``).

        The trained part runs through ``trainable_model`` (so a DDP wrapper synchronises its gradients).
        """
        controlnet = self.trainable_model if self.trainable == "controlnet" else self.frozen_model
        unet = self.trainable_model if self.trainable == "unet" else self.frozen_model
        model_input = self.scheduler.scale_model_input(latents, timestep)
        hidden_states = condition.encoder_hidden_states
        if "tag_embeds" in condition.extra:
            hidden_states = torch.cat([hidden_states, condition.extra["tag_embeds"].to(hidden_states.dtype)], dim=1)
        control = condition.extra.get("restored", condition.image_lr).to(model_input.dtype)
        down_residuals, mid_residual = controlnet(
            model_input,
            timestep,
            encoder_hidden_states=hidden_states,
            controlnet_cond=control,
            conditioning_scale=self.conditioning_scale,
            return_dict=False,
        )
        return unet(
            model_input,
            timestep,
            encoder_hidden_states=hidden_states,
            down_block_additional_residuals=down_residuals,
            mid_block_additional_residual=mid_residual,
            return_dict=False,
        )[0]


__all__ = ["ControlNetSRGenerator", "TRAINABLE_PARTS"]
