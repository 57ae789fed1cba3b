"""DDPO reward (ddpo-pytorch, the DDPOTrainer that TRL removed): ``reward_fn(images, prompts, prompt_metadata)
-> (rewards, reward_metadata)``.

The trainer calls it (often in a thread pool) on each sampled batch -- ``images`` the pipeline's float NCHW tensor
in [0, 1] -- and turns ``rewards`` into a tensor with ``torch.as_tensor``.

```python
>>> from finpercep_hf.integrations import ddpo_reward_fn
>>> reward_fn = ddpo_reward_fn("finpercep-rm-stage3", device="cuda")
>>> rewards, reward_metadata = reward_fn(images, prompts, prompt_metadata)  # rewards: (B,) float32 tensor
```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from ..models import FinPercepRewardModel
from .common import DEFAULT_PDM_THRESHOLD, ToolkitImages, load_scorer, pdm_statistics, score_images


def ddpo_reward_fn(
    model: FinPercepRewardModel | str | os.PathLike,
    device: torch.device | str | None = None,
    pdm_threshold: float = DEFAULT_PDM_THRESHOLD,
) -> Callable[[ToolkitImages, Any, Any], tuple[torch.Tensor, dict[str, Any]]]:
    """A DDPO reward function: ``global_score`` of FinPercep-RM (higher is better, in [0, 1]).

    Returns ``reward_fn(images, prompts, prompt_metadata) -> (rewards, reward_metadata)`` with ``rewards`` a (B,)
    float32 CPU tensor and ``reward_metadata`` a dict of (B,) tensors: ``base_score`` and the map statistics
    ``pdm_mean``, ``pdm_max``, ``pdm_area`` (``pdm > pdm_threshold``; none at stage 0).
    """
    scorer = load_scorer(model, device)

    def reward_fn(images: ToolkitImages, prompts: Any, prompt_metadata: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        output = score_images(scorer, images)
        metadata = {"base_score": output.base_score.float().cpu()}
        metadata.update({name: value.cpu() for name, value in pdm_statistics(output.pdm, pdm_threshold).items()})
        return output.global_score.float().cpu(), metadata

    return reward_fn


__all__ = ["ddpo_reward_fn"]
