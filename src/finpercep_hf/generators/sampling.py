"""[`SchedulerSamplingMixin`]: REFL's differentiable step and full sampling, written once over the `SRGenerator`
low-level methods (``encode_condition``, ``prepare_latents``, ``denoise``, ``predict_x0``, ``decode``) and a
diffusers scheduler's ``set_timesteps`` / ``step`` (DDIM / DDPM for the SD-x4 upscaler, flow-matching Euler for SD3).
"""

from __future__ import annotations

import torch

from .base import SRCondition, SRSample


class SchedulerSamplingMixin:
    """``predict_x0_with_grad`` and ``sample`` for generators that define the protocol's low-level methods."""

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


__all__ = ["SchedulerSamplingMixin"]
