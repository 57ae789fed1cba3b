"""``finpercep init``: build RM_k from a CLIP checkpoint (or a tiny random CLIP, offline) and save it.

Exit codes: 0 saved; 1 the CLIP could not be loaded; 2 bad options; 3 ``--out`` cannot be written.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..scripting import EXIT_BAD_INPUT, EXIT_LOAD_ERROR, EXIT_OK
from .outputs import check_output_dir, output_errors_exit

NAME = "init"
HELP = "Build a FinPercep-RM at a given stage from a CLIP checkpoint and save it (weights, processor, card)."
DESCRIPTION = HELP


@dataclass
class InitArguments:
    out: Path = field(metadata={"help": "Output directory."})
    clip: str | None = field(
        default=None, metadata={"help": "CLIP checkpoint: Hub id (e.g. openai/clip-vit-base-patch16) or local dir."}
    )
    tiny_clip: bool = field(
        default=False, metadata={"help": "Use a tiny random CLIP built locally (offline demo; untrained)."}
    )
    stage: int = field(default=0, metadata={"help": "Curriculum stage k of RM_k (0 = CLIP-IQA)."})

    def __post_init__(self):
        if bool(self.clip) == self.tiny_clip:
            raise ValueError("pass exactly one of --clip CLIP and --tiny_clip.")


ARGUMENTS = (InitArguments,)


def run(args: InitArguments) -> int:
    from ..cards import save_reward_model
    from ..models import FinPercepCheckpointError, FinPercepRewardModel
    from ..tiny_clip import save_tiny_clip

    with output_errors_exit(args.out):
        check_output_dir(args.out)
    with tempfile.TemporaryDirectory() as scratch:
        clip = str(save_tiny_clip(scratch)) if args.tiny_clip else args.clip
        try:
            model = FinPercepRewardModel.from_clip(clip, stage=args.stage)
        except FinPercepCheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_LOAD_ERROR
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if args.tiny_clip:
            model.config.clip_name_or_path = "tiny random CLIP (finpercep_hf.tiny_clip)"
    with output_errors_exit(args.out):
        save_reward_model(model, args.out, untrained=True)
    print(f"saved RM_{args.stage} to {args.out}")
    return EXIT_OK


__all__ = ["ARGUMENTS", "DESCRIPTION", "HELP", "NAME", "InitArguments", "run"]
