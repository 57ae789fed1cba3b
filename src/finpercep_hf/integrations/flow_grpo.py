"""Flow-GRPO / DanceGRPO reward: a factory returning ``fn(images, prompts, metadata) -> (scores, info)``.

Those toolkits build each reward with a factory (``aesthetic_score(device)``, ...) and call the returned function
on every sampled batch, then combine ``scores`` over rewards by weight (``multi_score``). ``images`` arrive as the
pipeline's float NCHW tensor in [0, 1] (training) or as uint8 NHWC arrays (evaluation).

```python
>>> from finpercep_hf.integrations import flow_grpo_reward
>>> reward_fn = flow_grpo_reward("finpercep-rm-stage3", device="cuda")
>>> scores, info = reward_fn(images, prompts, metadata)  # scores: (B,) float32 ndarray in [0, 1]
>>> info["pdm_area"]  # (B,) fraction of each image the map flags (pdm > 0.5)
```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..models import FinPercepRewardModel
from .common import DEFAULT_PDM_THRESHOLD, ToolkitImages, load_scorer, pdm_statistics, score_images

SCORE_NAMES = ("global_score", "base_score")


def flow_grpo_reward(
    model: FinPercepRewardModel | str | os.PathLike,
    device: torch.device | str | None = None,
    score: str = "global_score",
    pdm_threshold: float = DEFAULT_PDM_THRESHOLD,
) -> Callable[[ToolkitImages, Any, Any], tuple[np.ndarray, dict[str, np.ndarray]]]:
    """A Flow-GRPO / DanceGRPO reward function scoring with FinPercep-RM.

    Args:
        model: a [`FinPercepRewardModel`] or a checkpoint directory / Hub id (frozen, put in eval mode).
        device: where to run the model (default: where it is).
        score: ``"global_score"`` (the paper's reward) or ``"base_score"`` (CLIP-IQA).
        pdm_threshold: the map value above which a pixel counts in ``info["pdm_area"]``.

    Returns:
        ``fn(images, prompts, metadata) -> (scores, info)``: ``scores`` (B,) float32 ndarray in [0, 1], higher is
        better; ``info`` holds ``pdm_mean``, ``pdm_max``, ``pdm_area`` as (B,) float32 ndarrays (empty at stage 0).
        ``prompts`` and ``metadata`` are accepted and unused (the reward is image-only).
    """
    if score not in SCORE_NAMES:
        raise ValueError(f"score must be one of {SCORE_NAMES}, got {score!r}.")
    scorer = load_scorer(model, device)

    def reward_fn(images: ToolkitImages, prompts: Any, metadata: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        output = score_images(scorer, images)
        info = {name: value.cpu().numpy() for name, value in pdm_statistics(output.pdm, pdm_threshold).items()}
        return getattr(output, score).float().cpu().numpy(), info

    return reward_fn


__all__ = ["flow_grpo_reward"]
