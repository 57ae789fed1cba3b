"""`CCLSchedule`: when each stage of the co-evolutionary curriculum starts (paper Sec. 3.5).

One schedule type serves both CCL paths:

* path 1 (reward model expansion): stage ``k`` of RM training starts at a global step and runs until the next;
  ``CCLSchedule.from_stage_steps([0, 1, 2, 3], [0, 2000, 2000, 2000])`` (a stage of 0 steps is taken as given,
  e.g. RM_0 = the pre-trained CLIP-IQA that needs no training).
* path 2 (generator co-evolution): the generator is rewarded by the RM_k checkpoint of the stage in force;
  ``CCLSchedule.from_string("0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1")``.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class CCLStage:
    """One curriculum stage: RM_``stage`` is in force from global step ``start_step`` on.

    ``checkpoint`` is the RM_k directory or Hub id that rewards the generator in this stage (path 2); it is
    ``None`` on the reward-model side (path 1), where the stage is grown in place.
    """

    stage: int
    start_step: int
    checkpoint: str | None = None


@dataclass
class CCLSchedule:
    """Stages ordered by ``start_step``; the first starts at step 0. Serialisable with `to_dict`/`from_dict`."""

    stages: list[CCLStage] = field(default_factory=list)

    def __post_init__(self):
        self.stages = [CCLStage(**s) if isinstance(s, dict) else s for s in self.stages]
        if not self.stages:
            raise ValueError("a CCLSchedule needs at least one stage.")
        starts = [s.start_step for s in self.stages]
        if starts[0] != 0:
            raise ValueError(f"the first stage must start at step 0, got {starts[0]}.")
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"stage start steps must be strictly increasing, got {starts}.")
        numbers = [s.stage for s in self.stages]
        if any(b <= a for a, b in zip(numbers, numbers[1:])) or numbers[0] < 0:
            raise ValueError(f"stage numbers must be >= 0 and strictly increasing, got {numbers}.")

    @classmethod
    def from_stage_steps(cls, stages: list[int], stage_steps: list[int]) -> CCLSchedule:
        """RM side: ``stage_steps[i]`` training steps for stage ``stages[i]``; 0-step stages are skipped over."""
        if len(stages) != len(stage_steps):
            raise ValueError(f"stages {stages} and stage_steps {stage_steps} must have the same length.")
        if any(steps < 0 for steps in stage_steps):
            raise ValueError(f"stage_steps must be >= 0, got {stage_steps}.")
        entries, start = [], 0
        for stage, steps in zip(stages, stage_steps):
            if steps == 0 and stage != stages[-1]:
                continue
            entries.append(CCLStage(stage=stage, start_step=start))
            start += steps
        return cls(entries)

    @classmethod
    def from_string(cls, spec: str) -> CCLSchedule:
        """Generator side: ``"STEP:CHECKPOINT,STEP:CHECKPOINT,..."``; the i-th entry is curriculum stage i.

        A single entry (``"0:path"``) means no curriculum.
        """
        entries = []
        for index, item in enumerate(part.strip() for part in spec.split(",") if part.strip()):
            step, sep, checkpoint = item.partition(":")
            if not sep or not step.strip().isdigit() or not checkpoint.strip():
                raise ValueError(f"bad schedule entry {item!r}: expected STEP:CHECKPOINT, e.g. '500:runs/rm/stage1'.")
            entries.append(CCLStage(stage=index, start_step=int(step), checkpoint=checkpoint.strip()))
        return cls(entries)

    @property
    def start_steps(self) -> list[int]:
        return [s.start_step for s in self.stages]

    def stage_at(self, step: int) -> CCLStage:
        """The stage in force at global ``step`` (a stage starting at ``step`` is in force at that step)."""
        return self.stages[bisect.bisect_right(self.start_steps, step) - 1]

    def stage_index_at(self, step: int) -> int:
        """Position in ``stages`` of the stage in force at ``step``."""
        return bisect.bisect_right(self.start_steps, step) - 1

    def to_dict(self) -> dict:
        return {"stages": [asdict(s) for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict) -> CCLSchedule:
        return cls([CCLStage(**s) for s in data["stages"]])


__all__ = ["CCLSchedule", "CCLStage"]
