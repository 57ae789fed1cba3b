"""`CCLRewardCallback`: CCL path 2 (paper Sec. 3.5.2), the generator's reward moves from RM_0 to RM_k.

At the start of every optimizer update the callback looks up the stage in force at ``state.global_step`` in the
[`CCLSchedule`]; when it differs from the loaded one, it loads that stage's RM checkpoint (lazily: a stage is
loaded only when it starts), hands it to the trainer's reward function (which drops the old model) and logs
``curriculum/stage``. The switch history is checkpointed with the trainer (``state_dict``/``load_state_dict``), and
after a resume the stage in force at the resumed step is loaded before the first update. A one-entry schedule is
a run without curriculum.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from transformers import TrainerCallback

from ..rewards import load_reward_model
from .schedule import CCLSchedule


class CCLRewardCallback(TrainerCallback):
    """Swap the reward model at the schedule's stage boundaries (counted in optimizer updates).

    Args:
        schedule: a [`CCLSchedule`] whose stages carry checkpoints, or its string form
            ``"0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1"``.
        load_model: ``checkpoint -> reward model``; default `load_reward_model` (frozen FinPercep-RM).

    Example:

    ```python
    >>> callback = CCLRewardCallback("0:runs/rm/stage0,500:runs/rm/stage1,1000:runs/rm/stage3")
    >>> trainer = REFLTrainer(generator, reward="runs/rm/stage0", args=config, train_dataset=data,
    ...                       callbacks=[callback])
    ```
    """

    def __init__(self, schedule: CCLSchedule | str, load_model: Callable[[str], nn.Module] = load_reward_model):
        self.schedule = CCLSchedule.from_string(schedule) if isinstance(schedule, str) else schedule
        missing = [stage.stage for stage in self.schedule.stages if not stage.checkpoint]
        if missing:
            raise ValueError(f"every generator-curriculum stage needs an RM checkpoint; stages {missing} have none.")
        self.load_model = load_model
        self.active_index: int | None = None
        self.switches: list[dict] = []

    @property
    def active_stage(self) -> int | None:
        """The curriculum stage ``k`` of the RM currently rewarding the generator (None before training)."""
        return None if self.active_index is None else self.schedule.stages[self.active_index].stage

    def _sync(self, step: int, reward, trainer) -> None:
        index = self.schedule.stage_index_at(step)
        stage = self.schedule.stages[index]
        loaded = reward.source != stage.checkpoint
        if loaded:
            model = self.load_model(stage.checkpoint)
            if trainer is not None and isinstance(model, nn.Module):
                model.to(trainer.accelerator.device)
            reward.set_model(model, source=stage.checkpoint)
        switched = index != self.active_index
        if switched:
            self.active_index = index
            self.switches.append({"step": step, "stage": stage.stage, "checkpoint": stage.checkpoint})
        if (loaded or switched) and trainer is not None:
            trainer.log({"curriculum/stage": float(stage.stage)})

    def on_train_begin(self, args, state, control, reward=None, trainer=None, **kwargs):
        self._sync(state.global_step, reward, trainer)

    def on_step_begin(self, args, state, control, reward=None, trainer=None, **kwargs):
        self._sync(state.global_step, reward, trainer)

    def state_dict(self) -> dict:
        return {
            "schedule": self.schedule.to_dict(),
            "active_index": self.active_index,
            "switches": list(self.switches),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the switch history; the RM itself is reloaded for the resumed step at ``on_train_begin``."""
        if state["schedule"] != self.schedule.to_dict():
            raise ValueError(
                f"the checkpoint was trained with the schedule {state['schedule']}, this run has "
                f"{self.schedule.to_dict()}; resume with the same --reward_schedule."
            )
        self.active_index = state["active_index"]
        self.switches = list(state["switches"])

    def describe(self) -> str:
        """Markdown lines for the model card."""
        rows = "\n".join(
            f"| {stage.stage} | {stage.start_step} | `{stage.checkpoint}` |" for stage in self.schedule.stages
        )
        title = "## Co-evolutionary curriculum (reward models)"
        return f"{title}\n\n| stage | from update | RM checkpoint |\n|---|---|---|\n{rows}"


__all__ = ["CCLRewardCallback"]
