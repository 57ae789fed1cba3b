from .base import DirectSRGenerator, SRCondition, SRGenerator, SRSample
from .controlnet_sr import ControlNetSRGenerator
from .feed_forward import FeedForwardSRGenerator
from .fidelity import FidelityConfig
from .flow_sd3 import FlowSRGenerator
from .latent_diffusion import LORA_WEIGHT_NAME, LatentDiffusionSRGenerator
from .loading import GENERATOR_LOADERS, detect_generator_type, load_generator, register_generator_type
from .one_step import OneStepSRGenerator
from .random_init import build_sd_upscaler_pipeline, save_tiny_sd_upscaler
from .sd_upscaler import SDUpscalerGenerator

__all__ = [
    "GENERATOR_LOADERS",
    "LORA_WEIGHT_NAME",
    "ControlNetSRGenerator",
    "DirectSRGenerator",
    "FeedForwardSRGenerator",
    "FidelityConfig",
    "FlowSRGenerator",
    "LatentDiffusionSRGenerator",
    "OneStepSRGenerator",
    "SDUpscalerGenerator",
    "SRCondition",
    "SRGenerator",
    "SRSample",
    "build_sd_upscaler_pipeline",
    "detect_generator_type",
    "load_generator",
    "register_generator_type",
    "save_tiny_sd_upscaler",
]
