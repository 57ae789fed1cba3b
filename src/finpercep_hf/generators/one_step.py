"""[`OneStepSRGenerator`]: one-step diffusion SR (the OSEDiff family: OSEDiff, S3Diff, PiSA-SR) on the components of
a Stable Diffusion 2.1 / SD-turbo `StableDiffusionPipeline`.

```
image_lr (B, 3, h, w) in [0, 1] -> bicubic x scale -> VAE encode -> z_LR (B, 4, H/f, W/f)
z_LR -> UNet(z_LR, t = 999, prompt embeddings) (LoRA) -> x0 = predict_x0(output, t, z_LR) -> VAE decode -> SR
```

The LR latent itself is the UNet's input at the fixed timestep (no noise is added), as OSEDiff does. REFL trains
it by the reward's gradient through the whole generator (`generate_with_grad`), plus the fidelity terms of
`FidelityConfig` (L1/LPIPS to the HR image, L1 to the reference: the UNet without its LoRA).

GRPO applies, as noise-injected one-step sampling: the policy draws the output latent from the DDIM (eta > 0)
transition from t to the end of the schedule, ``N(sqrt(a_0) x0_hat + ..., sigma^2 I)`` with
``sigma = eta * sqrt((1 - a_0) / (1 - a_t) * (1 - a_t / a_0))`` (``a = alphas_cumprod``; 0.029 for SD's schedule at
eta = 1): one Gaussian step with a log-probability, which `ddim_step_with_logprob` computes. Run
`DiffusionGRPOTrainer` with ``num_inference_steps=1``; the scheduler uses ``timestep_spacing="trailing"`` so that
its one timestep is t. The exploration is as small as that sigma; a larger one would need a policy whose std is a
parameter (not done).
Diffusion-DPO does not apply: its likelihood surrogate is the denoising error at random timesteps of noised HR
latents, while a one-step model only ever maps the LR latent at t; it raises a `NotImplementedError` (so does
REFL's ``pretrain_loss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from torch import nn

from .base import SRCondition, SRSample
from .fidelity import FidelityConfig, fidelity_loss
from .latent_diffusion import LatentDiffusionSRGenerator

NO_DENOISING_LOSS = (
    "a one-step SR model maps the LR latent at its one timestep only, so the denoising error of noised HR latents "
    "(Diffusion-DPO, REFL's pretrain_loss) is no likelihood of its outputs: use REFLTrainer (direct gradient) or "
    "DiffusionGRPOTrainer with num_inference_steps=1 (noise-injected one-step sampling)."
)


class OneStepSRGenerator(LatentDiffusionSRGenerator):
    """One UNet call at a fixed timestep from the VAE latent of the upsampled LR image (see the module docstring).

    Args:
        vae: `AutoencoderKL` (frozen).
        unet: `UNet2DConditionModel` with ``in_channels == latent_channels`` (SD2.1 / SD-turbo).
        scheduler: a `DDIMScheduler` with ``timestep_spacing="trailing"`` (its ``alphas_cumprod`` give x0).
        prompt_embeds: (1, L, D) prompt embeddings, computed once.
        scale: the SR factor (the LR image is upsampled by it before the VAE).
        timestep: the UNet's fixed timestep (OSEDiff: 999).
        fidelity: REFL's fidelity terms (default `FidelityConfig()`: L1 to the reference output).
        lpips: an LPIPS module for ``fidelity_gt_lpips``.

    Example:

    ```python
    >>> pipe = StableDiffusionPipeline.from_pretrained("stabilityai/sd-turbo")
    >>> gen = OneStepSRGenerator.from_pipeline(pipe)
    >>> gen.add_lora(rank=4)
    >>> gen.sample(image_lr).images.shape  # image_lr: (B, 3, 128, 128) in [0, 1]
    torch.Size([B, 3, 512, 512])
    ```
    """

    lora_pipeline_class = StableDiffusionPipeline

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        scheduler: DDIMScheduler,
        prompt_embeds: torch.Tensor,
        scale: int = 4,
        timestep: int = 999,
        fidelity: FidelityConfig | None = None,
        lpips: nn.Module | None = None,
    ):
        if unet.config.in_channels != vae.config.latent_channels:
            raise ValueError(
                f"unet.in_channels ({unet.config.in_channels}) must equal the VAE's latent channels "
                f"({vae.config.latent_channels}): the LR latent is the UNet's only input."
            )
        if not 0 <= timestep < scheduler.config.num_train_timesteps:
            raise ValueError(f"timestep must be in [0, {scheduler.config.num_train_timesteps}), got {timestep}.")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}.")
        super().__init__(vae, unet, scheduler, prompt_embeds, num_inference_steps=1)
        self.scale, self.timestep = scale, timestep
        self.fidelity = fidelity or FidelityConfig()
        self.lpips = lpips
        vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.size_multiple = vae_factor * 2 ** (len(unet.config.block_out_channels) - 1)

    @classmethod
    def from_pipeline(cls, pipeline: StableDiffusionPipeline, prompt: str = "", **kwargs) -> OneStepSRGenerator:
        """Take the components of a loaded pipeline; the prompt is encoded once with its text encoder."""
        with torch.no_grad():
            prompt_embeds, _ = pipeline.encode_prompt(
                prompt, pipeline.text_encoder.device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        scheduler = DDIMScheduler.from_config(pipeline.scheduler.config, timestep_spacing="trailing")
        return cls(pipeline.vae, pipeline.unet, scheduler, prompt_embeds.detach(), **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str, prompt: str = "", **kwargs) -> OneStepSRGenerator:
        """Load a `StableDiffusionPipeline` checkpoint (e.g. stabilityai/sd-turbo, SD2.1-base)."""
        pipeline = StableDiffusionPipeline.from_pretrained(name_or_path, safety_checker=None)
        return cls.from_pipeline(pipeline, prompt=prompt, **kwargs)

    @property
    def unet(self) -> UNet2DConditionModel:
        return self.trained_model

    # Conditioning and the one step

    def encode_condition(self, image_lr: torch.Tensor, generator: torch.Generator | None = None) -> SRCondition:
        """LR (B, 3, h, w) in [0, 1] -> ``image_lr`` = z_LR (B, C, H/f, W/f), the VAE latent of the bicubic
        x``scale`` upsampling, and the prompt embeddings. Deterministic (``generator`` is unused)."""
        if image_lr.ndim != 4 or image_lr.shape[1] != 3:
            raise ValueError(f"image_lr must be (B, 3, h, w), got shape {tuple(image_lr.shape)}.")
        height, width = image_lr.shape[-2] * self.scale, image_lr.shape[-1] * self.scale
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"the upsampled LR size {height}x{width} must be a multiple of {self.size_multiple}.")
        upsampled = F.interpolate(image_lr.float(), scale_factor=self.scale, mode="bicubic", align_corners=False)
        with torch.no_grad():
            latents = self.encode_images(upsampled.clamp(0, 1))
        batch = image_lr.shape[0]
        return SRCondition(image_lr=latents, encoder_hidden_states=self.prompt_embeds.expand(batch, -1, -1))

    def latent_shape(self, condition: SRCondition) -> tuple[int, ...]:
        return tuple(condition.image_lr.shape)

    def prepare_latents(self, condition: SRCondition, generator: torch.Generator | None = None) -> torch.Tensor:
        """The UNet's input: the LR latent z_LR itself (no noise)."""
        return condition.image_lr

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, condition: SRCondition) -> torch.Tensor:
        """The UNet at the fixed ``timestep`` (any other timestep is an error: the model knows only this one)."""
        timestep = torch.as_tensor(timestep, device=latents.device)
        if (timestep != self.timestep).any():
            raise ValueError(
                f"a one-step SR generator runs its UNet at timestep {self.timestep} only, got {timestep.tolist()}; "
                "sample with num_inference_steps=1 (GRPO: --num_inference_steps 1)."
            )
        return self.trainable_model(
            latents, timestep, encoder_hidden_states=condition.encoder_hidden_states, return_dict=False
        )[0]

    def generate_with_grad(self, image_lr: torch.Tensor) -> torch.Tensor:
        """LR (B, 3, h, w) in [0, 1] -> SR (B, 3, scale*h, scale*w) in [0, 1], differentiable through UNet and VAE
        decoder."""
        condition = self.encode_condition(image_lr)
        timestep = torch.tensor(self.timestep, device=self.device)
        return self.decode(self.predict_x0_with_grad(condition.image_lr, timestep, condition))

    @torch.no_grad()
    def sample(
        self,
        image_lr: torch.Tensor,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> SRSample:
        """The deterministic one-step SR of ``image_lr``; ``num_inference_steps`` and ``generator`` are ignored.

        The trajectory, if asked, is ``[z_LR, x0]``.
        """
        condition = self.encode_condition(image_lr)
        timestep = torch.tensor(self.timestep, device=self.device)
        latents = self.predict_x0(self.denoise(condition.image_lr, timestep, condition), timestep, condition.image_lr)
        return SRSample(
            images=self.decode(latents),
            latents=latents,
            timesteps=timestep[None],
            condition=condition,
            trajectory=[condition.image_lr, latents] if return_trajectory else None,
        )

    def fidelity_loss(
        self, image_sr: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The `FidelityConfig` terms of ``image_sr``; the reference is the UNet without its LoRA."""
        if self.fidelity.fidelity_reference_l1 > 0 and not self.has_lora:
            raise ValueError(
                "fidelity_reference_l1 needs LoRA (the reference is the UNet without it): set it to 0 or train LoRA."
            )

        def reference(image_lr: torch.Tensor) -> torch.Tensor:
            with self.reference_policy():
                return self.sample(image_lr).images

        return fidelity_loss(image_sr, batch, self.fidelity, reference, lpips=self.lpips)

    # Not defined for a one-step model

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(NO_DENOISING_LOSS)

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(NO_DENOISING_LOSS)


__all__ = ["NO_DENOISING_LOSS", "OneStepSRGenerator"]
