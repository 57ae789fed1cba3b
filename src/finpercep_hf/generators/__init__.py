from .base import SRCondition, SRGenerator, SRSample
from .flow_sd3 import FlowSRGenerator
from .random_init import build_sd_upscaler_pipeline, save_tiny_sd_upscaler
from .sd_upscaler import LORA_WEIGHT_NAME, SDUpscalerGenerator

__all__ = [
    "FlowSRGenerator",
    "LORA_WEIGHT_NAME",
    "SDUpscalerGenerator",
    "SRCondition",
    "SRGenerator",
    "SRSample",
    "build_sd_upscaler_pipeline",
    "save_tiny_sd_upscaler",
]
