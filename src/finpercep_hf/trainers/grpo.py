"""GRPO for diffusion SR generators: DDIM (eta > 0) as the policy, group-relative advantages, PPO clipped surrogate.

DanceGRPO / DDPO style (https://huggingface.co/papers/2505.07818, https://huggingface.co/papers/2305.13301): for each
LR image sample ``group_size`` SR images with a stochastic DDIM sampler, storing the trajectory (latents, next
latents, log-probabilities, timesteps, LR conditioning); reward them with the active RM_k; normalise the rewards
within each group (``(r - mean) / (std + eps)``); then for a ``timestep_fraction`` of the denoising steps recompute
the log-probabilities under the current weights and minimise the clipped surrogate

    ratio = exp(log_prob - old_log_prob)
    loss = mean(max(-A * ratio, -A * clamp(ratio, 1 - clip_range, 1 + clip_range)))  (+ kl_beta * KL(pi || pi_ref))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ADVANTAGE_STD_SCOPES = ("group", "global")


def group_advantages(
    rewards: torch.Tensor, std_scope: str = "group", eps: float = 1e-4, clip_max: float | None = None
) -> torch.Tensor:
    """Group-relative advantages of GRPO.

    Args:
        rewards: (G, K) float, the rewards of the ``K`` samples of each of ``G`` LR images.
        std_scope: ``group`` divides by each group's std (GRPO); ``global`` by the std of all ``G * K`` rewards
            (Flow-GRPO's option, steadier when a group's rewards are nearly tied).
        eps: added to the std (a tied group gets advantages 0, not 0/0).
        clip_max: if given, advantages are clamped to ``[-clip_max, clip_max]``.

    Returns:
        (G, K) float; before clipping each row sums to 0.
    """
    if std_scope not in ADVANTAGE_STD_SCOPES:
        raise ValueError(f"std_scope must be one of {ADVANTAGE_STD_SCOPES}, got {std_scope!r}.")
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (G, K) with K >= 2 samples per group, got {tuple(rewards.shape)}.")
    if clip_max is not None and not clip_max > 0:
        raise ValueError(f"clip_max must be > 0, got {clip_max}.")
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True) if std_scope == "group" else rewards.std()
    advantages = centred / (std + eps)
    if clip_max is not None:
        advantages = advantages.clamp(-clip_max, clip_max)
    return advantages


@dataclass
class SurrogateOutput:
    """Attributes:
    loss: () float, the clipped surrogate averaged over the batch.
    approx_kl: () float, ``0.5 * mean((log_prob - old_log_prob)^2)`` (DDPO's estimate of KL(old || new)).
    clipfrac: () float in [0, 1], the fraction of samples whose ratio left ``[1 - clip_range, 1 + clip_range]``.
    ratio: (B,) float, ``exp(log_prob - old_log_prob)``.
    """

    loss: torch.Tensor
    approx_kl: torch.Tensor
    clipfrac: torch.Tensor
    ratio: torch.Tensor


def clipped_surrogate_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> SurrogateOutput:
    """PPO's clipped surrogate for (B,) log-probabilities (with grad), stored ``old_log_prob`` and advantages."""
    if not clip_range > 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}.")
    if not log_prob.shape == old_log_prob.shape == advantages.shape:
        raise ValueError(
            f"log_prob {tuple(log_prob.shape)}, old_log_prob {tuple(old_log_prob.shape)} and advantages "
            f"{tuple(advantages.shape)} must have the same shape."
        )
    log_ratio = log_prob - old_log_prob.detach()
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    with torch.no_grad():
        approx_kl = 0.5 * (log_ratio**2).mean()
        clipfrac = ((ratio - 1).abs() > clip_range).float().mean()
    return SurrogateOutput(
        loss=torch.maximum(unclipped, clipped).mean(), approx_kl=approx_kl, clipfrac=clipfrac, ratio=ratio.detach()
    )


__all__ = ["ADVANTAGE_STD_SCOPES", "SurrogateOutput", "clipped_surrogate_loss", "group_advantages"]
