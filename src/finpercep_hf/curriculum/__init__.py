from .schedule import CCLSchedule, CCLStage

__all__ = ["CCLSchedule", "CCLStage"]
