"""Reward functions for generator RL: SR images (B, 3, H, W) float in [0, 1] -> rewards (B,), higher is better.

* [`FinPercepReward`]: ``global_score`` (S_fgc-global) of RM_k, the paper's reward R_k (Sec. 3.5.2).
* [`BaseIQAReward`]: ``base_score`` alone (CLIP-IQA), the paper's "w/ IQA" baseline of Tables 1 and 3.
* [`DecoupledReward`]: ablation B of Table 4, ``lambda_1 * base_score + lambda_2 * (1 - max(pdm))``.
* [`CallableReward`]: any function ``images -> (B,)`` scores.

Each is differentiable by default (REFL back-propagates through it) and also callable TRL-style,
``reward(completions=[PIL images or (3, H, W) tensors]) -> list[float]`` with no grad. Following TRL's
``reward_funcs``, [`as_reward_function`] accepts a reward function, a [`FinPercepRewardModel`], a checkpoint
directory or Hub id, or a plain callable. The model inside can be swapped (``set_model``), which is how the
curriculum callback moves the generator from RM_0 to RM_k.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import nn

from .images import pil_to_tensor
from .models import FinPercepOutput, FinPercepRewardModel

REWARD_TYPES = ("finpercep", "base_iqa", "decoupled")


def load_reward_model(name_or_path: str) -> FinPercepRewardModel:
    """A frozen, eval-mode FinPercep-RM from a checkpoint directory or Hub id."""
    return FinPercepRewardModel.from_pretrained(name_or_path).eval().requires_grad_(False)


def stack_completions(completions: Sequence[Image.Image | torch.Tensor]) -> torch.Tensor:
    """PIL images or (3, H, W) tensors in [0, 1], all the same size -> (B, 3, H, W) float32."""
    tensors = [pil_to_tensor(item) if isinstance(item, Image.Image) else item for item in completions]
    sizes = {tuple(tensor.shape) for tensor in tensors}
    if len(sizes) != 1:
        raise ValueError(f"completions must all have the same shape to be scored as a batch, got {sorted(sizes)}.")
    return torch.stack(tensors).float()


class RewardFunction:
    """Base class: a frozen scorer of images in [0, 1]. Subclasses implement `compute`."""

    name = "reward"

    def __init__(self, model: nn.Module | Callable | None, source: str | None = None):
        self.model = model
        self.source = source

    def set_model(self, model: nn.Module | Callable, source: str | None = None) -> None:
        """Replace the scoring model (curriculum stage switch); the old one is released.

        ``source`` records the checkpoint it came from (the curriculum callback skips reloading it).
        """
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.model, self.source = model, source

    def to(self, device: torch.device | str) -> RewardFunction:
        if isinstance(self.model, nn.Module):
            self.model.to(device)
        return self

    def model_outputs(self, images: torch.Tensor) -> FinPercepOutput | None:
        """The RM's full output (``global_score``, ``base_score``, ``pdm``) for the monitor; None for callables."""
        if not isinstance(self.model, FinPercepRewardModel):
            return None
        return self.model(images.float())

    def compute(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, differentiable: bool = True) -> torch.Tensor:
        """Rewards (B,) float32 of ``images`` (B, 3, H, W) float in [0, 1]; with grad unless not ``differentiable``."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.name}: images must be a (B, 3, H, W) tensor in [0, 1], got {shape}.")
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            rewards = self.compute(images)
        if rewards.shape != (images.shape[0],):
            raise ValueError(f"{self.name}: expected rewards of shape ({len(images)},), got {tuple(rewards.shape)}.")
        return rewards.float()

    def __call__(
        self,
        images: torch.Tensor | None = None,
        *,
        completions: Sequence[Image.Image | torch.Tensor] | None = None,
        differentiable: bool = True,
        **kwargs,
    ) -> torch.Tensor | list[float]:
        """``reward(images)`` -> (B,) tensor; TRL-style ``reward(completions=..., **kwargs)`` -> list[float]."""
        if completions is not None:
            device = next(self.model.parameters()).device if isinstance(self.model, nn.Module) else "cpu"
            with torch.no_grad():
                return self.forward(stack_completions(completions).to(device), differentiable=False).tolist()
        if images is None:
            raise ValueError(f"{self.name}: pass images=(B, 3, H, W) tensor or completions=[...].")
        return self.forward(images, differentiable=differentiable)


class FinPercepReward(RewardFunction):
    """R_k = ``global_score`` of RM_k (S_fgc-global; equal to ``base_score`` for RM_0). Range [0, 1]."""

    name = "finpercep"

    def compute(self, images: torch.Tensor) -> torch.Tensor:
        return self.model_outputs(images).global_score


class BaseIQAReward(RewardFunction):
    """``base_score`` (CLIP-IQA) of the RM's encoder alone, whatever the stage. Range [0, 1]."""

    name = "base_iqa"

    def compute(self, images: torch.Tensor) -> torch.Tensor:
        return self.model_outputs(images).base_score


