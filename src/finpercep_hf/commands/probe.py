"""``finpercep probe``: the reward-hacking probe (paper Fig. 1a) for one or more reward models.

Exit codes: 0 done; 1 a reward model could not be loaded; 2 bad options or some images unreadable (each reported on
one line, the others probed); 3 ``--out`` cannot be written.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..evaluation.probe import FinPercepProbeConfig, run_probe
from ..images import read_images
from ..scripting import EXIT_BAD_INPUT, EXIT_LOAD_ERROR, EXIT_OK, argument_view
from .evaluate import parse_named_path
from .outputs import check_output_dir, output_errors_exit

NAME = "probe"
HELP = "Reward-hacking probe: implant local artifacts and check that each reward model notices them."
DESCRIPTION = (
    "For each image, implants blur, noise, JPEG blocks, oversharpening, hallucinated texture and a colour shift "
    "locally (several area fractions) and globally, then reports per reward model the score drop, whether clean > "
    "locally distorted > globally distorted, and the PDM's localisation AUROC. Writes probe.csv, summary.csv, "
    "summary.md, plots/ and overlays/. With no --images, uses scikit-image's photos. Images are probed at "
    "--max_side, so their size bounds the work; files over PIL's decompression-bomb limit are refused."
)


@dataclass
class ProbeArguments:
    rm: list[str] = field(
        metadata={
            "action": "extend",
            "help": "FinPercep-RM checkpoints ([NAME=]PATH, directory or Hub id), several to compare; NAME labels "
            "its rows.",
        }
    )
    out: Path = field(metadata={"help": "Output directory."})
    images: list[str] = field(
        default_factory=list,
        metadata={"action": "extend", "help": "Image files or directories (searched recursively)."},
    )

    def __post_init__(self):
        named = [parse_named_path(value) for value in self.rm]
        if len({name for name, _ in named}) != len(named):
            raise ValueError(f"reward-model names must be unique, got {[name for name, _ in named]} (NAME=PATH).")


ARGUMENTS = (ProbeArguments, argument_view(FinPercepProbeConfig))


def run(args: ProbeArguments, config_values) -> int:
    from ..models import FinPercepCheckpointError, FinPercepRewardModel

    try:
        config = FinPercepProbeConfig(**asdict(config_values))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with output_errors_exit(args.out):
        check_output_dir(args.out)
    images, errors = read_images(args.images)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if not images:
        print("error: no readable images to probe.", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        models = {
            name: FinPercepRewardModel.from_pretrained(str(path)).to(config.device).eval()
            for name, path in map(parse_named_path, args.rm)
        }
    except FinPercepCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD_ERROR
    with output_errors_exit(args.out):
        run_probe(models, dict(images), args.out, config)
    print((args.out / "summary.md").read_text())
    return EXIT_BAD_INPUT if errors else EXIT_OK


__all__ = ["ARGUMENTS", "DESCRIPTION", "HELP", "NAME", "ProbeArguments", "run"]
