from .fine_grained_iqa import FinPercepPipeline, output_to_records

TASK = "fine-grained-iqa"

__all__ = ["FinPercepPipeline", "TASK", "output_to_records"]
