"""Stochastic sampler steps that also return the Gaussian log-probability of the step (the GRPO policy).

With ``eta > 0`` a DDIM step is a Gaussian transition ``x_{t-1} ~ N(mu_theta(x_t, t), sigma_t^2 I)`` (DDIM paper
Eq. 12 and 16, the form DDPO and DanceGRPO train with policy gradients):

* ``x0_hat`` and ``eps_hat`` from the model output (``epsilon``, ``sample`` or ``v_prediction``);
* ``sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))`` with ``a = alphas_cumprod``;
* ``mu = sqrt(a_prev) * x0_hat + sqrt(1 - a_prev - sigma_t^2) * eps_hat``.

`ddim_step_with_logprob` follows diffusers' `DDIMScheduler.step` (same previous timestep, same ``clip_sample``)
and, unlike it, accepts per-sample timesteps and a given ``prev_sample`` so that the log-probability of a stored
trajectory can be recomputed under new weights. `flow_sde_step_with_logprob` is the Flow-GRPO SDE step for
rectified-flow generators (``x_sigma = (1 - sigma) * x0 + sigma * noise``, the model predicts ``noise - x0``).

Log-probabilities are averaged over the non-batch dimensions (DDPO's convention): one number per sample whose
scale does not grow with the latent size, so PPO clip ranges transfer across resolutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


@dataclass
class StepWithLogProb:
    """One stochastic sampler step.

    Attributes:
        prev_sample: (B, C, H, W) the next (less noisy) latents, sampled or the ``prev_sample`` given.
        log_prob: (B,) float32 mean over C, H, W of ``log N(prev_sample; prev_sample_mean, std^2)``.
        prev_sample_mean: (B, C, H, W) float32 mean of the Gaussian transition.
        std: (B, 1, 1, 1) float32 standard deviation of the transition.
    """

    prev_sample: torch.Tensor
    log_prob: torch.Tensor
    prev_sample_mean: torch.Tensor
    std: torch.Tensor


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Isotropic Gaussian log-density of ``x`` (B, ...) around ``mean`` with ``std`` (broadcastable, > 0).

    Returns (B,): the per-element log-density averaged over all non-batch dimensions.
    """
    if (std <= 0).any():
        raise ValueError("gaussian_log_prob needs std > 0; a deterministic step (std == 0) has no density.")
    log_density = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return log_density.mean(dim=tuple(range(1, x.ndim)))


def gaussian_kl(mean: torch.Tensor, mean_ref: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(mean_ref, std^2)) of two Gaussians with the same ``std``, per element, averaged.

    ``mean``, ``mean_ref``: (B, ...); ``std``: broadcastable, > 0. Returns (B,) float >= 0 (GRPO's KL to the
    reference policy: both policies' transitions share the scheduler's std, only the means differ).
    """
    if (std <= 0).any():
        raise ValueError("gaussian_kl needs std > 0.")
    return (((mean - mean_ref) ** 2) / (2 * std**2)).mean(dim=tuple(range(1, mean.ndim)))


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) or scalar -> (B, 1, ..., 1) with ``ndim`` dimensions."""
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))


