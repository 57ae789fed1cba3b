from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_finpercep import FinPercepConfig
from .image_processing_finpercep import FinPercepImageProcessor
from .modeling_finpercep import (
    FinPercepCheckpointError,
    FinPercepOutput,
    FinPercepPreTrainedModel,
    FinPercepRewardModel,
)

AutoConfig.register(FinPercepConfig.model_type, FinPercepConfig, exist_ok=True)
AutoModel.register(FinPercepConfig, FinPercepRewardModel, exist_ok=True)
AutoImageProcessor.register(FinPercepConfig, slow_image_processor_class=FinPercepImageProcessor, exist_ok=True)
# Saved checkpoints carry the config/model code and an `auto_map`, so a Hub copy also loads without this package
# (`AutoModel.from_pretrained(repo, trust_remote_code=True)`).
FinPercepConfig.register_for_auto_class()
FinPercepRewardModel.register_for_auto_class("AutoModel")

__all__ = [
    "FinPercepCheckpointError",
    "FinPercepConfig",
    "FinPercepImageProcessor",
    "FinPercepOutput",
    "FinPercepPreTrainedModel",
    "FinPercepRewardModel",
]
