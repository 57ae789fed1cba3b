"""The CLIP-IQA encoder of FinPercep-RM (paper Sec. 3.2 "Encoder"; CLIP-IQA: Wang et al., AAAI 2023).

CLIP-IQA scores an image by the softmax of ``logit_scale * cos(image_embed, [pos_embed, neg_embed])`` over an
antonym prompt pair ("Good photo." / "Bad photo."), taking the positive probability and averaging over pairs.
Only the *text embeddings* of the prompts are needed, so they are computed once (``from_clip``) and stored as a
frozen parameter (``requires_grad=False``; a parameter rather than a buffer so that a device map that splits the
encoder places it): no text tower at scoring time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionModel
from transformers.utils.output_capturing import maybe_install_capturing_hooks

from .configuration_finpercep import FinPercepConfig


class FinPercepCLIPIQAEncoder(nn.Module):
    """CLIP vision tower + visual projection + stored prompt embeddings.

    Forward input ``pixel_values``: (B, 3, H, W) float in [0, 1], H and W multiples of the patch size (the reward
    model crops). Returns ``base_score`` (B,) in [0, 1], ``image_embeds`` (B, projection_dim) L2-normalised, and the
    multi-scale features ``{f_i}`` as four grids (B, hidden_size, H / patch, W / patch), channels-last.
    """

    def __init__(self, config: FinPercepConfig):
        super().__init__()
        self.config = config
        vision_config = config.vision_config
        self.vision_model = CLIPVisionModel._from_config(vision_config)
        # The hooks that collect hidden states are otherwise installed at the first call, which `torch.compile`
        # cannot trace (fullgraph=True would fail on a model that never ran eagerly).
        maybe_install_capturing_hooks(self.vision_model)
        self.visual_projection = nn.Linear(vision_config.hidden_size, config.projection_dim, bias=False)
        num_pairs = len(config.prompt_pairs)
        # (num_pairs, 2, projection_dim): L2-normalised text embeddings of [positive, negative] prompts.
        self.prompt_embeds = nn.Parameter(torch.zeros(num_pairs, 2, config.projection_dim), requires_grad=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)), requires_grad=False)

    @property
    def patch_size(self) -> int:
        return self.config.vision_config.patch_size

    def normalize_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> CLIP-normalised pixels, differentiable."""
        mean = torch.tensor(self.config.image_mean, device=pixel_values.device, dtype=pixel_values.dtype)
        std = torch.tensor(self.config.image_std, device=pixel_values.device, dtype=pixel_values.dtype)
        return (pixel_values - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)

    def score_embeddings(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """CLIP-IQA score of L2-normalised image embeddings (B, D) -> (B,) in [0, 1]."""
        prompts = F.normalize(self.prompt_embeds.to(image_embeds), dim=-1)
        logits = self.logit_scale.to(image_embeds) * torch.einsum("bd,pkd->bpk", image_embeds, prompts)
        return logits.softmax(dim=-1)[..., 0].mean(dim=-1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        height, width = pixel_values.shape[-2:]
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        outputs = self.vision_model(
            pixel_values=self.normalize_pixels(pixel_values),
            interpolate_pos_encoding=True,
            output_hidden_states=True,
            return_dict=True,
        )
        image_embeds = F.normalize(self.visual_projection(outputs.pooler_output), dim=-1)
        base_score = self.score_embeddings(image_embeds)
        # (B, 1 + h*w, C) tokens -> (B, C, h, w) grids as channels-last views (no copy): the decoder's convolutions
        # run channels-last, the faster layout for them on GPUs (cuDNN) and CPUs (oneDNN).
        feature_maps = tuple(
            outputs.hidden_states[layer][:, 1:, :]
            .reshape(pixel_values.shape[0], grid_h, grid_w, -1)
            .permute(0, 3, 1, 2)
            for layer in self.config.feature_layers
        )
        return base_score, image_embeds, feature_maps


__all__ = ["FinPercepCLIPIQAEncoder"]
