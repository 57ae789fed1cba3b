"""finpercep-hf: FinPercep-RM (global score + Perceptual Degradation Map), the FGR dataset and the co-evolutionary
curriculum for RL-based real-world super-resolution. Importing the package registers ``AutoConfig``/``AutoModel``/
``AutoImageProcessor`` for ``model_type="finpercep"`` and the ``fine-grained-iqa`` pipeline task."""

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .models import (
    FinPercepCheckpointError,
    FinPercepConfig,
    FinPercepImageProcessor,
    FinPercepOutput,
    FinPercepRewardModel,
)
from .pipelines import TASK, FinPercepPipeline

__version__ = "0.1.0.dev0"

if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=FinPercepPipeline, pt_model=AutoModel, type="image")

__all__ = [
    "FinPercepCheckpointError",
    "FinPercepConfig",
    "FinPercepImageProcessor",
    "FinPercepOutput",
    "FinPercepPipeline",
    "FinPercepRewardModel",
    "__version__",
]
