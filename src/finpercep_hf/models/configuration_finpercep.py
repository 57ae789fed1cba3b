"""Configuration of FinPercep-RM (paper Sec. 3.2): a CLIP-IQA encoder, a DPT-style decoder and a coupled score head.

The stage number ``stage`` follows the co-evolutionary curriculum (paper Sec. 3.5.1):

* ``stage=0`` -- RM_0, the encoder alone: ``global_score == base_score`` (CLIP-IQA), no ``pdm``.
* ``stage=1`` -- RM_1, + the light decoder and the coupled score head.
* ``stage>=2`` -- RM_k, + encoder adapters (merged into the encoder weights in a saved checkpoint) and
  ``decoder_refine_blocks`` zero-initialised residual refinement blocks in the decoder.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, CLIPVisionConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

SCORE_HEADS = ("residual", "plain", "decoupled")
ENCODER_TYPES = ("clip", "backbone")
# The CLIP ViT grids (all at 1/patch) are resampled to a pyramid at x4, x2, x1, x1/2; a backbone's four stages
# already form one (e.g. 1/4 .. 1/32 for ConvNeXt) and are only projected.
CLIP_REASSEMBLE_FACTORS = (4.0, 2.0, 1.0, 0.5)
BACKBONE_REASSEMBLE_FACTORS = (1.0, 1.0, 1.0, 1.0)
CLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]
DEFAULT_PROMPT_PAIRS = [["Good photo.", "Bad photo."]]
# The five antonym pairs that pyiqa's CLIP-IQA offers as an option.
PYIQA_PROMPT_PAIRS = [
    ["Good photo.", "Bad photo."],
    ["Good image.", "Bad image."],
    ["Sharp photo.", "Blurry photo."],
    ["Clear photo.", "Noisy photo."],
    ["High quality photo.", "Low quality photo."],
]


def default_feature_layers(num_hidden_layers: int, num_features: int = 4) -> list[int]:
    """Evenly spaced encoder layers whose hidden states feed the decoder, ending at the last layer.

    Layer ``i`` is ``hidden_states[i]`` of the CLIP encoder (``0`` = embeddings, ``num_hidden_layers`` = last).
    For ViT-B (12 layers) this gives ``[3, 6, 9, 12]``.
    """
    if num_hidden_layers < 1:
        raise ValueError(f"num_hidden_layers must be >= 1, got {num_hidden_layers}.")
    return [max(1, round(num_hidden_layers * (i + 1) / num_features)) for i in range(num_features)]


class FinPercepConfig(PretrainedConfig):
    r"""Configuration of [`FinPercepRewardModel`].

    Args:
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            The CLIP vision tower (any ViT CLIP checkpoint's `vision_config`). Defaults to ViT-B/16.
        projection_dim (`int`, *optional*, defaults to 512):
            Width of CLIP's joint image-text space (the visual projection's output).
        prompt_pairs (`list[list[str]]`, *optional*, defaults to `[["Good photo.", "Bad photo."]]`):
            CLIP-IQA antonym prompt pairs, positive first. Their text embeddings are computed once by
            [`FinPercepRewardModel.from_clip`] and saved with the weights.
        logit_scale_init (`float`, *optional*, defaults to 100.0):
            CLIP's temperature ``exp(logit_scale)``; overwritten by the checkpoint's value in `from_clip`.
        feature_layers (`list[int]`, *optional*):
            Four increasing indices into the encoder's hidden states that form the multi-scale features
            ``{f_i}``; the last one is ``f_N``. Defaults to four evenly spaced layers ending at the last one.
        decoder_channels (`int`, *optional*, defaults to 64):
            Width of the decoder's fused feature pyramid (ours; the paper gives none).
        decoder_refine_blocks (`int`, *optional*, defaults to 0):
            Residual refinement blocks at the decoder's finest scale, one added per stage after RM_1.
        decoder_pixel_channels (`int`, *optional*, defaults to 0):
            Width of the decoder's full-resolution pixel branch (ours; 0 = none, the plain DPT decoder). When > 0,
            the fused pyramid (1/4 of the input for a backbone, ``patch / 4`` for CLIP) is upsampled to the input
            and added to two 3x3 convolutions of the pixels, so the map can follow defect edges finer than the
            encoder's stride (thin stroke masks, small swaps).
        score_head (`str`, *optional*, defaults to `"residual"`):
            `"residual"`: ``sigmoid(logit(base_score) + MLP(pool(f_N * interp(pdm))))`` with a zero-initialised
            last layer, so RM_1 scores exactly like RM_0 when grown. `"plain"`: the paper's literal
            ``sigmoid(MLP(pool(f_N * interp(pdm))))``. `"decoupled"`: ablation B of Table 4,
            ``decoupled_weights[0] * base_score + decoupled_weights[1] * (1 - max(pdm))``.
        score_head_hidden (`int`, *optional*, defaults to 256):
            Hidden width of the score MLP.
        decoupled_weights (`list[float]`, *optional*, defaults to `[0.5, 0.5]`):
            ``(lambda_1, lambda_2)`` of the decoupled head.
        stage (`int`, *optional*, defaults to 0):
            Curriculum stage ``k`` of RM_k (see the module docstring).
        image_mean, image_std (`list[float]`, *optional*):
            CLIP normalisation applied inside the model, so gradients reach raw ``[0, 1]`` pixels.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialiser of the decoder and head.
        clip_name_or_path (`str`, *optional*):
            The CLIP checkpoint the encoder came from (recorded by `from_clip`, shown in the model card).
        encoder_type (`str`, *optional*, defaults to `"clip"`):
            `"clip"`: the CLIP-IQA encoder on `vision_config` (the paper's). `"backbone"`: a convolutional (or any
            `AutoBackbone`) encoder on `backbone_config` with learned CLIP-IQA-style anchor embeddings
            (`models/backbone_encoder.py`); its four stages feed the decoder. `vision_config` is then unused.
        backbone_config (`dict` or `PretrainedConfig`, *optional*):
            The `AutoBackbone` config of the `"backbone"` encoder (e.g. a `ConvNextConfig` with four `out_features`);
            a dict needs a `model_type`.
    """

    model_type = "finpercep"
    sub_configs = {"vision_config": CLIPVisionConfig, "backbone_config": AutoConfig}

    def __init__(
        self,
        vision_config: dict[str, Any] | CLIPVisionConfig | None = None,
        projection_dim: int = 512,
        prompt_pairs: list[list[str]] | None = None,
        logit_scale_init: float = 100.0,
        feature_layers: list[int] | None = None,
        decoder_channels: int = 64,
        decoder_refine_blocks: int = 0,
        decoder_pixel_channels: int = 0,
        score_head: str = "residual",
        score_head_hidden: int = 256,
        decoupled_weights: list[float] | None = None,
        stage: int = 0,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        initializer_range: float = 0.02,
        clip_name_or_path: str | None = None,
        encoder_type: str = "clip",
        backbone_config: dict[str, Any] | PretrainedConfig | None = None,
        **kwargs,
    ):
        if vision_config is None:
            vision_config = CLIPVisionConfig(patch_size=16)
        elif isinstance(vision_config, dict):
            vision_config = CLIPVisionConfig(**vision_config)
        elif not isinstance(vision_config, CLIPVisionConfig):
            raise ValueError(f"vision_config must be a dict or CLIPVisionConfig, got {type(vision_config).__name__}.")
        self.vision_config = vision_config
        self.projection_dim = projection_dim
        self.prompt_pairs = [list(pair) for pair in (prompt_pairs or DEFAULT_PROMPT_PAIRS)]
        self.logit_scale_init = float(logit_scale_init)
        num_layers = vision_config.num_hidden_layers
        self.feature_layers = (
            list(feature_layers) if feature_layers is not None else default_feature_layers(num_layers)
        )
        self.decoder_channels = decoder_channels
        self.decoder_refine_blocks = decoder_refine_blocks
        self.decoder_pixel_channels = decoder_pixel_channels
        self.score_head = score_head
        self.score_head_hidden = score_head_hidden
        self.decoupled_weights = list(decoupled_weights) if decoupled_weights is not None else [0.5, 0.5]
        self.stage = stage
        self.image_mean = list(image_mean) if image_mean is not None else list(CLIP_IMAGE_MEAN)
        self.image_std = list(image_std) if image_std is not None else list(CLIP_IMAGE_STD)
        self.initializer_range = initializer_range
        self.clip_name_or_path = clip_name_or_path
        if isinstance(backbone_config, dict):
            backbone_config = CONFIG_MAPPING[backbone_config["model_type"]](**backbone_config)
        self.encoder_type = encoder_type
        self.backbone_config = backbone_config
        self._validate()
        super().__init__(**kwargs)

    def _validate(self) -> None:
        if not self.prompt_pairs or any(len(pair) != 2 or not all(pair) for pair in self.prompt_pairs):
            raise ValueError(
                f"prompt_pairs must be a non-empty list of [positive, negative] prompt pairs, got {self.prompt_pairs}."
            )
        num_layers = self.vision_config.num_hidden_layers
        layers = self.feature_layers
        if len(layers) != 4 or any(not 1 <= i <= num_layers for i in layers) or sorted(set(layers)) != layers:
            raise ValueError(
                f"feature_layers must be 4 strictly increasing layer indices in [1, {num_layers}], got {layers}."
            )
        if self.score_head not in SCORE_HEADS:
            raise ValueError(f"score_head must be one of {SCORE_HEADS}, got {self.score_head!r}.")
        integers = ("stage", "decoder_refine_blocks", "decoder_pixel_channels", "projection_dim", "decoder_channels")
        for name in (*integers, "score_head_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
        for name in ("projection_dim", "decoder_channels", "score_head_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("decoder_refine_blocks", "decoder_pixel_channels"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.stage <= self.decoder_refine_blocks + 1:
            raise ValueError(
                f"stage must be in [0, decoder_refine_blocks + 1 = {self.decoder_refine_blocks + 1}] (stage k >= 2 "
                f"has k - 1 decoder refinement blocks), got {self.stage}."
            )
        if not (isinstance(self.initializer_range, (int, float)) and 0 < self.initializer_range < float("inf")):
            raise ValueError(f"initializer_range must be a finite number > 0, got {self.initializer_range!r}.")
        if len(self.decoupled_weights) != 2:
            raise ValueError(f"decoupled_weights must be [lambda_1, lambda_2], got {self.decoupled_weights}.")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError("image_mean and image_std must have 3 entries each, with a positive std.")
        if self.logit_scale_init <= 0:
            raise ValueError(f"logit_scale_init must be positive, got {self.logit_scale_init}.")
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}.")
        if self.encoder_type == "backbone" and (
            len(getattr(self.backbone_config, "out_features", None) or ()) != 4
            or not hasattr(self.backbone_config, "hidden_sizes")
        ):
            raise ValueError(
                "encoder_type='backbone' needs a backbone_config with `hidden_sizes` and four `out_features` (the "
                "feature pyramid), e.g. a ConvNextConfig or ResNetConfig."
            )

    @property
    def encoder_feature_channels(self) -> tuple[int, ...]:
        """Channels of the four encoder grids ``{f_i}`` that feed the decoder (the last one is ``f_N``)."""
        if self.encoder_type == "backbone":
            names = self.backbone_config.stage_names
            return tuple(
                self.backbone_config.hidden_sizes[names.index(name) - 1] for name in self.backbone_config.out_features
            )
        return (self.vision_config.hidden_size,) * 4

    @property
    def decoder_reassemble_factors(self) -> tuple[float, ...]:
        """Resampling factor of each encoder grid in the decoder's reassembly (see `CLIP_REASSEMBLE_FACTORS`)."""
        return BACKBONE_REASSEMBLE_FACTORS if self.encoder_type == "backbone" else CLIP_REASSEMBLE_FACTORS

    @property
    def has_decoder(self) -> bool:
        """Whether this stage has the decoder and the coupled head (RM_1 and later)."""
        return self.stage >= 1


__all__ = [
    "ENCODER_TYPES",
    "FinPercepConfig",
    "default_feature_layers",
    "DEFAULT_PROMPT_PAIRS",
    "PYIQA_PROMPT_PAIRS",
    "SCORE_HEADS",
]
