"""`RewardModelGrowthCallback`: applies CCL path 1 (progressive expansion) inside a `transformers.Trainer`.

At each stage of the `CCLSchedule` it activates the stage's parameters (see `curriculum.growth`), drops the
gradients of inactive ones before every optimizer step, and, when a stage ends, writes the merged plain checkpoint
``<output_dir>/finpercep-rm-stage{k}`` (model, image processor, model card with the stage's eval metrics), atomically:
into ``finpercep-rm-stage{k}.tmp``, renamed when complete. RM_0 is written when training starts. Its state (the
stages already written) is JSON (``state_dict`` / ``load_state_dict``, stored in the checkpoint's
``callback_state.json`` like every stateful callback) and survives ``resume_from_checkpoint``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from ..cards import save_reward_model
from ..checkpointing import prepare_partial, publish_directory
from .growth import CCL_MODES, active_parameter_names, drop_inactive_gradients, export_stage_model
from .schedule import CCLSchedule

logger = logging.getLogger(__name__)


def stage_dir_name(stage: int) -> str:
    return f"finpercep-rm-stage{stage}"


class RewardModelGrowthCallback(TrainerCallback):
    """Grows the reward model at the ``schedule``'s stage boundaries and writes a checkpoint per stage.

    Args:
        schedule: RM-side schedule (`CCLSchedule.from_string(spec, values="stage")`, e.g. ``args.schedule``);
            stage 0 is the pre-trained CLIP-IQA, takes no steps and is written at the start (``export_stage0``).
        ccl: ``"param"`` (grow stage by stage), ``"weight"`` or ``"none"`` (full model from step 0).
        export_stage0: write ``finpercep-rm-stage0`` at the start.
        evaluate_at_stage_end: ask the trainer to evaluate at each stage end and put the metrics in the card.
        training_data: the dataset's name for the model cards.
    """

    def __init__(
        self,
        schedule: CCLSchedule | dict,
        ccl: str = "param",
        export_stage0: bool = True,
        evaluate_at_stage_end: bool = True,
        training_data: str | None = None,
    ):
        if ccl not in CCL_MODES:
            raise ValueError(f"ccl must be one of {CCL_MODES}, got {ccl!r}.")
        self.schedule = CCLSchedule.from_dict(schedule) if isinstance(schedule, dict) else schedule
        self.ccl = ccl
        self.export_stage0 = export_stage0
        self.evaluate_at_stage_end = evaluate_at_stage_end
        self.training_data = training_data
        self.exported_stages: list[int] = []
        self.current_stage: int | None = None
        self._active: set[str] = set()
        self._pending_export: int | None = None

    def state_dict(self) -> dict:
        """JSON state: the schedule and mode (checked on resume) and the stages already written."""
        return {"schedule": self.schedule.to_dict(), "ccl": self.ccl, "exported_stages": list(self.exported_stages)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the stages already written (a resumed run may extend the schedule; those stages stay written)."""
        if state["ccl"] != self.ccl:
            raise ValueError(f"the checkpoint was trained with ccl={state['ccl']!r}, this run has ccl={self.ccl!r}.")
        self.exported_stages = list(state["exported_stages"])

    def _activate(self, model, step: int) -> None:
        stage = self.schedule.stage_at(step).stage
        if stage != self.current_stage:
            self._active = active_parameter_names(model, stage, self.ccl)
            logger.info("CCL: stage %d from step %d (%d trainable tensors)", stage, step, len(self._active))
            self.current_stage = stage

    def _export(self, args, state, model, stage: int, metrics: dict[str, float] | None = None) -> None:
        if stage in self.exported_stages:
            return
        if state.is_world_process_zero:
            path = Path(args.output_dir) / stage_dir_name(stage)
            plain = export_stage_model(model, stage, self.ccl)
            card_metrics = {k.removeprefix("eval_"): v for k, v in (metrics or {}).items() if isinstance(v, float)}
            partial = prepare_partial(path)
            save_reward_model(plain, partial, metrics=card_metrics, training_data=self.training_data)
            publish_directory(partial, path)
            logger.info("wrote %s", path)
        self.exported_stages.append(stage)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._activate(model, state.global_step)
        if self.export_stage0 and state.global_step == 0:
            self._export(args, state, model, 0)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._activate(model, state.global_step)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        drop_inactive_gradients(model, self._active)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step  # steps done so far; the step just taken had index step - 1
        ending = self.schedule.stage_at(step - 1)
        if self.schedule.stage_at(step) is ending and step < state.max_steps:
            return control
        if self.evaluate_at_stage_end:
            self._pending_export = ending.stage
            control.should_evaluate = True
        else:
            self._export(args, state, model, ending.stage)
        return control

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        if self._pending_export is not None:
            self._export(args, state, model, self._pending_export, metrics)
            self._pending_export = None


__all__ = ["RewardModelGrowthCallback", "stage_dir_name"]
