"""A convolutional encoder for FinPercep-RM (``FinPercepConfig(encoder_type="backbone")``): an `AutoBackbone`
feature pyramid with CLIP-IQA-style learned anchor embeddings.

The paper's encoder is a pre-trained CLIP; where no pre-trained weights can be had (the offline quickstart), a
small ViT trained from scratch on a dozen photos has no locality prior and barely localises. This encoder keeps
the CLIP-IQA *form* of RM_0 and swaps the tower:

```
pixel_values (B,3,H,W) in [0,1] --normalise--> AutoBackbone (e.g. ConvNeXt) --> four stages {f_1..f_4}
[GAP(f_1), .., GAP(f_4)] --concatenate--> visual_projection --L2--> image_embeds (B, D)
base_score = mean over anchor pairs of softmax(logit_scale * cos(image_embeds, [good, bad]))[good]
```

The anchor pairs ``prompt_embeds`` (``num_pairs, 2, D``) play the role of CLIP-IQA's "Good photo." / "Bad photo."
text embeddings, but are learned (with the tower) when RM_0 is pre-trained as a global quality model
(`finpercep_hf.trainers.global_iqa`). The four stages go to the DPT-style decoder as they are (they already form a
pyramid at 1/4 .. 1/32 of the input for ConvNeXt and ResNet). The embedding pools every stage, not only the last,
so that fine-scale statistics (noise, blocking, blur) reach the global score directly. A user with real weights can
put a pre-trained ConvNeXt's `backbone_config` here and load its weights into ``encoder.vision_model``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoBackbone, ConvNextConfig, ResNetConfig

from .clip_iqa import FinPercepCLIPIQAEncoder
from .configuration_finpercep import FinPercepConfig

# Linear/conv layers of each backbone family that the curriculum's stage adapters (LoRA) wrap.
BACKBONE_LORA_TARGETS = {
    "convnext": ["pwconv1", "pwconv2"],
    "convnextv2": ["pwconv1", "pwconv2"],
    "resnet": ["convolution"],
}
# Both families downsample by 4 in the stem and by 2 at every later stage.
STEM_STRIDE = 4


def small_convnext_config(
    hidden_sizes: tuple[int, ...] = (24, 48, 96, 192), depths: tuple[int, ...] = (1, 1, 3, 1)
) -> ConvNextConfig:
    """A small ConvNeXt `AutoBackbone` config returning its four stages (the offline quickstart's encoder)."""
    if len(hidden_sizes) != 4 or len(depths) != 4:
        raise ValueError(f"hidden_sizes and depths need 4 entries each, got {hidden_sizes}, {depths}.")
    return ConvNextConfig(
        hidden_sizes=list(hidden_sizes),
        depths=list(depths),
        out_features=["stage1", "stage2", "stage3", "stage4"],
        # ConvNeXt's default 1e-6 starts every block as the identity: the tower is then nearly linear and its pooled
        # features carry little more than the mean colour, which made from-scratch training crawl (measured).
        layer_scale_init_value=1.0,
    )


def small_resnet_config(
    hidden_sizes: tuple[int, ...] = (24, 48, 96, 192), depths: tuple[int, ...] = (1, 1, 2, 1)
) -> ResNetConfig:
    """A small ResNet (basic blocks) `AutoBackbone` config returning its four stages.

    The offline quickstart's default encoder: trained from scratch as RM_0's global quality model it ranked clean
    over globally degraded held-out crops in 0.82 of pairs after 500 steps, where the ConvNeXt of
    `small_convnext_config` stayed at 0.53-0.57 (its per-position LayerNorms left it blind to noise: clean > noisy
    in 0.0-0.36 of pairs). Its BatchNorms use batch statistics in training mode and running ones in eval mode.
    """
    if len(hidden_sizes) != 4 or len(depths) != 4:
        raise ValueError(f"hidden_sizes and depths need 4 entries each, got {hidden_sizes}, {depths}.")
    return ResNetConfig(
        embedding_size=hidden_sizes[0],
        hidden_sizes=list(hidden_sizes),
        depths=list(depths),
        layer_type="basic",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )


class FinPercepBackboneIQAEncoder(nn.Module):
    """`AutoBackbone` tower + visual projection + learned anchor embeddings; same interface as the CLIP encoder.

    Forward input ``pixel_values``: (B, 3, H, W) float in [0, 1], H and W multiples of `patch_size` (the reward
    model pads). Returns ``base_score`` (B,) in [0, 1], ``image_embeds`` (B, projection_dim) L2-normalised, and the
    four stage grids ``{f_i}``, (B, C_i, H / s_i, W / s_i) with ``C_i = config.encoder_feature_channels[i]``.
    """

    def __init__(self, config: FinPercepConfig):
        super().__init__()
        self.config = config
        self.vision_model = AutoBackbone.from_config(config.backbone_config)
        self.visual_projection = nn.Linear(sum(config.encoder_feature_channels), config.projection_dim, bias=False)
        # (num_pairs, 2, projection_dim): [good, bad] anchors, learned by the global-quality pre-training of RM_0.
        self.prompt_embeds = nn.Parameter(torch.zeros(len(config.prompt_pairs), 2, config.projection_dim))
        self.register_buffer("logit_scale", torch.tensor(float(config.logit_scale_init)))

    @property
    def patch_size(self) -> int:
        """The backbone's total stride: inputs are padded to a multiple of it."""
        return STEM_STRIDE * 2 ** (len(self.config.backbone_config.hidden_sizes) - 1)

    @property
    def lora_target_modules(self) -> list[str]:
        """Module names inside ``vision_model`` that the curriculum's LoRA adapters wrap."""
        model_type = self.config.backbone_config.model_type
        if model_type not in BACKBONE_LORA_TARGETS:
            raise ValueError(
                f"no LoRA targets known for backbone {model_type!r}; known: {sorted(BACKBONE_LORA_TARGETS)}."
            )
        return BACKBONE_LORA_TARGETS[model_type]

    def train(self, mode: bool = True) -> FinPercepBackboneIQAEncoder:
        """Train mode, except for frozen BatchNorm layers (weights without gradients, e.g. stages >= 1 of the
        curriculum): those keep their running statistics, so a frozen encoder computes what RM_0 computed."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.weight.requires_grad:
                module.eval()
        return self

    # The same [0, 1] -> normalised pixels and anchor scoring as the CLIP-IQA encoder.
    normalize_pixels = FinPercepCLIPIQAEncoder.normalize_pixels
    score_embeddings = FinPercepCLIPIQAEncoder.score_embeddings

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        feature_maps = tuple(self.vision_model(self.normalize_pixels(pixel_values)).feature_maps)
        pooled = torch.cat([grid.mean(dim=(2, 3)) for grid in feature_maps], dim=1)
        image_embeds = F.normalize(self.visual_projection(pooled), dim=-1)
        return self.score_embeddings(image_embeds), image_embeds, feature_maps


__all__ = ["BACKBONE_LORA_TARGETS", "FinPercepBackboneIQAEncoder", "small_convnext_config", "small_resnet_config"]
