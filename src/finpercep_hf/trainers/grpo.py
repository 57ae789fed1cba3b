"""GRPO for diffusion SR generators: a stochastic sampler (DDIM or the flow SDE) as the policy, group-relative
advantages, PPO clipped surrogate.

DanceGRPO / DDPO style (https://huggingface.co/papers/2505.07818, https://huggingface.co/papers/2305.13301): for each
LR image sample ``num_samples_per_image`` SR images with a stochastic DDIM sampler, storing the trajectory (latents,
next latents, log-probabilities, timesteps, LR conditioning); reward them with the active RM_k; normalise the rewards
within each group (``(r - mean) / (std + eps)``); then for a ``timestep_fraction`` of the denoising steps recompute
the log-probabilities under the current weights and minimise the clipped surrogate

    ratio = exp(log_prob - old_log_prob)
    loss = mean(max(-A * ratio, -A * clamp(ratio, 1 - clip_range, 1 + clip_range)))  (+ kl_beta * KL(pi || pi_ref))

Each trained (rollout, step) unit is back-propagated on its own (one UNet graph alive at a time, as DanceGRPO), in
the trainer's ``training_step`` (the loop's hook for a split backward). With
``rollout_reuse = 1`` every rollout is trained on once, right after it was sampled, so the ratio is 1 when the loss
is computed and the clipping never acts (on-policy GRPO, REINFORCE with group baselines); ``rollout_reuse = n``
trains each rollout in ``n`` consecutive micro-batches, so that after an optimizer update the ratio departs from 1
and the clipped surrogate limits the step, as PPO's inner epochs (the rollout buffer is not checkpointed).

The policy comes from the generator (`stochastic_policy` in `generators/policy.py`): DDIM (``eta > 0``,
`ddim_step_with_logprob`) over the generator's scheduler config for DDPM-family UNets such as the SD-x4 upscaler; the
Flow-GRPO SDE (`flow_sde_step_with_logprob`, ``eta`` as its noise level) for flow-matching generators
([`FlowSRGenerator`]). A DDIM step whose variance is 0 (the last one under ``set_alpha_to_one=True``, which jumps to
``alpha = 1``) is deterministic: it is taken with the mean and is not a policy action (no log-probability, never
trained). The trainer's ``rng`` draws all noise and the trained steps, so a resumed run repeats an uninterrupted one
bit for bit (with ``rollout_reuse = 1``; a reuse buffer of older rollouts is not checkpointed).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from ..generators.base import SRCondition
from ..generators.ddim_logprob import gaussian_kl
from ..generators.policy import stochastic_policy
from .base import GeneratorTrainer, GeneratorTrainerConfig

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
        (G, K) float32; before clipping each row sums to 0.
    """
    if std_scope not in ADVANTAGE_STD_SCOPES:
        raise ValueError(f"std_scope must be one of {ADVANTAGE_STD_SCOPES}, got {std_scope!r}.")
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (G, K) with K >= 2 samples per group, got {tuple(rewards.shape)}.")
    if clip_max is not None and not clip_max > 0:
        raise ValueError(f"clip_max must be > 0, got {clip_max}.")
    rewards = rewards.double()  # rewards differ in their last float32 digits within a group: centre in float64
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True) if std_scope == "group" else rewards.std()
    advantages = centred / (std + eps)
    if clip_max is not None:
        advantages = advantages.clamp(-clip_max, clip_max)
    return advantages.float()


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


