"""`CCLSchedule.from_string`: one ``START:VALUE`` syntax for both curriculum paths."""

import pytest

from finpercep_hf.curriculum import CCLSchedule, CCLStage


def test_rm_side_values_are_stages_and_a_shared_start_is_a_zero_step_stage():
    schedule = CCLSchedule.from_string("0:0, 0:1,2000:2,4000:3", values="stage")
    assert schedule.stages[0] == CCLStage(stage=0, start_step=0)
    assert [s.stage for s in schedule.stages] == [0, 1, 2, 3] and schedule.start_steps == [0, 0, 2000, 4000]
    # stage 0 shares stage 1's start: never in force; a stage is in force from its start to the next one's
    assert [schedule.stage_at(step).stage for step in (0, 1999, 2000, 3999, 4000, 10**6)] == [1, 1, 2, 2, 3, 3]
    assert CCLSchedule.from_dict(schedule.to_dict()) == schedule


def test_generator_side_values_are_checkpoints_numbered_in_order():
    schedule = CCLSchedule.from_string("0:runs/rm/stage0,500:org/rm-stage1")
    assert schedule.stages == [
        CCLStage(stage=0, start_step=0, checkpoint="runs/rm/stage0"),
        CCLStage(stage=1, start_step=500, checkpoint="org/rm-stage1"),
    ]
    assert schedule.stage_index_at(499) == 0 and schedule.stage_index_at(500) == 1


@pytest.mark.parametrize(
    ("spec", "values", "message"),
    [
        ("0:1,a:2", "stage", r"^bad schedule entry 'a:2': expected START:STAGE, e\.g\. '0:0,0:1,2000:2'\.$"),
        ("0:1,5:rm", "stage", r"^bad schedule entry '5:rm': expected START:STAGE"),
        ("0:rm0,5", "checkpoint", r"^bad schedule entry '5': expected START:CHECKPOINT"),
        ("3:1,5:2", "stage", r"^the first stage must start at step 0, got 3\.$"),
        ("0:1,5:2,4:3", "stage", r"^stage start steps must not decrease, got \[0, 5, 4\]\.$"),
        ("0:2,5:1", "stage", r"^stage numbers must be >= 0 and strictly increasing, got \[2, 1\]\.$"),
        ("", "stage", r"^a CCLSchedule needs at least one stage\.$"),
        ("0:1", "steps", r"^values must be one of \('checkpoint', 'stage'\), got 'steps'\.$"),
    ],
)
def test_bad_schedules_fail_with_one_line(spec, values, message):
    with pytest.raises(ValueError, match=message):
        CCLSchedule.from_string(spec, values=values)
