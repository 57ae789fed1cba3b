from .base import GeneratorTrainer, GeneratorTrainerConfig
from .dpo import DiffusionDPOConfig, DiffusionDPOTrainer
from .grpo import DiffusionGRPOConfig, DiffusionGRPOTrainer
from .monitor import MonitorResult, RewardHackingMonitor
from .refl import REFLConfig, REFLTrainer
from .reward_model import FinPercepTrainingArguments, RewardModelTrainer

__all__ = [
    "DiffusionDPOConfig",
    "DiffusionDPOTrainer",
    "DiffusionGRPOConfig",
    "DiffusionGRPOTrainer",
    "FinPercepTrainingArguments",
    "GeneratorTrainer",
    "GeneratorTrainerConfig",
    "MonitorResult",
    "REFLConfig",
    "REFLTrainer",
    "RewardHackingMonitor",
    "RewardModelTrainer",
]
