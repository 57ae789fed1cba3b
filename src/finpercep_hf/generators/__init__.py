from .base import SRCondition, SRGenerator, SRSample
from .random_init import build_sd_upscaler_pipeline, save_tiny_sd_upscaler
from .sd_upscaler import LORA_WEIGHT_NAME, SDUpscalerGenerator

__all__ = [
    "LORA_WEIGHT_NAME",
    "SDUpscalerGenerator",
    "SRCondition",
    "SRGenerator",
    "SRSample",
    "build_sd_upscaler_pipeline",
    "save_tiny_sd_upscaler",
]
