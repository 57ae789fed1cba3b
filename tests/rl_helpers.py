"""Helpers shared by the generator-RL tests."""

import torch


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Toy reward: mean brightness, (B, 3, H, W) in [0, 1] -> (B,)."""
    return images.mean(dim=(1, 2, 3))
