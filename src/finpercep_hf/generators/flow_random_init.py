"""Randomly initialised flow-matching SR generators built locally: the tests' tiny one and the benchmark's
SD3.5-medium-sized one (no download; an untrained model's outputs are noise).

``size="sd35-medium"`` reproduces the architecture of stabilityai/stable-diffusion-3.5-medium's MMDiT (24 joint
blocks of width 1536, dual attention in blocks 0-12, RMS q/k norm; about 2.5 B parameters with the LR stream) and
its 16-channel VAE (8x downsampling, ``scaling_factor`` 1.5305, ``shift_factor`` 0.0609). Text encoders are never
built: the prompt embeddings (1, 154, 4096) / (1, 2048) are random stand-ins of the right shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3ControlNetModel,
    SD3Transformer2DModel,
    StableDiffusion3ControlNetPipeline,
    StableDiffusion3Pipeline,
)

from .flow_sd3 import CONDITIONING_MODES, PROMPT_EMBEDS_FILE, FlowSRGenerator
from .prompt_embeds import save_prompt_embeddings
from .sd3_lr_stream import SD3LRStreamTransformer2DModel

FLOW_SIZES = ("tiny", "sd35-medium")
TRANSFORMER_CONFIGS = {
    "tiny": dict(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=16,
        pooled_projection_dim=16,
        out_channels=16,
        pos_embed_max_size=32,
        dual_attention_layers=(0,),
        qk_norm="rms_norm",
    ),
    "sd35-medium": dict(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        num_layers=24,
        attention_head_dim=64,
        num_attention_heads=24,
        joint_attention_dim=4096,
        caption_projection_dim=1536,
        pooled_projection_dim=2048,
        out_channels=16,
        pos_embed_max_size=384,
        dual_attention_layers=tuple(range(13)),
        qk_norm="rms_norm",
    ),
}
VAE_CONFIGS = {
    "tiny": dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4),
    "sd35-medium": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2),
}
PROMPT_LENGTHS = {"tiny": 8, "sd35-medium": 154}
TEXT_COMPONENTS = tuple(f"{kind}{suffix}" for kind in ("text_encoder", "tokenizer") for suffix in ("", "_2", "_3"))


def build_flow_sr_components(size: str = "tiny", conditioning: str = "lr_stream", seed: int = 0) -> dict:
    """Random ``vae``, ``transformer``, ``scheduler``, ``controlnet`` (None in ``lr_stream`` mode) and prompt
    embeddings (``prompt_embeds`` (1, L, D), ``pooled_prompt_embeds`` (1, P)) of the given ``size``."""
    if size not in FLOW_SIZES:
        raise ValueError(f"size must be one of {FLOW_SIZES}, got {size!r}.")
    if conditioning not in CONDITIONING_MODES:
        raise ValueError(f"conditioning must be one of {CONDITIONING_MODES}, got {conditioning!r}.")
    torch.manual_seed(seed)
    config = TRANSFORMER_CONFIGS[size]
    num_blocks = len(VAE_CONFIGS[size]["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * num_blocks,
        up_block_types=("UpDecoderBlock2D",) * num_blocks,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        use_quant_conv=False,
        use_post_quant_conv=False,
        **VAE_CONFIGS[size],
    )
    controlnet = None
    if conditioning == "lr_stream":
        transformer = SD3LRStreamTransformer2DModel(**config)
    else:
        transformer = SD3Transformer2DModel(**config)
        controlnet_config = {key: value for key, value in config.items() if key != "dual_attention_layers"}
        controlnet = SD3ControlNetModel(**{**controlnet_config, "num_layers": max(1, config["num_layers"] // 2)})
    return dict(
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        controlnet=controlnet,
        prompt_embeds=torch.randn(1, PROMPT_LENGTHS[size], config["joint_attention_dim"]),
        pooled_prompt_embeds=torch.randn(1, config["pooled_projection_dim"]),
    )


def build_flow_sr_generator(size: str = "tiny", conditioning: str = "lr_stream", seed: int = 0, **kwargs):
    """A random [`FlowSRGenerator`] of the given ``size``; ``kwargs`` go to its constructor."""
    return FlowSRGenerator(**build_flow_sr_components(size, conditioning, seed), **kwargs)


def build_flow_sr_pipeline(size: str = "tiny", conditioning: str = "lr_stream", seed: int = 0):
    """The random components as a diffusers SD3 pipeline (no text encoders) and its prompt embeddings."""
    components = build_flow_sr_components(size, conditioning, seed)
    prompt_embeds = components.pop("prompt_embeds"), components.pop("pooled_prompt_embeds")
    text_components = {
        f"{kind}{suffix}": None for kind in ("text_encoder", "tokenizer") for suffix in ("", "_2", "_3")
    }
    if conditioning == "lr_stream":
        components.pop("controlnet")
        return StableDiffusion3Pipeline(**components, **text_components), prompt_embeds
    return StableDiffusion3ControlNetPipeline(**components, **text_components), prompt_embeds


def save_tiny_flow_sr(save_directory: str | Path, conditioning: str = "lr_stream", seed: int = 0) -> Path:
    """`save_pretrained` the tiny random pipeline and write its prompt embeddings to ``prompt_embeds.safetensors``.

    ``model_index.json`` names the transformer by its diffusers base class (`SD3Transformer2DModel`), so that the
    stock pipeline loads the directory (pass ``transformer=`` to keep the LR stream); ``transformer/config.json``
    keeps the real class, which [`FlowSRGenerator.from_pretrained`] reads. No text encoders are saved: pass
    ``dict.fromkeys(TEXT_COMPONENTS)`` to the pipeline's ``from_pretrained``.
    """
    save_directory = Path(save_directory)
    pipeline, (prompt_embeds, pooled_prompt_embeds) = build_flow_sr_pipeline("tiny", conditioning, seed)
    pipeline.save_pretrained(save_directory)
    index_path = save_directory / "model_index.json"
    index = json.loads(index_path.read_text())
    index["transformer"] = ["diffusers", SD3Transformer2DModel.__name__]
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    save_prompt_embeddings(save_directory / PROMPT_EMBEDS_FILE, prompt_embeds, pooled_prompt_embeds)
    return save_directory


__all__ = [
    "FLOW_SIZES",
    "TEXT_COMPONENTS",
    "build_flow_sr_components",
    "build_flow_sr_generator",
    "build_flow_sr_pipeline",
    "save_tiny_flow_sr",
]
