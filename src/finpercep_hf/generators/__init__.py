from .base import DirectSRGenerator, SRCondition, SRGenerator, SRSample
from .latent_diffusion import LORA_WEIGHT_NAME, LatentDiffusionSRGenerator
from .random_init import build_sd_upscaler_pipeline, save_tiny_sd_upscaler
from .sd_upscaler import SDUpscalerGenerator

__all__ = [
    "DirectSRGenerator",
    "LORA_WEIGHT_NAME",
    "LatentDiffusionSRGenerator",
    "SDUpscalerGenerator",
    "SRCondition",
    "SRGenerator",
    "SRSample",
    "build_sd_upscaler_pipeline",
    "save_tiny_sd_upscaler",
]