class DecoupledReward(RewardFunction):
    """Ablation B (Table 4): ``lambda_1 * base_score + lambda_2 * (1 - max(pdm))``, range [0, lambda_1 + lambda_2].

    RM_0 has no map, so at stage 0 the reward is ``base_score`` (the stable start of the curriculum).
    """

    name = "decoupled"

    def __init__(
        self, model: FinPercepRewardModel | None, source: str | None = None, weights: tuple[float, float] = (0.5, 0.5)
    ):
        super().__init__(model, source)
        if len(weights) != 2:
            raise ValueError(f"weights must be (lambda_1, lambda_2), got {weights}.")
        self.weights = tuple(float(w) for w in weights)

    def compute(self, images: torch.Tensor) -> torch.Tensor:
        output = self.model_outputs(images)
        if output.pdm is None:
            return output.base_score
        lambda_1, lambda_2 = self.weights
        return lambda_1 * output.base_score + lambda_2 * (1.0 - output.pdm.amax(dim=(1, 2, 3)))


class CallableReward(RewardFunction):
    """Wraps ``fn(images (B, 3, H, W) in [0, 1]) -> (B,)`` (tensor or list of floats); no model to swap."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor | Sequence[float]], name: str | None = None):
        super().__init__(fn)
        self.name = name or getattr(fn, "__name__", "callable")

    def compute(self, images: torch.Tensor) -> torch.Tensor:
        rewards = self.model(images)
        return rewards if isinstance(rewards, torch.Tensor) else torch.tensor(list(rewards), device=images.device)


REWARD_CLASSES = {"finpercep": FinPercepReward, "base_iqa": BaseIQAReward, "decoupled": DecoupledReward}


def as_reward_function(
    reward: RewardFunction | FinPercepRewardModel | str | Callable, reward_type: str = "finpercep"
) -> RewardFunction:
    """A reward function from a reward function, a FinPercep-RM, a checkpoint path/Hub id or a plain callable.

    ``reward_type`` ("finpercep", "base_iqa", "decoupled") picks how a model or checkpoint is turned into a reward.
    """
    if isinstance(reward, RewardFunction):
        return reward
    if reward_type not in REWARD_CLASSES:
        raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {reward_type!r}.")
    if isinstance(reward, str):
        return REWARD_CLASSES[reward_type](load_reward_model(reward), source=reward)
    if isinstance(reward, FinPercepRewardModel):
        return REWARD_CLASSES[reward_type](reward.eval().requires_grad_(False))
    if callable(reward):
        return CallableReward(reward)
    raise TypeError(
        f"reward must be a RewardFunction, a FinPercepRewardModel, a checkpoint path or a callable, "
        f"got {type(reward).__name__}."
    )


__all__ = [
    "BaseIQAReward",
    "CallableReward",
    "DecoupledReward",
    "FinPercepReward",
    "REWARD_TYPES",
    "RewardFunction",
    "as_reward_function",
    "load_reward_model",
    "stack_completions",
]
