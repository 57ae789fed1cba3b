"""``finpercep quickstart``: the offline end-to-end default (FGR-mini -> RM_0..RM_N -> held-out report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..quickstart import QuickstartConfig
from ..scripting import EXIT_OK, argument_view, config_from_view

NAME = "quickstart"
HELP = "Offline end to end: build FGR-mini from skimage photos, train RM_0..RM_3, report on held-out photos."
DESCRIPTION = HELP
QUICKSTART_FLAGS = (
    "train_samples",
    "heldout_samples",
    "ccl_schedule",
    "max_steps",
    "crop_size",
    "seed",
    "with_rl",
    "rl_budget",
)


@dataclass
class QuickstartArguments:
    out: Path = field(default=Path("runs/quickstart"), metadata={"help": "Output directory."})


ARGUMENTS = (QuickstartArguments, argument_view(QuickstartConfig, include=QUICKSTART_FLAGS))


def run(args: QuickstartArguments, config_values) -> int:
    from ..quickstart import run_quickstart

    run_quickstart(args.out, config_from_view(QuickstartConfig, config_values))
    return EXIT_OK


__all__ = ["ARGUMENTS", "DESCRIPTION", "HELP", "NAME", "QuickstartArguments", "run"]
