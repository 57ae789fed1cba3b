"""`CCLSchedule`: when each stage of the co-evolutionary curriculum starts (paper Sec. 3.5).

One syntax serves both CCL paths, parsed by `CCLSchedule.from_string`: ``"START:VALUE,START:VALUE,..."``, one
entry per stage in order. ``START`` is the global step at which the stage comes into force; a stage runs until the
next entry's ``START``, and the last one until the run's total step count (``max_steps``). Starts begin at 0 and
never decrease; an entry whose ``START`` equals the next one's lasts zero steps: it is taken as given and never in
force.

* path 1 (reward model expansion, ``values="stage"``): ``VALUE`` is the RM stage number ``k`` grown in place, e.g.
  ``"0:0,0:1,2000:2,4000:3"`` with ``max_steps=6000``: RM_0 (the pre-trained CLIP-IQA) is taken as given
  (0 steps, exported when training starts), then stages 1, 2 and 3 train 2000 steps each.
* path 2 (generator co-evolution, ``values="checkpoint"``): ``VALUE`` is the RM_k checkpoint (directory or Hub id)
  that rewards the generator, and the i-th entry is curriculum stage i, e.g.
  ``"0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1"``. A single entry (``"0:path"``) means no
  curriculum.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field

SCHEDULE_VALUES = ("checkpoint", "stage")


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
        if any(b < a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"stage start steps must not decrease, got {starts}.")
        numbers = [s.stage for s in self.stages]
        if any(b <= a for a, b in zip(numbers, numbers[1:])) or numbers[0] < 0:
            raise ValueError(f"stage numbers must be >= 0 and strictly increasing, got {numbers}.")

    @classmethod
    def from_string(cls, spec: str, values: str = "checkpoint") -> CCLSchedule:
        """Parse ``"START:VALUE,START:VALUE,..."`` (see the module docstring).

        Args:
            spec: the schedule; entries in stage order.
            values: ``"checkpoint"`` (path 2: ``VALUE`` is an RM_k checkpoint, the i-th entry is stage i) or
                ``"stage"`` (path 1: ``VALUE`` is the RM stage number, no checkpoint).
        """
        if values not in SCHEDULE_VALUES:
            raise ValueError(f"values must be one of {SCHEDULE_VALUES}, got {values!r}.")
        example = "'0:0,0:1,2000:2'" if values == "stage" else "'0:runs/rm/stage0,500:runs/rm/stage1'"
        entries = []
        for index, item in enumerate(part.strip() for part in spec.split(",") if part.strip()):
            step, sep, value = (text.strip() for text in item.partition(":"))
            if not sep or not step.isdigit() or not value or (values == "stage" and not value.isdigit()):
                raise ValueError(f"bad schedule entry {item!r}: expected START:{values.upper()}, e.g. {example}.")
            if values == "stage":
                entries.append(CCLStage(stage=int(value), start_step=int(step)))
            else:
                entries.append(CCLStage(stage=index, start_step=int(step), checkpoint=value))
        return cls(entries)

    @property
    def start_steps(self) -> list[int]:
        return [s.start_step for s in self.stages]

    def stage_at(self, step: int) -> CCLStage:
        """The stage in force at global ``step`` (a stage starting at ``step`` is in force at that step; of several
        starting there, the last)."""
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
