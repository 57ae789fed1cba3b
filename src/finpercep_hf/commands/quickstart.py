"""``finpercep quickstart``: the offline end-to-end default (FGR-mini -> RM_0..RM_N -> held-out report)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from ..quickstart import BUDGETS, QuickstartConfig
from ..scripting import EXIT_OK, argument_view, config_from_view

NAME = "quickstart"
HELP = (
    "Offline end to end: build FGR-mini from bundled photos, pre-train RM_0, grow RM_1..RM_3, report on held-out "
    "photos (with leave-kinds-out and 96/256 px tables)."
)
DESCRIPTION = HELP
QUICKSTART_FLAGS = (
    "train_samples",
    "heldout_samples",
    "ccl_schedule",
    "max_steps",
    "crop_size",
    "seed",
    "encoder_type",
    "with_rl",
    "rl_budget",
)


@dataclass
class QuickstartArguments:
    out: Path = field(default=Path("runs/quickstart"), metadata={"help": "Output directory."})
    budget: str = field(
        default="fast",
        metadata={"help": "fast: a few minutes on 2 idle cores; full: up to 15 minutes.", "choices": BUDGETS},
    )


ARGUMENTS = (
    QuickstartArguments,
    argument_view(QuickstartConfig, include=QUICKSTART_FLAGS, defaults=dict.fromkeys(QUICKSTART_FLAGS)),
)


def run(args: QuickstartArguments, config_values) -> int:
    from ..quickstart import run_quickstart

    factory = functools.partial(QuickstartConfig.for_budget, args.budget)
    run_quickstart(args.out, config_from_view(QuickstartConfig, config_values, factory=factory))
    return EXIT_OK


__all__ = ["ARGUMENTS", "DESCRIPTION", "HELP", "NAME", "QuickstartArguments", "run"]
