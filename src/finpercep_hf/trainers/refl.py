"""REFL, reward feedback learning (ImageReward, Xu et al. 2023, https://huggingface.co/papers/2304.05977).

One REFL update on a batch of LR images (ImageReward's ``ReFL.py``, every constant a [`REFLConfig`] field):

```
x_T ~ N(0, I); timesteps = scheduler.set_timesteps(num_inference_steps=40)
stop ~ U{min_stop_step=30, ..., 39}                     # a step among the last 10 (trainer.rng)
x_{t_stop} = denoise x_T for timesteps[:stop]             # no grad
x0_hat = predict_x0(UNet(x_{t_stop}, timesteps[stop]))  # one step with grad
image_sr = VAE.decode(x0_hat) in [0, 1]                 # differentiable
loss = relu(reward_offset - R_k(image_sr)).mean() * grad_scale    # offset 2, grad_scale 1e-3
```

With ``pretrain_loss=True`` the updates alternate as in ImageReward's Algorithm 1: odd-numbered updates use the
pre-training (denoising) loss on the HR images, ``MSE(UNet(x_t, t), target)`` with the generator's prediction type,
so one Algorithm-1 iteration is two optimizer updates.

A [`DirectSRGenerator`] (one-step diffusion SR, feed-forward SR network) has no rollout: REFL backpropagates the
reward through the whole generator, ``loss = (relu(reward_offset - R_k(G(lr))).mean() + fidelity) * grad_scale``,
with the generator's fidelity terms (``generators/fidelity.py``).

The rewards of FinPercep-RM lie in [0, 1], so with ImageReward's offset of 2 (chosen for its standardised rewards)
the hinge is never inactive and the loss is ``(2 - reward) * grad_scale``; lower ``reward_offset`` to use the hinge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..generators.base import DirectSRGenerator
from .base import GeneratorTrainer, GeneratorTrainerConfig


@dataclass
class REFLConfig(GeneratorTrainerConfig):
    """[`REFLTrainer`] arguments; defaults are ImageReward's ReFL."""

    output_dir: str = field(default="runs/refl", metadata={"help": "Checkpoints, logs, LoRA weights, card."})
    # REFL
    num_inference_steps: int = field(default=40, metadata={"help": "Sampling steps T of the REFL rollout (40)."})
    min_stop_step: int = field(
        default=30, metadata={"help": "The grad step index is drawn from [min_stop_step, T - 1] (30: the last 10)."}
    )
    reward_offset: float = field(default=2.0, metadata={"help": "Hinge offset of relu(offset - reward) (2)."})
    grad_scale: float = field(default=1e-3, metadata={"help": "Scale of the reward loss (ImageReward's 1e-3)."})
    # Pre-training loss
    pretrain_loss: bool = field(
        default=False, metadata={"help": "Alternate REFL updates with denoising-loss updates (Algorithm 1)."}
    )
    pretrain_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the denoising loss."})

    def __post_init__(self):
        super().__post_init__()
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}.")
        if self.pretrain_loss_weight < 0:
            raise ValueError(f"pretrain_loss_weight must be >= 0, got {self.pretrain_loss_weight}.")
        if not 0 <= self.min_stop_step < self.num_inference_steps:
            raise ValueError(
                f"min_stop_step must be in [0, num_inference_steps - 1 = {self.num_inference_steps - 1}], "
                f"got {self.min_stop_step}."
            )
        if self.grad_scale <= 0:
            raise ValueError(f"grad_scale must be > 0, got {self.grad_scale}.")


