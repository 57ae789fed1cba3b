"""Tiny randomly initialised models of the ControlNet-SR, one-step-SR and feed-forward-SR families, built locally
for tests and CPU benchmarks (no download; the outputs of an untrained model are noise).

The diffusion ones are the architectures of Stable Diffusion 2 scaled down: the tests' 2-level UNet with 32-d
cross-attention (``random_init.UNET_CONFIGS["tiny"]``, 4 input channels), a VAE with 2x downsampling (SD's has 8x)
and a one-layer text encoder; the ControlNet is built from the UNet (``ControlNetModel.from_unet``) with a
conditioning embedding that downsamples as the VAE does. The feed-forward ones are spandrel's own architecture
classes with few channels, so spandrel detects them from their state dicts exactly as it detects released
checkpoints.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from torch import nn

from .random_init import UNET_CONFIGS, build_text_encoder

FEED_FORWARD_ARCHITECTURES = ("ESRGAN", "SwinIR")


def build_sd_components(seed: int = 0, prediction_type: str = "epsilon", timestep_spacing: str = "leading") -> dict:
    """The components of a tiny random SD2-style text-to-image pipeline (vae, unet, scheduler, text encoder...)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, sample_size=16, **UNET_CONFIGS["tiny"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=0.18215,
    )
    tokenizer, text_encoder = build_text_encoder(32)
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing=timestep_spacing,
    )
    return dict(
        vae=vae,
        unet=unet,
        scheduler=scheduler,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_sd_pipeline(seed: int = 0, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    """A tiny random `StableDiffusionPipeline`, the base of a one-step SR generator (trailing timesteps, so that
    one DDIM step starts at the last training timestep, as OSEDiff's t = 999)."""
    return StableDiffusionPipeline(**build_sd_components(seed, prediction_type, timestep_spacing="trailing"))


def build_controlnet_sr_pipeline(seed: int = 0, prediction_type: str = "epsilon") -> StableDiffusionControlNetPipeline:
    """A tiny random `StableDiffusionControlNetPipeline` (SeeSR / DiffBIR layout: SD2 UNet + ControlNet)."""
    components = build_sd_components(seed, prediction_type)
    torch.manual_seed(seed + 1)
    controlnet = ControlNetModel.from_unet(components["unet"], conditioning_embedding_out_channels=(8, 16))
    zero_initialised = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
    with torch.no_grad():  # ControlNet's zero convolutions start at 0: give them values so the control acts
        for name, parameter in controlnet.named_parameters():
            if name.startswith(zero_initialised):
                parameter.normal_(0, 0.3)
    return StableDiffusionControlNetPipeline(controlnet=controlnet, **components)


def build_feed_forward_network(architecture: str = "ESRGAN", seed: int = 0) -> nn.Module:
    """A tiny random x4 network of one of spandrel's architecture classes (``ESRGAN`` = RRDBNet, ``SwinIR``)."""
    if architecture not in FEED_FORWARD_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {FEED_FORWARD_ARCHITECTURES}, got {architecture!r}.")
    torch.manual_seed(seed)
    if architecture == "ESRGAN":
        from spandrel.architectures.ESRGAN import ESRGAN

        return ESRGAN(num_filters=8, num_blocks=1, scale=4)
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(
        img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=2.0, drop_path_rate=0.0,
        upscale=4, upsampler="pixelshuffle",
    )  # fmt: skip


__all__ = [
    "FEED_FORWARD_ARCHITECTURES",
    "build_controlnet_sr_pipeline",
    "build_feed_forward_network",
    "build_sd_components",
    "build_sd_pipeline",
]
