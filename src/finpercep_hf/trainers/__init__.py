from .base import GeneratorTrainer, GeneratorTrainerConfig, LRHRDataset
from .monitor import MonitorResult, RewardHackingMonitor
from .refl import REFLConfig, REFLTrainer

__all__ = [
    "GeneratorTrainer",
    "GeneratorTrainerConfig",
    "LRHRDataset",
    "MonitorResult",
    "REFLConfig",
    "REFLTrainer",
    "RewardHackingMonitor",
]
