"""Diffusion-DPO for diffusion SR generators (Wallace et al. 2023, https://huggingface.co/papers/2311.12908).

One update on a batch of LR images, online mode (the default):

```
K candidates per LR image ~ pi_theta (no grad)        # generator.sample, num_inference_steps
rewards = R_k(candidates) (B, K)                       # the RM of the CCL stage in force
pairs = best vs worst per LR image (or all ordered pairs), ties dropped
x0_w, x0_l = candidate latents; shared noise eps and timestep t per pair
err = mean_{C,H,W} (denoise(x_t, t) - target)^2   for pi_theta and for pi_ref (= the UNet without its LoRA)
logits = (ref_w - ref_l) - (model_w - model_l);  loss = sigmoid | hinge | ipo (see `preference.py`)
```

Offline mode (``preference_source="offline"``) takes pre-ranked pairs from a dataset instead: items
``{"image_lr", "image_gt", "image_chosen", "image_rejected"}`` (see `finpercep_hf.data.PreferencePairDataset`, e.g.
FGR's ``image_gt`` or ``image_syn`` preferred over ``image_sr``); the chosen and rejected HR images are VAE-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..generators.base import SRCondition
from .base import GeneratorTrainer, GeneratorTrainerConfig
from .preference import DPO_LOSS_TYPES, PAIRING_MODES, DPOLossOutput, diffusion_dpo_loss, form_preference_pairs

PREFERENCE_SOURCES = ("online", "offline")


@dataclass
class DiffusionDPOConfig(GeneratorTrainerConfig):
    """[`DiffusionDPOTrainer`] arguments; ``beta_dpo`` multiplies the logits directly (scale: see `preference.py`)."""

    output_dir: str = field(default="runs/dpo", metadata={"help": "Checkpoints, logs, LoRA weights, card."})
    # Diffusion-DPO
    beta_dpo: float = field(default=2500.0, metadata={"help": "KL strength beta of Diffusion-DPO (2500)."})
    loss_type: str = field(default="sigmoid", metadata={"help": f"One of {DPO_LOSS_TYPES}."})
    preference_source: str = field(
        default="online",
        metadata={"help": "online: pairs ranked by the RM among sampled candidates; offline: pairs from the dataset."},
    )
    # Online pairs
    num_samples_per_image: int = field(default=4, metadata={"help": "Candidates K sampled per LR image (online)."})
    num_inference_steps: int = field(default=20, metadata={"help": "Sampling steps of the candidates (online)."})
    pairing: str = field(default="best_worst", metadata={"help": f"Pairs among the candidates: {PAIRING_MODES}."})
    min_reward_gap: float = field(
        default=0.0, metadata={"help": "Drop pairs whose reward gap is not larger than this (ties always dropped)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {self.loss_type!r}.")
        if self.preference_source not in PREFERENCE_SOURCES:
            raise ValueError(f"preference_source must be one of {PREFERENCE_SOURCES}, got {self.preference_source!r}.")
        if self.pairing not in PAIRING_MODES:
            raise ValueError(f"pairing must be one of {PAIRING_MODES}, got {self.pairing!r}.")
        if self.beta_dpo <= 0:
            raise ValueError(f"beta_dpo must be > 0, got {self.beta_dpo}.")
        if self.num_samples_per_image < 2:
            raise ValueError(f"num_samples_per_image must be >= 2 to form a pair, got {self.num_samples_per_image}.")
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}.")
        if self.min_reward_gap < 0:
            raise ValueError(f"min_reward_gap must be >= 0, got {self.min_reward_gap}.")
        if not self.use_lora:
            raise ValueError("Diffusion-DPO needs use_lora=True: the reference policy is the UNet without its LoRA.")


class DiffusionDPOTrainer(GeneratorTrainer):
    r"""Diffusion-DPO ([Wallace et al.](https://huggingface.co/papers/2311.12908)) for diffusion SR generators,
    rewarded online by FinPercep-RM (or trained on pre-ranked pairs).

    Example:

    ```python
    >>> from finpercep_hf.curriculum import CCLRewardCallback
    >>> from finpercep_hf.generators import SDUpscalerGenerator
    >>> from finpercep_hf.data import LRHRDataset
    >>> from finpercep_hf.trainers import DiffusionDPOConfig, DiffusionDPOTrainer
    >>> generator = SDUpscalerGenerator.from_pretrained("stabilityai/stable-diffusion-x4-upscaler")
    >>> trainer = DiffusionDPOTrainer(
    ...     generator,
    ...     reward="runs/rm/finpercep-rm-stage0",
    ...     args=DiffusionDPOConfig(output_dir="runs/dpo", num_samples_per_image=4, beta_dpo=2500),
    ...     train_dataset=LRHRDataset.from_directory("hr_photos"),
    ...     callbacks=[CCLRewardCallback("0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1")],
    ... )
    >>> trainer.train()
    ```
    """

    method_name = "diffusion-dpo"
    paper_url = "https://huggingface.co/papers/2311.12908"
    args: DiffusionDPOConfig

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.args.preference_source == "online":
            latents_w, latents_l, condition, weights, logs = self.online_pairs(batch["image_lr"])
        else:
            latents_w, latents_l, condition, weights, logs = self.offline_pairs(batch)
        output, loss_logs = self.preference_loss(latents_w, latents_l, condition)
        loss = (output.losses * weights).sum() / weights.sum().clamp(min=1)
        return loss, {**logs, **loss_logs}

    @torch.no_grad()
    def online_pairs(self, image_lr: torch.Tensor):
        """Sample ``num_samples_per_image`` SR images per LR image, reward them and pair them.

        Returns (latents_w, latents_l) (P, C, h, w), their shared `SRCondition` (P), per-pair weights (P,) and logs.
        When every group is tied one zero-weight pair is kept, so that every process runs the same forward pass.
        """
        args, generator = self.args, self.generator
        num_lr = image_lr.shape[0]
        candidates = generator.sample(
            image_lr.repeat_interleave(args.num_samples_per_image, dim=0),
            num_inference_steps=args.num_inference_steps,
            generator=self.rng,
        )
        rewards = self.reward(candidates.images, differentiable=False).view(num_lr, args.num_samples_per_image)
        pairs = form_preference_pairs(rewards, mode=args.pairing, min_reward_gap=args.min_reward_gap)
        winner, loser, group = pairs.winner, pairs.loser, pairs.group
        weights = torch.ones(len(pairs), device=rewards.device)
        if len(pairs) == 0:
            winner, loser, group = (torch.tensor([index], device=rewards.device) for index in (0, 1, 0))
            weights = torch.zeros(1, device=rewards.device)
        condition = generator.encode_condition(image_lr[group], generator=self.rng)
        logs = {
            "reward_mean": rewards.mean().item(),
            "reward_std": rewards.std().item(),
            "reward_gap": pairs.reward_gap.mean().item() if len(pairs) else 0.0,
            "num_pairs": float(len(pairs)),
        }
        return candidates.latents[winner], candidates.latents[loser], condition, weights, logs

    @torch.no_grad()
    def offline_pairs(self, batch: dict[str, torch.Tensor]):
        """VAE latents of the dataset's chosen/rejected HR images, the LR condition, unit weights and no logs."""
        for key in ("image_chosen", "image_rejected"):
            if key not in batch:
                raise ValueError(f"offline Diffusion-DPO needs batches with {key!r} (see PreferencePairDataset).")
        generator = self.generator
        latents_w = generator.encode_images(batch["image_chosen"])
        latents_l = generator.encode_images(batch["image_rejected"])
        condition = generator.encode_condition(batch["image_lr"], generator=self.rng)
        return latents_w, latents_l, condition, torch.ones(latents_w.shape[0], device=latents_w.device), {}

    def denoising_errors(
        self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, condition: SRCondition
    ) -> torch.Tensor:
        """Per-sample ``mean_{C,H,W} (denoise(x_t, t) - target)^2`` (B,) float32 of the current policy."""
        generator = self.generator
        noisy = generator.add_noise(latents, noise, timesteps)
        target = generator.training_target(latents, noise, timesteps)
        model_output = generator.denoise(noisy, timesteps, condition)
        return F.mse_loss(model_output.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))

    def preference_loss(
        self,
        latents_w: torch.Tensor,
        latents_l: torch.Tensor,
        condition: SRCondition,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
    ) -> tuple[DPOLossOutput, dict[str, float]]:
        """Diffusion-DPO loss of P pairs of clean latents (P, C, h, w) under their LR ``condition`` (P items).

        Winner and loser of a pair share the noise (P, C, h, w) and the timestep (P,) (random when not given).
        """
        if latents_w.shape != latents_l.shape or condition.batch_size != latents_w.shape[0]:
            raise ValueError(
                f"latents_w {tuple(latents_w.shape)}, latents_l {tuple(latents_l.shape)} and the condition "
                f"({condition.batch_size} items) must describe the same pairs."
            )
        num_pairs = latents_w.shape[0]
        rng = self.rng
        if noise is None:
            noise = torch.randn(latents_w.shape, generator=rng, device=rng.device).to(latents_w)
        if timesteps is None:
            num_train_timesteps = self.generator.scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, num_train_timesteps, (num_pairs,), generator=rng, device=rng.device)
            timesteps = timesteps.to(latents_w.device)
        # Interleave (w0, l0, w1, l1, ...) so that each pair meets its condition repeated twice in a row.
        latents = torch.stack([latents_w, latents_l], dim=1).flatten(0, 1)
        noise = noise.repeat_interleave(2, dim=0)
        timesteps = timesteps.repeat_interleave(2, dim=0)
        condition = condition.repeat(2)
        with torch.no_grad(), self.generator.reference_policy():
            ref_errors = self.denoising_errors(latents, noise, timesteps, condition).view(num_pairs, 2)
        model_errors = self.denoising_errors(latents, noise, timesteps, condition).view(num_pairs, 2)
        output = diffusion_dpo_loss(
            model_errors[:, 0],
            model_errors[:, 1],
            ref_errors[:, 0],
            ref_errors[:, 1],
            beta=self.args.beta_dpo,
            loss_type=self.args.loss_type,
        )
        logs = {
            "implicit_accuracy": output.implicit_accuracy.item(),
            "model_error": model_errors.detach().mean().item(),
            "ref_error": ref_errors.mean().item(),
        }
        return output, logs


__all__ = ["DiffusionDPOConfig", "DiffusionDPOTrainer", "PREFERENCE_SOURCES"]
