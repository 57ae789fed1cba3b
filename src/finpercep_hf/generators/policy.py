"""Stochastic sampling policies with per-step log-probabilities: what GRPO samples and re-scores.

A policy fixes the T rollout timesteps and turns one model output into a Gaussian step with its log-probability
(`StepWithLogProb`), given the step's index ``i`` (an int, or one index per sample when re-scoring stored steps):

* [`DDIMPolicy`] (DDPM-family generators: epsilon / sample / v-prediction UNets): DDIM with ``eta > 0``,
  `ddim_step_with_logprob`;
* [`FlowSDEPolicy`] (rectified-flow generators, ``prediction_type = "flow"``): the Flow-GRPO SDE step from
  ``sigmas[i]`` to ``sigmas[i + 1]``, `flow_sde_step_with_logprob`, with ``eta`` as its noise level ``a``.

``stochastic`` (T bools) marks the steps that are policy actions; ``stochastic_indices`` are their indices; a step
that is not (a DDIM step with variance 0) is taken with ``deterministic_step``, its mean.

[`stochastic_policy`] asks the generator for its own (``generator.stochastic_policy(num_inference_steps, eta)``)
and falls back to DDIM over the generator's scheduler config.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from .ddim_logprob import StepWithLogProb, ddim_step_with_logprob, flow_sde_step_with_logprob


class DDIMPolicy:
    """DDIM (``eta > 0``) over a `DDIMScheduler` built from ``scheduler_config``, T = ``num_inference_steps``."""

    def __init__(self, scheduler_config, num_inference_steps: int, eta: float, device: torch.device | str = "cpu"):
        self.scheduler = DDIMScheduler.from_config(scheduler_config)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self.timesteps = self.scheduler.timesteps
        self.eta = eta
        step = self.scheduler.config.num_train_timesteps // num_inference_steps
        self.stochastic = [float(self.scheduler._get_variance(int(t), int(t) - step)) > 0 for t in self.timesteps]
        self.stochastic_indices = torch.tensor(
            [index for index, stochastic in enumerate(self.stochastic) if stochastic], device=device
        )

    def deterministic_step(self, model_output: torch.Tensor, step_index: int, sample: torch.Tensor) -> torch.Tensor:
        """The DDIM step ``step_index`` with ``eta = 0`` (the mean), for a step with variance 0."""
        return self.scheduler.step(model_output, self.timesteps[step_index], sample, eta=0.0).prev_sample

    def step(
        self,
        model_output: torch.Tensor,
        step_index: int | torch.Tensor,
        sample: torch.Tensor,
        prev_sample: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> StepWithLogProb:
        """Step ``step_index`` (int or (B,) long) from ``sample`` (B, C, h, w); see `ddim_step_with_logprob`."""
        timestep = self.timesteps[step_index]
        return ddim_step_with_logprob(
            self.scheduler, model_output, timestep, sample, eta=self.eta, prev_sample=prev_sample, generator=generator
        )


class FlowSDEPolicy:
    """The Flow-GRPO SDE over the sigmas of a `FlowMatchEulerDiscreteScheduler` (its shift included).

    ``timesteps`` (T,) = ``sigmas[:T] * num_train_timesteps``, what the transformer is called with.
    """

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        num_inference_steps: int,
        noise_level: float,
        device: torch.device | str = "cpu",
    ):
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=device)
        self.sigmas = scheduler.sigmas.to(device=device, dtype=torch.float32)
        self.timesteps = scheduler.timesteps
        self.noise_level = noise_level
        self.stochastic = [True] * num_inference_steps  # sigma_next < sigma: every SDE step has std > 0
        self.stochastic_indices = torch.arange(num_inference_steps, device=device)

    def deterministic_step(self, model_output: torch.Tensor, step_index: int, sample: torch.Tensor) -> torch.Tensor:
        """The flow-ODE Euler step ``x + (sigma_next - sigma) v`` (the probability-flow mean)."""
        return sample + (self.sigmas[step_index + 1] - self.sigmas[step_index]) * model_output

    def step(
        self,
        model_output: torch.Tensor,
        step_index: int | torch.Tensor,
        sample: torch.Tensor,
        prev_sample: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> StepWithLogProb:
        """Step ``step_index`` (int or (B,) long) from ``sample`` (B, C, h, w) at ``sigmas[step_index]``."""
        step_index = torch.as_tensor(step_index, device=self.sigmas.device)
        return flow_sde_step_with_logprob(
            self.sigmas[step_index],
            self.sigmas[step_index + 1],
            model_output,
            sample,
            noise_level=self.noise_level,
            prev_sample=prev_sample,
            generator=generator,
        )


def stochastic_policy(generator, num_inference_steps: int, eta: float, device: torch.device | str = "cpu"):
    """The generator's own policy (``generator.stochastic_policy``) or DDIM over its scheduler config."""
    own_policy = getattr(generator, "stochastic_policy", None)
    if own_policy is not None:
        return own_policy(num_inference_steps, eta, device=device)
    return DDIMPolicy(generator.scheduler.config, num_inference_steps, eta, device=device)


__all__ = ["DDIMPolicy", "FlowSDEPolicy", "stochastic_policy"]
