"""FinPercep-RM as a reward or metric in other toolkits, one small adapter per toolkit.

* [`flow_grpo_reward`] -- Flow-GRPO / DanceGRPO: ``fn(images, prompts, metadata) -> (scores, info)``.
* [`ddpo_reward_fn`] -- ddpo-pytorch and TRL's DDPOTrainer: ``reward_fn(images, prompts, prompt_metadata)
  -> (rewards, reward_metadata)``.
* [`FinPercepMetric`] -- a pyiqa-style metric object (``lower_better``, ``score_range``, ``as_loss``).
* TRL's ``reward_funcs`` convention is [`finpercep_hf.rewards.FinPercepReward`] itself
  (``reward(completions=[...]) -> list[float]``).

None of them imports its toolkit: each reproduces the calling convention only.
"""

from .common import images_to_pixel_values, pdm_statistics
from .ddpo import ddpo_reward_fn
from .flow_grpo import flow_grpo_reward
from .pyiqa_metric import FinPercepMetric

__all__ = ["FinPercepMetric", "ddpo_reward_fn", "flow_grpo_reward", "images_to_pixel_values", "pdm_statistics"]
