from .growth import CCL_MODES, build_curriculum_model, export_stage_model
from .growth_callback import RewardModelGrowthCallback, stage_dir_name
from .reward_callback import CCLRewardCallback
from .schedule import CCLSchedule, CCLStage

__all__ = [
    "CCL_MODES",
    "CCLRewardCallback",
    "CCLSchedule",
    "CCLStage",
    "RewardModelGrowthCallback",
    "build_curriculum_model",
    "export_stage_model",
    "stage_dir_name",
]
