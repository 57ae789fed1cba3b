from .base import GeneratorTrainer, GeneratorTrainerConfig, LRHRDataset
from .dpo import DPOConfig, DPOTrainer
from .grpo import GRPOConfig, GRPOTrainer
from .monitor import MonitorResult, RewardHackingMonitor
from .refl import REFLConfig, REFLTrainer

__all__ = [
    "DPOConfig",
    "DPOTrainer",
    "GRPOConfig",
    "GRPOTrainer",
    "GeneratorTrainer",
    "GeneratorTrainerConfig",
    "LRHRDataset",
    "MonitorResult",
    "REFLConfig",
    "REFLTrainer",
    "RewardHackingMonitor",
]