class REFLTrainer(GeneratorTrainer):
    r"""REFL ([ImageReward](https://huggingface.co/papers/2304.05977)) for diffusion SR generators.

    Example:

    ```python
    >>> from finpercep_hf.curriculum import CCLRewardCallback
    >>> from finpercep_hf.generators import SDUpscalerGenerator
    >>> from finpercep_hf.data import LRHRDataset
    >>> from finpercep_hf.trainers import REFLConfig, REFLTrainer
    >>> generator = SDUpscalerGenerator.from_pretrained("stabilityai/stable-diffusion-x4-upscaler")
    >>> trainer = REFLTrainer(
    ...     generator,
    ...     reward="runs/rm/finpercep-rm-stage0",
    ...     args=REFLConfig(output_dir="runs/refl", max_train_steps=1500),
    ...     train_dataset=LRHRDataset.from_directory("hr_photos"),
    ...     callbacks=[CCLRewardCallback("0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1")],
    ... )
    >>> trainer.train()
    ```
    """

    method_name = "refl"
    paper_url = "https://huggingface.co/papers/2304.05977"
    args: REFLConfig

    def is_pretrain_step(self) -> bool:
        """Whether the current update uses the pre-training loss (odd updates when ``pretrain_loss``)."""
        return self.args.pretrain_loss and self.state.global_step % 2 == 1

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.is_pretrain_step():
            return self.pretrain_loss(batch)
        return self.refl_loss(batch)

    def rollout_to_stop_step(self, image_lr: torch.Tensor, stop_step: int):
        """Denoise from x_T without grad up to ``timesteps[stop_step]``; returns (latents, timestep, condition)."""
        generator = self.generator
        condition = generator.encode_condition(image_lr, generator=self.rng)
        latents = generator.prepare_latents(condition, generator=self.rng)
        generator.scheduler.set_timesteps(self.args.num_inference_steps, device=latents.device)
        timesteps = generator.scheduler.timesteps
        with torch.no_grad():
            for timestep in timesteps[:stop_step]:
                model_output = generator.denoise(latents, timestep, condition)
                latents = generator.scheduler.step(model_output, timestep, latents, generator=self.rng).prev_sample
        return latents, timesteps[stop_step], condition

    def draw_stop_step(self) -> int:
        """The grad step index, uniform in ``[min_stop_step, num_inference_steps - 1]``, drawn from ``self.rng``."""
        low, high = self.args.min_stop_step, self.args.num_inference_steps
        return int(torch.randint(low, high, (), generator=self.rng, device=self.rng.device))

    def refl_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """REFL loss of one micro-batch: ``relu(reward_offset - R_k(decode(x0_hat))).mean() * grad_scale``."""
        if isinstance(self.generator, DirectSRGenerator):
            return self.direct_refl_loss(batch)
        args = self.args
        stop_step = self.draw_stop_step()
        latents, timestep, condition = self.rollout_to_stop_step(batch["image_lr"], stop_step)
        x0 = self.generator.predict_x0_with_grad(latents, timestep, condition)
        image_sr = self.generator.decode(x0)
        rewards = self.reward(image_sr)
        loss = F.relu(args.reward_offset - rewards).mean() * args.grad_scale
        return loss, {"reward": rewards.detach().mean().item(), "stop_step": float(stop_step)}

    def direct_refl_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """REFL on a [`DirectSRGenerator`] (one-step diffusion SR, feed-forward network): the reward gradient flows
        through the whole generator, ``(relu(reward_offset - R_k(G(lr))).mean() + fidelity) * grad_scale``."""
        image_sr = self.generator.generate_with_grad(batch["image_lr"])
        rewards = self.reward(image_sr)
        fidelity, fidelity_logs = self.generator.fidelity_loss(image_sr, batch)
        loss = (F.relu(self.args.reward_offset - rewards).mean() + fidelity) * self.args.grad_scale
        return loss, {"reward": rewards.detach().mean().item(), **fidelity_logs}

    def pretrain_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Denoising loss on the HR images: MSE between the model output and its target at a random t."""
        generator = self.generator
        with torch.no_grad():
            latents = generator.encode_images(batch["image_gt"])
        noise = torch.randn(latents.shape, generator=self.rng, device=self.rng.device).to(latents)
        num_train_timesteps = generator.scheduler.config.num_train_timesteps
        timesteps = torch.randint(
            0, num_train_timesteps, (latents.shape[0],), generator=self.rng, device=self.rng.device
        ).to(latents.device)
        noisy = generator.add_noise(latents, noise, timesteps)
        condition = generator.encode_condition(batch["image_lr"], generator=self.rng)
        model_output = generator.denoise(noisy, timesteps, condition)
        target = generator.training_target(latents, noise, timesteps)
        loss = F.mse_loss(model_output.float(), target.float()) * self.args.pretrain_loss_weight
        return loss, {"pretrain_loss": loss.detach().item()}


__all__ = ["REFLConfig", "REFLTrainer"]
