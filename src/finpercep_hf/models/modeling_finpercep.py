"""FinPercep-RM (paper Sec. 3.2, Eq. 1-2): a global score that is coupled to a Perceptual Degradation Map.

Data flow of [`FinPercepRewardModel.forward`]:

```
pixel_values (B,3,H,W) in [0,1] --crop to patch multiple--> CLIP-IQA encoder --> base_score (B,), {f_1..f_4}
{f_i} --DPT reassembly (x4, x2, x1, x1/2)--> top-down fusion --> refine blocks --> [+ pixel branch] --> head
    --> map over the crop
map over the crop --extend over the < patch edge rows/columns--> pdm (B,1,H,W) in [0,1]
f_4 * interpolate(pdm) --LayerNorm, mean pool, MLP--> delta --> global_score = sigmoid(logit(base_score) + delta)
```

The crop is what CLIP's stride-``patch`` patch convolution does anyway, so ``base_score`` is CLIP-IQA's at every size.
The forward has no data-dependent branch: it compiles with ``torch.compile(fullgraph=True)`` and exports with
``torch.export`` (static or dynamic H, W, batch); the pixel-range check runs in eager mode only.

The decoder and score head exist from stage 1 on. Every block that a stage adds (score MLP's last layer, refine
blocks' last conv) is zero-initialised, so growth is function-preserving.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, CLIPTokenizer, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbone_encoder import FinPercepBackboneIQAEncoder
from .clip_iqa import FinPercepCLIPIQAEncoder
from .configuration_finpercep import FinPercepConfig

LOGIT_EPS = 1e-6
# Tolerance on the [0, 1] pixel range: generator outputs clamp to it; anything far outside is a caller's bug
# (0-255 or [-1, 1] images).
PIXEL_RANGE_TOLERANCE = 0.05


def check_pixel_range(pixel_values: torch.Tensor) -> None:
    """Raise a `ValueError` unless ``pixel_values`` is finite and within [0, 1] (up to `PIXEL_RANGE_TOLERANCE`).

    A data-dependent check (it reads the values): the model runs it in eager mode only; compiled and exported
    graphs skip it, and the image processor and pipeline validate their inputs themselves.
    """
    low, high = torch.aminmax(pixel_values.detach())
    if not (low >= -PIXEL_RANGE_TOLERANCE and high <= 1 + PIXEL_RANGE_TOLERANCE):
        raise ValueError(
            f"pixel_values must be finite and in [0, 1], got min {low.item():.4g}, max {high.item():.4g} "
            "(NaN/Inf input, or 0-255 / [-1, 1] images: convert with the FinPercep image processor)."
        )


class FinPercepCheckpointError(OSError):
    """A checkpoint (CLIP, FinPercep-RM, ...) could not be loaded; the message says which and how to supply it."""


def checkpoint_error(name_or_path: str, what: str, cause: Exception) -> FinPercepCheckpointError:
    """Build the error raised when ``name_or_path`` cannot be loaded (offline, missing, incomplete)."""
    local_dir = "./" + name_or_path.rstrip("/").split("/")[-1]
    return FinPercepCheckpointError(
        f"Could not load the {what} '{name_or_path}': {type(cause).__name__}: {str(cause).splitlines()[0]}\n"
        f"Supply it as a local directory (e.g. `hf download {name_or_path} --local-dir {local_dir}`"
        " on a machine with Hub access, then pass that directory), or unset HF_HUB_OFFLINE if this machine can reach "
        "the Hub."
    )


@dataclass
class FinPercepOutput(ModelOutput):
    """Output of [`FinPercepRewardModel`].

    Args:
        global_score (`torch.FloatTensor` of shape `(B,)`): S_fgc-global in [0, 1], higher is better.
        base_score (`torch.FloatTensor` of shape `(B,)`): the CLIP-IQA score of the same image, in [0, 1].
        pdm (`torch.FloatTensor` of shape `(B, 1, H, W)`, *optional*): Perceptual Degradation Map in [0, 1],
            larger = more likely/stronger local defect. `None` at stage 0.
        pdm_logits (`torch.FloatTensor` of shape `(B, 1, H, W)`, *optional*): the map before the sigmoid.
        image_embeds (`torch.FloatTensor` of shape `(B, projection_dim)`): L2-normalised CLIP image embedding.
        feature_maps (`tuple(torch.FloatTensor)`, *optional*): the four encoder grids `{f_i}`, each
            `(B, hidden_size, H', W')`, returned when `output_feature_maps=True`.
    """

    global_score: torch.FloatTensor | None = None
    base_score: torch.FloatTensor | None = None
    pdm: torch.FloatTensor | None = None
    pdm_logits: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    feature_maps: tuple[torch.FloatTensor, ...] | None = None


class FinPercepResidualConvUnit(nn.Module):
    """``x + conv(relu(conv(relu(x))))``; with ``zero_init`` the block starts as the identity."""

    def __init__(self, channels: int, zero_init: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2._finpercep_zero_init = zero_init

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.conv2(F.relu(self.conv1(F.relu(hidden))))


class FinPercepReassemble(nn.Module):
    """Projects a ViT grid (B, C_vit, h, w) to ``channels`` and resamples it by ``factor`` in {4, 2, 1, 0.5}."""

    def __init__(self, in_channels: int, channels: int, factor: float):
        super().__init__()
        self.project = nn.Conv2d(in_channels, channels, 1)
        if factor > 1:
            self.resample = nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
        elif factor == 1:
            self.resample = nn.Identity()
        else:
            self.resample = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.resample(self.project(grid))


class FinPercepFusionBlock(nn.Module):
    """DPT fusion: upsample the coarser path to the skip's size, add the refined skip, refine."""

    def __init__(self, channels: int):
        super().__init__()
        self.skip_unit = FinPercepResidualConvUnit(channels)
        self.out_unit = FinPercepResidualConvUnit(channels)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        coarse = F.interpolate(coarse, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.out_unit(coarse + self.skip_unit(skip))


class FinPercepPixelFusion(nn.Module):
    """The decoder's full-resolution level: ``unit(upsample(project(hidden)) + stem(pixels))``.

    Inputs: ``hidden`` (B, channels, h, w), the fused pyramid at its finest level; ``pixels`` (B, 3, H, W), the
    normalised input. Output: (B, pixel_channels, H, W). The stem's two 3x3 convolutions see the pixels at stride 1,
    so the map can follow defect edges finer than the encoder's stride.
    """

    def __init__(self, channels: int, pixel_channels: int):
        super().__init__()
        self.project = nn.Conv2d(channels, pixel_channels, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(3, pixel_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(pixel_channels, pixel_channels, 3, padding=1),
        )
        self.unit = FinPercepResidualConvUnit(pixel_channels)

    def forward(self, hidden: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        hidden = F.interpolate(self.project(hidden), size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        return self.unit(hidden + self.stem(pixels))


class FinPercepDecoder(nn.Module):
    """DPT-style decoder: four ViT grids at 1/patch -> pyramid at patch/4 .. patch/32 of the grid -> map logits.

    Input: four grids (B, hidden_size, h, w) and, with ``config.decoder_pixel_channels > 0``, the normalised pixels
    (B, 3, H, W) they came from. Output: logits (B, 1, 4h, 4w) at the finest pyramid level (1/4 of the input
    resolution for patch 16), to be upsampled to the image by the model; with the pixel branch, (B, 1, H, W).
    """

    def __init__(self, config: FinPercepConfig):
        super().__init__()
        channels = config.decoder_channels
        self.reassemble = nn.ModuleList(
            FinPercepReassemble(in_channels, channels, factor)
            for in_channels, factor in zip(config.encoder_feature_channels, config.decoder_reassemble_factors)
        )
        self.coarsest_unit = FinPercepResidualConvUnit(channels)
        self.fusion = nn.ModuleList(FinPercepFusionBlock(channels) for _ in range(3))
        self.refine = nn.ModuleList(
            FinPercepResidualConvUnit(channels, zero_init=True) for _ in range(config.decoder_refine_blocks)
        )
        pixel_channels = config.decoder_pixel_channels
        self.pixel_fusion = FinPercepPixelFusion(channels, pixel_channels) if pixel_channels > 0 else None
        head_channels = pixel_channels or channels
        self.head = nn.Sequential(
            nn.Conv2d(head_channels, max(head_channels // 2, 1), 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(max(head_channels // 2, 1), 1, 1),
        )

    def forward(self, feature_maps: tuple[torch.Tensor, ...], pixels: torch.Tensor | None = None) -> torch.Tensor:
        pyramid = [block(grid) for block, grid in zip(self.reassemble, feature_maps)]
        hidden = self.coarsest_unit(pyramid[-1])
        for fusion, skip in zip(self.fusion, reversed(pyramid[:-1])):
            hidden = fusion(hidden, skip)
        for block in self.refine:
            hidden = block(hidden)
        if self.pixel_fusion is not None:
            if pixels is None:
                raise ValueError("this decoder has a pixel branch (decoder_pixel_channels > 0): pass `pixels`.")
            hidden = self.pixel_fusion(hidden, pixels)
        return self.head(hidden)


class FinPercepScoreHead(nn.Module):
    """The coupled score of Eq. 2: ``MLP(pool(f_N * interpolate(pdm)))`` combined with ``base_score``.

    Inputs: ``last_grid`` f_N (B, hidden_size, h, w), ``pdm`` (B, 1, H, W) in [0, 1], ``base_score`` (B,).
    Output: ``global_score`` (B,) in [0, 1]. The MLP's last layer is zero-initialised (see `FinPercepConfig`).
    """

    def __init__(self, config: FinPercepConfig):
        super().__init__()
        hidden = config.encoder_feature_channels[-1]
        self.mode = config.score_head
        self.decoupled_weights = tuple(config.decoupled_weights)
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, config.score_head_hidden), nn.GELU(), nn.Linear(config.score_head_hidden, 1)
        )
        self.mlp[-1]._finpercep_zero_init = True

    def forward(self, last_grid: torch.Tensor, pdm: torch.Tensor, base_score: torch.Tensor) -> torch.Tensor:
        if self.mode == "decoupled":
            lambda_1, lambda_2 = self.decoupled_weights
            return lambda_1 * base_score + lambda_2 * (1.0 - pdm.amax(dim=(1, 2, 3)))
        weights = F.interpolate(pdm, size=last_grid.shape[-2:], mode="bilinear", align_corners=False)
        tokens = self.norm(last_grid.permute(0, 2, 3, 1).flatten(1, 2))  # (B, h*w, hidden); a view if channels-last
        pooled = (tokens * weights.flatten(2).transpose(1, 2)).mean(dim=1)
        delta = self.mlp(pooled).squeeze(-1)
        if self.mode == "plain":
            return torch.sigmoid(delta)
        return torch.sigmoid(torch.logit(base_score, eps=LOGIT_EPS) + delta)


class FinPercepPreTrainedModel(PreTrainedModel):
    config_class = FinPercepConfig
    base_model_prefix = "finpercep"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["CLIPEncoderLayer"]

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Initialise the weights not loaded from a checkpoint; each sub-model (the CLIP tower) by its own scheme.

        transformers skips, for models defined outside the library, every module that has no parameters of its own
        (CLIP's attention and MLP blocks), so their layers would get the generic ``initializer_range`` normal. The
        tower's own `initialize_weights` runs first and gives them CLIP's scheme, as in ``__init__``; tensors that
        were loaded are left alone (transformers marks them initialised).
        """
        for module in self.modules():
            if module is not self and isinstance(module, PreTrainedModel):
                module.initialize_weights()
        super().initialize_weights()

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        # `_init_weights` goes through `transformers.initialization` only, which skips loaded tensors: the check that
        # transformers applies to custom code (skip modules whose own tensors are all loaded) is not needed here.
        super()._initialize_weights(module, is_custom_code=False)

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the decoder, head, visual projection and prompt slots; the CLIP tower uses CLIP's scheme."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if getattr(module, "_finpercep_zero_init", False):
                init.zeros_(module.weight)
            else:
                init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, FinPercepCLIPIQAEncoder):
            init.normal_(module.visual_projection.weight, mean=0.0, std=module.config.vision_config.hidden_size**-0.5)
            init.zeros_(module.prompt_embeds)
            init.constant_(module.logit_scale, self.config.logit_scale_init)
        elif isinstance(module, FinPercepBackboneIQAEncoder):
            init.normal_(module.prompt_embeds, mean=0.0, std=1.0)
            init.constant_(module.logit_scale, self.config.logit_scale_init)


class FinPercepRewardModel(FinPercepPreTrainedModel):
    r"""FinPercep-RM: returns ``global_score`` (What) and ``pdm`` (Where) for images in [0, 1].

    Example:

    ```python
    >>> from finpercep_hf import FinPercepRewardModel
    >>> rm = FinPercepRewardModel.from_clip("openai/clip-vit-base-patch16", stage=1)
    >>> out = rm(pixel_values)  # pixel_values: (B, 3, H, W) float in [0, 1], any H, W
    >>> out.global_score.shape, out.pdm.shape
    (torch.Size([B]), torch.Size([B, 1, H, W]))
    ```
    """

    def __init__(self, config: FinPercepConfig):
        super().__init__(config)
        encoder_class = FinPercepBackboneIQAEncoder if config.encoder_type == "backbone" else FinPercepCLIPIQAEncoder
        self.encoder = encoder_class(config)
        self.decoder = FinPercepDecoder(config) if config.has_decoder else None
        self.score_head = FinPercepScoreHead(config) if config.has_decoder else None
        self.post_init()

    @property
    def stage(self) -> int:
        return self.config.stage

    @classmethod
    def from_clip(
        cls,
        clip_name_or_path: str,
        stage: int = 0,
        prompt_pairs: list[list[str]] | None = None,
        tokenizer: CLIPTokenizer | None = None,
        **config_kwargs,
    ) -> FinPercepRewardModel:
        """Build RM_``stage`` from a CLIP checkpoint (Hub id or local directory).

        The CLIP vision tower and visual projection are copied; the prompts' text embeddings are computed once by
        the CLIP text tower and stored in the model. ``config_kwargs`` go to [`FinPercepConfig`]
        (``decoder_channels``, ``score_head``, ...); ``attn_implementation`` goes to the CLIP loader.
        """
        attn_implementation = config_kwargs.pop("attn_implementation", None)
        try:
            clip = CLIPModel.from_pretrained(clip_name_or_path, attn_implementation=attn_implementation)
            if tokenizer is None:
                tokenizer = CLIPTokenizer.from_pretrained(clip_name_or_path)
        except (OSError, ValueError) as error:
            raise checkpoint_error(clip_name_or_path, "CLIP checkpoint", error) from error
        config = FinPercepConfig(
            vision_config=clip.config.vision_config.to_dict(),
            projection_dim=clip.config.projection_dim,
            prompt_pairs=prompt_pairs,
            logit_scale_init=clip.logit_scale.exp().item(),
            stage=stage,
            clip_name_or_path=str(clip_name_or_path),
            **config_kwargs,
        )
        model = cls(config)
        model.encoder.vision_model.load_state_dict(clip.vision_model.state_dict())
        model.encoder.visual_projection.load_state_dict(clip.visual_projection.state_dict())
        with torch.no_grad():
            prompts = [prompt for pair in config.prompt_pairs for prompt in pair]
            tokens = tokenizer(prompts, padding=True, return_tensors="pt")
            text_embeds = clip.get_text_features(**tokens).pooler_output
            model.encoder.prompt_embeds.copy_(F.normalize(text_embeds, dim=-1).view(-1, 2, config.projection_dim))
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with a clear error when the checkpoint is missing or offline."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except OSError as error:
            if isinstance(error, FinPercepCheckpointError):
                raise
            raise checkpoint_error(str(pretrained_model_name_or_path), "FinPercep-RM checkpoint", error) from error

    def get_input_embeddings(self) -> nn.Module:
        """The vision tower's patch embedding (a ``Conv2d``: pixels -> patch tokens)."""
        return self.encoder.vision_model.get_input_embeddings()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        """Shape checks (static: kept in compiled graphs); the value check runs in eager mode only."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got shape {tuple(pixel_values.shape)}.")
        patch = self.encoder.patch_size
        if pixel_values.shape[-2] < patch or pixel_values.shape[-1] < patch:
            raise ValueError(
                f"pixel_values must be at least {patch}x{patch} (the patch size), got {tuple(pixel_values.shape)}."
            )
        if not torch.compiler.is_compiling():
            check_pixel_range(pixel_values)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_feature_maps: bool = False,
        return_dict: bool | None = None,
    ) -> FinPercepOutput | tuple:
        """Score images.

        Args:
            pixel_values: (B, 3, H, W) float in [0, 1], H and W >= the patch size. The encoder sees the top-left
                crop to the patch multiple (as CLIP's patch convolution); ``pdm`` covers all H x W pixels.
            output_feature_maps: also return the encoder grids ``{f_i}``.
            return_dict: return a [`FinPercepOutput`] (default: ``config.return_dict``) or a tuple of its non-None
                fields.

        Returns:
            [`FinPercepOutput`] with ``global_score`` (B,), ``base_score`` (B,), ``pdm`` (B, 1, H, W) or None.
        """
        self._check_pixel_values(pixel_values)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        height, width = pixel_values.shape[-2:]
        patch = self.encoder.patch_size
        crop_h, crop_w = height // patch * patch, width // patch * patch
        base_score, image_embeds, feature_maps = self.encoder(pixel_values)

        pdm = pdm_logits = None
        global_score = base_score
        if self.decoder is not None:
            pixels = None
            if self.decoder.pixel_fusion is not None:
                pixels = self.encoder.normalize_pixels(pixel_values[..., :crop_h, :crop_w])
            logits = self.decoder(feature_maps, pixels)
            logits = F.interpolate(logits, size=(crop_h, crop_w), mode="bilinear", align_corners=False)
            pdm_logits = F.pad(logits, (0, width - crop_w, 0, height - crop_h), mode="replicate")
            pdm = torch.sigmoid(pdm_logits)
            global_score = self.score_head(feature_maps[-1], pdm, base_score)

        output = FinPercepOutput(
            global_score=global_score,
            base_score=base_score,
            pdm=pdm,
            pdm_logits=pdm_logits,
            image_embeds=image_embeds,
            feature_maps=feature_maps if output_feature_maps else None,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "FinPercepCheckpointError",
    "FinPercepDecoder",
    "FinPercepOutput",
    "FinPercepPixelFusion",
    "FinPercepPreTrainedModel",
    "FinPercepRewardModel",
    "FinPercepScoreHead",
    "check_pixel_range",
]
