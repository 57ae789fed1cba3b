"""Randomly initialised SD-x4-upscaler pipelines built locally: the tests' tiny generator and the benchmark's
full-size one (no download; the outputs of an untrained model are noise).

``size="x4"`` reproduces the architecture of stabilityai/stable-diffusion-x4-upscaler's UNet (473 M parameters,
7 input channels, noise-level class embeddings, 1024-d cross-attention) and VAE (4x downsampling); its text encoder
is a one-layer stand-in of the right width, since only the prompt embeddings reach the UNet.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..tiny_clip import build_byte_level_clip_tokenizer

SIZES = ("tiny", "x4")
UNET_CONFIGS = {
    "tiny": dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        cross_attention_dim=32,
        norm_num_groups=8,
    ),
    "x4": dict(
        block_out_channels=(256, 512, 512, 1024),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8,
        cross_attention_dim=1024,
        only_cross_attention=(True, True, True, False),
        use_linear_projection=True,
        upcast_attention=False,
    ),
}
VAE_CONFIGS = {
    "tiny": dict(block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8),
    "x4": dict(block_out_channels=(128, 256, 512), layers_per_block=2),
}


def build_text_encoder(width: int) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """A byte-level CLIP tokenizer and a random one-layer `CLIPTextModel` of hidden size ``width`` (prompts are
    encoded once, so only the width of the embeddings matters)."""
    tokenizer = build_byte_level_clip_tokenizer()
    tokenizer.model_max_length = 77
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    return tokenizer, text_encoder.eval()


def build_sd_upscaler_pipeline(size: str = "tiny", seed: int = 0) -> StableDiffusionUpscalePipeline:
    """A random `StableDiffusionUpscalePipeline` of the given ``size`` ("tiny" for tests, "x4" for benchmarks)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}.")
    torch.manual_seed(seed)
    unet_config = UNET_CONFIGS[size]
    unet = UNet2DConditionModel(in_channels=7, out_channels=4, num_class_embeds=1000, sample_size=32, **unet_config)
    num_blocks = len(VAE_CONFIGS[size]["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * num_blocks,
        up_block_types=("UpDecoderBlock2D",) * num_blocks,
        scaling_factor=0.08333,
        **VAE_CONFIGS[size],
    )
    tokenizer, text_encoder = build_text_encoder(unet_config["cross_attention_dim"])
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.0001,
        beta_end=0.02,
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    low_res_scheduler = DDPMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    return StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=low_res_scheduler,
        scheduler=scheduler,
        max_noise_level=350,
    )


def save_tiny_sd_upscaler(save_directory: str | Path, seed: int = 0) -> Path:
    """Build the tiny random pipeline and `save_pretrained` it to ``save_directory``."""
    save_directory = Path(save_directory)
    build_sd_upscaler_pipeline("tiny", seed=seed).save_pretrained(save_directory)
    return save_directory


__all__ = ["SIZES", "build_sd_upscaler_pipeline", "build_text_encoder", "save_tiny_sd_upscaler"]
