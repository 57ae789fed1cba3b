from .reward_callback import CCLRewardCallback
from .schedule import CCLSchedule, CCLStage

__all__ = ["CCLRewardCallback", "CCLSchedule", "CCLStage"]
