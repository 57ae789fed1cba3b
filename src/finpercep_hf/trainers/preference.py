"""Diffusion-DPO losses and preference pairs formed from reward-ranked candidates (Wallace et al., 2023).

Diffusion-DPO replaces the sequence log-likelihood of DPO by the denoising error on a shared noisy input: for a
(winner, loser) pair noised with the same noise and timestep, the per-sample errors of the trained model
(``model_w``, ``model_l``) and of the frozen reference (``ref_w``, ``ref_l``) give

    logits = (ref_w - ref_l) - (model_w - model_l)

which is positive when the trained model lowered its error on the winner more than on the loser, relative to the
reference. This is the convention of TRL's ``DPOTrainer`` (``logits = policy log-ratio - reference log-ratio``)
with ``log pi ~ -error``, so the three losses read as in TRL:

* ``sigmoid`` (DPO): ``-logsigmoid(beta * logits)``;
* ``hinge`` (SLiC): ``relu(1 - beta * logits)``;
* ``ipo`` (IPO, Azar et al. 2023, Eq. 17 with ``tau = beta``): ``(logits - 1 / (2 * beta))^2``, the squared
  distance of the log-likelihood-ratio margin to its regularised target ``1 / (2 tau)``.

About ``beta``: the original Diffusion-DPO training code scales the logits by ``0.5 * beta_dpo``; here ``beta``
multiplies them directly, as in diffusers' SDXL LoRA Diffusion-DPO example and TRL, so an original
``beta_dpo=5000`` is our ``beta=2500``. The ``ipo`` branch of that diffusers example reads an undefined
``args.beta`` and cannot run; ours uses the same ``beta`` as the other two losses.
The IPO loss is tiny in absolute value (logits are differences of mean squared errors, ~1e-4): Adam is invariant
to that scale, plain SGD needs a larger learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo")
PAIRING_MODES = ("best_worst", "all")


@dataclass
class DPOLossOutput:
    """Attributes:
    losses: (P,) float per-pair loss (average it for the step's loss).
    logits: (P,) float ``(ref_w - ref_l) - (model_w - model_l)``.
    implicit_accuracy: () float in [0, 1], the fraction of pairs with ``logits > 0`` (the trained model prefers
        the winner more than the reference does), ties counting one half (so 0.5 when model == reference).
    """

    losses: torch.Tensor
    logits: torch.Tensor
    implicit_accuracy: torch.Tensor


def diffusion_dpo_loss(
    model_losses_w: torch.Tensor,
    model_losses_l: torch.Tensor,
    ref_losses_w: torch.Tensor,
    ref_losses_l: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
) -> DPOLossOutput:
    """Diffusion-DPO loss from per-sample denoising errors, all (P,) float (>= 0), one entry per pair.

    ``model_*`` carry gradients; ``ref_*`` come from the reference policy (no grad). See the module docstring for
    ``loss_type`` and ``beta`` (> 0).
    """
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}.")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}.")
    shapes = {tuple(t.shape) for t in (model_losses_w, model_losses_l, ref_losses_w, ref_losses_l)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"the four per-sample error tensors must have the same shape (P,), got {sorted(shapes)}.")
    logits = (ref_losses_w - ref_losses_l) - (model_losses_w - model_losses_l)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    accuracy = (logits > 0).float().mean() + 0.5 * (logits == 0).float().mean()
    return DPOLossOutput(losses=losses, logits=logits, implicit_accuracy=accuracy)


@dataclass
class PreferencePairs:
    """(winner, loser) pairs among ``G`` groups of ``K`` candidates, indexed into the flattened ``G * K`` candidates.

    Attributes:
        winner: (P,) long, flat index ``g * K + k`` of each pair's preferred candidate.
        loser: (P,) long, flat index of the rejected candidate.
        group: (P,) long, the group (LR image) of each pair.
        reward_gap: (P,) float, ``reward[winner] - reward[loser]`` (> ``min_reward_gap``).
    """

    winner: torch.Tensor
    loser: torch.Tensor
    group: torch.Tensor
    reward_gap: torch.Tensor

    def __len__(self) -> int:
        return self.winner.shape[0]


def form_preference_pairs(
    rewards: torch.Tensor, mode: str = "best_worst", min_reward_gap: float = 0.0
) -> PreferencePairs:
    """Rank the ``K`` candidates of each group by reward and pair them.

    Args:
        rewards: (G, K) float, the reward of candidate ``k`` of LR image ``g`` (K >= 2).
        mode: ``best_worst`` (one pair per group: highest vs lowest reward) or ``all`` (every ordered pair with a
            higher reward for the winner, ``K * (K - 1) / 2`` per group without ties).
        min_reward_gap: pairs whose reward gap is not larger than this are dropped (ties never form a pair).

    Returns:
        `PreferencePairs`, possibly empty when every group is tied.
    """
    if mode not in PAIRING_MODES:
        raise ValueError(f"mode must be one of {PAIRING_MODES}, got {mode!r}.")
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (G, K) with K >= 2 candidates per group, got {tuple(rewards.shape)}.")
    if min_reward_gap < 0:
        raise ValueError(f"min_reward_gap must be >= 0, got {min_reward_gap}.")
    rewards = rewards.detach()
    num_groups, num_candidates = rewards.shape
    groups = torch.arange(num_groups, device=rewards.device)
    if mode == "best_worst":
        best, worst = rewards.argmax(dim=1), rewards.argmin(dim=1)
        group, winner, loser = groups, best, worst
    else:
        first, second = torch.triu_indices(num_candidates, num_candidates, offset=1, device=rewards.device)
        first_wins = rewards[:, first] > rewards[:, second]
        group = groups.repeat_interleave(first.shape[0])
        winner = torch.where(first_wins, first, second).flatten()
        loser = torch.where(first_wins, second, first).flatten()
    gap = rewards[group, winner] - rewards[group, loser]
    keep = gap > min_reward_gap
    return PreferencePairs(
        winner=group[keep] * num_candidates + winner[keep],
        loser=group[keep] * num_candidates + loser[keep],
        group=group[keep],
        reward_gap=gap[keep],
    )


__all__ = [
    "DPO_LOSS_TYPES",
    "PAIRING_MODES",
    "DPOLossOutput",
    "PreferencePairs",
    "diffusion_dpo_loss",
    "form_preference_pairs",
]