def _sample_or_check(
    prev_sample: torch.Tensor | None, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    if prev_sample is None:
        noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * noise
    if generator is not None:
        raise ValueError("pass either prev_sample (to score it) or generator (to sample one), not both.")
    if prev_sample.shape != mean.shape:
        raise ValueError(f"prev_sample has shape {tuple(prev_sample.shape)}, expected {tuple(mean.shape)}.")
    return prev_sample


def ddim_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    prediction_type: str | None = None,
) -> StepWithLogProb:
    """One DDIM step with ``eta > 0`` and the log-probability of its result.

    Args:
        scheduler: a `diffusers.DDIMScheduler` on which `set_timesteps` was called (its ``alphas_cumprod``,
            ``final_alpha_cumprod``, ``num_inference_steps`` and config are read, never changed).
        model_output: (B, C, H, W) the UNet output at ``(sample, timestep)``.
        timestep: the current training timestep, an int or a (B,) integer tensor (one per sample).
        sample: (B, C, H, W) the current latents ``x_t``.
        eta: DDIM noise weight in (0, 1]; 1 is the DDPM posterior variance.
        prev_sample: (B, C, H, W) latents to score instead of sampling new ones (recomputing a trajectory).
        generator: RNG for the sampled noise; only without ``prev_sample``.
        prediction_type: ``epsilon``, ``sample`` or ``v_prediction``; default: the scheduler's.

    Returns:
        `StepWithLogProb`; ``prev_sample`` keeps the dtype of ``sample``, the rest is float32.
    """
    prediction_type = prediction_type or scheduler.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    if not eta > 0:
        raise ValueError(f"eta must be > 0 for a stochastic step with a log-probability, got {eta}.")
    if scheduler.num_inference_steps is None:
        raise ValueError("call scheduler.set_timesteps(num_inference_steps) before ddim_step_with_logprob.")
    if scheduler.config.thresholding:
        raise ValueError("dynamic thresholding is not supported by ddim_step_with_logprob; disable it.")
    output_dtype = sample.dtype
    model_output, sample = model_output.float(), sample.float()
    device, ndim = sample.device, sample.ndim

    timestep = torch.as_tensor(timestep, device=device).long()
    prev_timestep = timestep - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    final_alpha_cumprod = torch.as_tensor(scheduler.final_alpha_cumprod, device=device, dtype=torch.float32)
    alpha_prod_t = _per_sample(alphas_cumprod[timestep], ndim)
    alpha_prod_prev = _per_sample(
        torch.where(prev_timestep >= 0, alphas_cumprod[prev_timestep.clamp(min=0)], final_alpha_cumprod), ndim
    )
    beta_prod_t = 1 - alpha_prod_t

    if prediction_type == "epsilon":
        pred_x0 = (sample - beta_prod_t.sqrt() * model_output) / alpha_prod_t.sqrt()
        pred_eps = model_output
    elif prediction_type == "sample":
        pred_x0 = model_output
        pred_eps = (sample - alpha_prod_t.sqrt() * pred_x0) / beta_prod_t.sqrt()
    else:
        pred_x0 = alpha_prod_t.sqrt() * sample - beta_prod_t.sqrt() * model_output
        pred_eps = alpha_prod_t.sqrt() * model_output + beta_prod_t.sqrt() * sample
    if scheduler.config.clip_sample:
        pred_x0 = pred_x0.clamp(-scheduler.config.clip_sample_range, scheduler.config.clip_sample_range)

    variance = (1 - alpha_prod_prev) / beta_prod_t * (1 - alpha_prod_t / alpha_prod_prev)
    std = eta * variance.sqrt()
    if (std <= 0).any():
        raise ValueError(
            f"the DDIM step from timestep {timestep.tolist()} has zero variance, so no log-probability; with "
            "set_alpha_to_one=True the last step is deterministic: use a scheduler with set_alpha_to_one=False."
        )
    mean = alpha_prod_prev.sqrt() * pred_x0 + (1 - alpha_prod_prev - std**2).sqrt() * pred_eps
    std = std.expand(sample.shape[0], *std.shape[1:])

    # Score the sample as it is stored (e.g. rounded to bf16), so that re-scoring it later gives the same number.
    prev_sample = _sample_or_check(prev_sample, mean, std, generator).to(output_dtype)
    log_prob = gaussian_log_prob(prev_sample.float(), mean, std)
    return StepWithLogProb(prev_sample, log_prob, mean, std)


def flow_sde_step_with_logprob(
    sigma: float | torch.Tensor,
    sigma_next: float | torch.Tensor,
    model_output: torch.Tensor,
    sample: torch.Tensor,
    noise_level: float = 0.7,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StepWithLogProb:
    """One Flow-GRPO SDE step from noise level ``sigma`` to ``sigma_next < sigma`` with its log-probability.

    The reverse SDE with the same marginals as the flow ODE, discretised by Euler-Maruyama (Flow-GRPO Eq. 9):
    with ``dt = sigma_next - sigma < 0`` and ``s = noise_level * sqrt(sigma / (1 - sigma))``,
    ``mean = x * (1 + s^2 * dt / (2 sigma)) + v * (1 + s^2 (1 - sigma) / (2 sigma)) * dt`` and
    ``std = s * sqrt(-dt)``. At ``sigma == 1`` the ``1 - sigma`` of ``s`` is replaced by ``1 - sigma_next``.

    Args:
        sigma, sigma_next: noise levels in [0, 1], floats or (B,) tensors.
        model_output: (B, C, H, W) predicted velocity ``noise - x0``.
        sample: (B, C, H, W) latents at ``sigma``.
        noise_level: Flow-GRPO's ``a`` (> 0).
        prev_sample, generator: as in `ddim_step_with_logprob`.
    """
    if not noise_level > 0:
        raise ValueError(f"noise_level must be > 0, got {noise_level}.")
    output_dtype = sample.dtype
    model_output, sample = model_output.float(), sample.float()
    sigma = _per_sample(torch.as_tensor(sigma, device=sample.device, dtype=torch.float32), sample.ndim)
    sigma_next = _per_sample(torch.as_tensor(sigma_next, device=sample.device, dtype=torch.float32), sample.ndim)
    if (sigma_next >= sigma).any() or (sigma_next < 0).any() or (sigma > 1).any():
        raise ValueError("flow_sde_step_with_logprob needs 0 <= sigma_next < sigma <= 1.")
    dt = sigma_next - sigma
    one_minus_sigma = torch.where(sigma == 1, 1 - sigma_next, 1 - sigma)
    s = noise_level * (sigma / one_minus_sigma).sqrt()
    mean = sample * (1 + s**2 * dt / (2 * sigma)) + model_output * (1 + s**2 * (1 - sigma) / (2 * sigma)) * dt
    std = (s * (-dt).sqrt()).expand(sample.shape[0], *s.shape[1:])

    # Score the sample as it is stored (e.g. rounded to bf16), so that re-scoring it later gives the same number.
    prev_sample = _sample_or_check(prev_sample, mean, std, generator).to(output_dtype)
    log_prob = gaussian_log_prob(prev_sample.float(), mean, std)
    return StepWithLogProb(prev_sample, log_prob, mean, std)


__all__ = [
    "PREDICTION_TYPES",
    "StepWithLogProb",
    "ddim_step_with_logprob",
    "flow_sde_step_with_logprob",
    "gaussian_kl",
    "gaussian_log_prob",
]