@dataclass
class DiffusionGRPOConfig(GeneratorTrainerConfig):
    """[`DiffusionGRPOTrainer`] arguments; defaults are DanceGRPO's where it has one."""

    output_dir: str = field(default="runs/grpo", metadata={"help": "Checkpoints, logs, LoRA weights, card."})
    # Rollouts
    num_samples_per_image: int = field(default=8, metadata={"help": "Samples K per LR image, one GRPO group (8)."})
    num_inference_steps: int = field(default=20, metadata={"help": "DDIM steps of a rollout (20)."})
    eta: float = field(
        default=1.0,
        metadata={"help": "DDIM eta > 0 (1.0 = DDPM variance); flow generators: the SDE noise level (Flow-GRPO 0.7)."},
    )
    rollout_reuse: int = field(
        default=1, metadata={"help": "Micro-batches each rollout is trained in (PPO inner epochs; 1 = on-policy)."}
    )
    # Advantages
    advantage_std: str = field(
        default="group",
        metadata={"help": f"Normalise by the std of each group or of all rewards: {ADVANTAGE_STD_SCOPES}."},
    )
    advantage_eps: float = field(default=1e-4, metadata={"help": "Added to the std of the advantages."})
    adv_clip_max: float = field(
        default=5.0, metadata={"help": "Advantages are clamped to [-adv_clip_max, adv_clip_max]."}
    )
    # Policy update
    clip_range: float = field(default=1e-4, metadata={"help": "PPO ratio clip range (DanceGRPO: 1e-4)."})
    timestep_fraction: float = field(
        default=0.6, metadata={"help": "Fraction of the denoising steps trained per rollout, drawn per sample (0.6)."}
    )
    kl_beta: float = field(default=0.0, metadata={"help": "Weight of KL(pi_theta || pi_ref) per step (0 = off)."})

    def __post_init__(self):
        super().__post_init__()
        if self.num_samples_per_image < 2:
            raise ValueError(
                "num_samples_per_image must be >= 2 (advantages are relative to the group), "
                f"got {self.num_samples_per_image}."
            )
        if not 0 < self.eta <= 1:
            raise ValueError(f"eta must be in (0, 1] (a stochastic DDIM policy), got {self.eta}.")
        if not 0 < self.timestep_fraction <= 1:
            raise ValueError(f"timestep_fraction must be in (0, 1], got {self.timestep_fraction}.")
        if self.advantage_std not in ADVANTAGE_STD_SCOPES:
            raise ValueError(f"advantage_std must be one of {ADVANTAGE_STD_SCOPES}, got {self.advantage_std!r}.")
        for name in ("clip_range", "adv_clip_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.kl_beta < 0:
            raise ValueError(f"kl_beta must be >= 0, got {self.kl_beta}.")
        for name in ("num_inference_steps", "rollout_reuse"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.kl_beta > 0 and not self.use_lora:
            raise ValueError("kl_beta > 0 needs use_lora=True: the reference policy is the UNet without its LoRA.")

    @property
    def num_trained_steps(self) -> int:
        """Denoising steps trained per sample of a rollout."""
        return max(1, math.ceil(self.timestep_fraction * self.num_inference_steps))


@dataclass
class GRPORollout:
    """Stored trajectories of ``N = B * num_samples_per_image`` samples (group members adjacent), T policy steps
    (the stochastic denoising steps; a deterministic last step is not stored).

    Attributes:
        latents: (N, T, C, h, w) x_t before each step.
        next_latents: (N, T, C, h, w) the sampled x_{t-1}.
        log_probs: (N, T) float32 log-probabilities of the steps under the sampling policy.
        timesteps: (T,) the policy's timesteps of the stochastic steps (what the denoiser is called with).
        condition: the `SRCondition` of the N samples (the LR image and its noise level, shared within a group).
        rewards: (N,) float32 rewards of the final images.
        advantages: (N,) float32 clipped group-relative advantages.
        images: (N, 3, H, W) the SR images in [0, 1].
    """

    latents: torch.Tensor
    next_latents: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    condition: SRCondition
    rewards: torch.Tensor
    advantages: torch.Tensor
    images: torch.Tensor


class DiffusionGRPOTrainer(GeneratorTrainer):
    r"""GRPO ([DanceGRPO](https://huggingface.co/papers/2505.07818)) on a stochastic DDIM policy for diffusion SR
    generators, rewarded by FinPercep-RM.

    Example:

    ```python
    >>> from finpercep_hf.curriculum import CCLRewardCallback
    >>> from finpercep_hf.generators import SDUpscalerGenerator
    >>> from finpercep_hf.data import LRHRDataset
    >>> from finpercep_hf.trainers import DiffusionGRPOConfig, DiffusionGRPOTrainer
    >>> generator = SDUpscalerGenerator.from_pretrained("stabilityai/stable-diffusion-x4-upscaler")
    >>> trainer = DiffusionGRPOTrainer(
    ...     generator,
    ...     reward="runs/rm/finpercep-rm-stage0",
    ...     args=DiffusionGRPOConfig(output_dir="runs/grpo", num_samples_per_image=8, num_inference_steps=20, eta=1.0),
    ...     train_dataset=LRHRDataset.from_directory("hr_photos"),
    ...     callbacks=[CCLRewardCallback("0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1")],
    ... )
    >>> trainer.train()
    ```
    """

    method_name = "grpo"
    paper_url = "https://huggingface.co/papers/2505.07818"
    args: DiffusionGRPOConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = stochastic_policy(
            self.generator, self.args.num_inference_steps, self.args.eta, device=self.accelerator.device
        )
        if not any(self.policy.stochastic):
            raise ValueError("the sampling schedule has no stochastic step: raise num_inference_steps.")
        self.rollout_buffer: list[list] = []

    @torch.no_grad()
    def rollout(self, image_lr: torch.Tensor, rng: torch.Generator | None = None) -> GRPORollout:
        """Sample ``num_samples_per_image`` trajectories per LR image (B, 3, h, w) in [0, 1], reward them, compute
        advantages. ``rng`` defaults to the trainer's.

        The advantages use the rewards of every process (``advantage_std="global"`` is global over all of them).
        """
        args, generator, policy = self.args, self.generator, self.policy
        rng = self.rng if rng is None else rng
        condition = generator.encode_condition(image_lr, generator=rng).repeat(args.num_samples_per_image)
        latents = generator.prepare_latents(condition, generator=rng)
        steps = []
        for step_index, timestep in enumerate(policy.timesteps):
            model_output = generator.denoise(latents, timestep, condition)
            if policy.stochastic[step_index]:
                step = policy.step(model_output, step_index, latents, generator=rng)
                steps.append((latents, step.prev_sample, step.log_prob))
                latents = step.prev_sample
            else:
                latents = policy.deterministic_step(model_output, step_index, latents)
        images = generator.decode(latents)
        rewards = self.reward(images, differentiable=False)
        all_rewards = self.accelerator.gather(rewards)
        all_advantages = group_advantages(
            all_rewards.view(-1, args.num_samples_per_image), args.advantage_std, args.advantage_eps, args.adv_clip_max
        ).flatten()
        start = self.accelerator.process_index * rewards.shape[0]
        return GRPORollout(
            latents=torch.stack([s[0] for s in steps], dim=1),
            next_latents=torch.stack([s[1] for s in steps], dim=1),
            log_probs=torch.stack([s[2] for s in steps], dim=1),
            timesteps=policy.timesteps[policy.stochastic_indices].clone(),
            condition=condition,
            rewards=rewards,
            advantages=all_advantages[start : start + rewards.shape[0]],
            images=images,
        )

    def step_log_probs(self, rollout: GRPORollout, step_index: torch.Tensor, reference: bool = False):
        """Recompute one step per sample of a stored rollout under the current (or the reference) weights.

        ``step_index``: (N,) long, the step of each sample. Returns the `StepWithLogProb` of the stored next latents.
        """
        rows = torch.arange(step_index.shape[0], device=step_index.device)
        latents, next_latents = rollout.latents[rows, step_index], rollout.next_latents[rows, step_index]
        timesteps = rollout.timesteps[step_index]
        if reference:
            with torch.no_grad(), self.generator.reference_policy():
                model_output = self.generator.denoise(latents, timesteps, rollout.condition)
        else:
            model_output = self.generator.denoise(latents, timesteps, rollout.condition)
        schedule_index = self.policy.stochastic_indices.to(step_index.device)[step_index]
        return self.policy.step(model_output, schedule_index, latents, prev_sample=next_latents)

    def unit_loss(self, rollout: GRPORollout, step_index: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Clipped surrogate (+ ``kl_beta`` * KL to the reference) of one step per sample of ``rollout``."""
        step = self.step_log_probs(rollout, step_index)
        rows = torch.arange(step_index.shape[0], device=step_index.device)
        surrogate = clipped_surrogate_loss(
            step.log_prob, rollout.log_probs[rows, step_index], rollout.advantages, self.args.clip_range
        )
        loss = surrogate.loss
        logs = {"approx_kl": surrogate.approx_kl.item(), "clipfrac": surrogate.clipfrac.item()}
        if self.args.kl_beta > 0:
            reference = self.step_log_probs(rollout, step_index, reference=True)
            kl = gaussian_kl(step.prev_sample_mean, reference.prev_sample_mean, step.std).mean()
            loss = loss + self.args.kl_beta * kl
            logs["kl_ref"] = kl.item()
        return loss, logs

    def _training_units(self, rollout: GRPORollout) -> list[tuple[GRPORollout, torch.Tensor]]:
        """Store ``rollout`` for ``rollout_reuse`` micro-batches; the (rollout, step per sample) units to train now:
        ``num_trained_steps`` distinct policy steps per sample of every stored rollout, drawn from ``rng``."""
        self.rollout_buffer.append([rollout, self.args.rollout_reuse])
        units = []
        for stored, _ in self.rollout_buffer:
            num_samples, num_steps = stored.log_probs.shape
            draws = torch.rand(num_samples, num_steps, generator=self.rng, device=self.rng.device)
            order = torch.argsort(draws, dim=1).to(stored.log_probs.device)
            units += [(stored, order[:, j]) for j in range(min(self.args.num_trained_steps, num_steps))]
        for entry in self.rollout_buffer:
            entry[1] -= 1
        self.rollout_buffer = [entry for entry in self.rollout_buffer if entry[1] > 0]
        return units

    def training_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Sample a rollout, then back-propagate each trained (rollout, step) unit on its own (one UNet graph alive
        at a time); every unit but the last skips the gradient synchronisation. Returns the mean unit loss."""
        accelerator, model = self.accelerator, self.generator.trainable_model
        with accelerator.autocast():
            rollout = self.rollout(batch["image_lr"])
        units = self._training_units(rollout)
        totals: dict[str, float] = {}
        total = torch.zeros((), device=rollout.rewards.device)
        for index, (stored, step_index) in enumerate(units):
            last = index == len(units) - 1
            with nullcontext() if last else accelerator.no_sync(model):
                with accelerator.autocast():
                    loss, logs = self.unit_loss(stored, step_index)
                accelerator.backward(loss / len(units))
            total = total + loss.detach() / len(units)
            self._accumulate(totals, logs, len(units))
        return total, {
            **totals,
            "reward_mean": rollout.rewards.mean().item(),
            "reward_std": rollout.rewards.std().item(),
            "advantage_abs": rollout.advantages.abs().mean().item(),
        }

    @staticmethod
    def _accumulate(totals: dict[str, float], logs: dict[str, float], count: int) -> None:
        for key, value in logs.items():
            totals[key] = totals.get(key, 0.0) + value / count


__all__ = [
    "ADVANTAGE_STD_SCOPES",
    "DiffusionGRPOConfig",
    "GRPORollout",
    "DiffusionGRPOTrainer",
    "SurrogateOutput",
    "clipped_surrogate_loss",
    "group_advantages",
]
