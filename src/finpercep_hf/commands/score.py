"""``finpercep score``: score images with a FinPercep reward model; JSON lines, and overlays with ``--out``.

Exit codes: 0 all images scored; 1 the model could not be loaded; 2 bad options or some inputs could not be read
(each reported on one line, the others scored); 3 ``--out`` cannot be written.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..images import read_images
from ..scripting import EXIT_BAD_INPUT, EXIT_LOAD_ERROR, EXIT_OK
from .outputs import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_HELP,
    check_output_dir,
    fit_to_pixels,
    output_errors_exit,
    relative_output_names,
)

NAME = "score"
HELP = "Score images: global score, CLIP-IQA base score and Perceptual Degradation Map statistics."
DESCRIPTION = (
    "Prints one JSON line per image. With --out, writes scores.jsonl and a heatmap overlay PNG per image, at the "
    "image's path relative to the inputs' common folder (OUT/a/x_pdm.png, OUT/b/x_pdm.png). With no --images, "
    "scores the photos bundled with scikit-image."
)


@dataclass
class ScoreArguments:
    model: str = field(metadata={"help": "FinPercep-RM checkpoint: a local directory or a Hub id."})
    images: list[str] = field(
        default_factory=list,
        metadata={"action": "extend", "help": "Image files or directories (searched recursively)."},
    )
    out: Path | None = field(default=None, metadata={"help": "Directory for scores.jsonl and overlay PNGs."})
    batch_size: int = field(default=1, metadata={"help": "Images per forward (same-size images batch)."})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={"help": MAX_PIXELS_HELP})
    device: str = field(default="cpu", metadata={"help": "Torch device, e.g. cpu or cuda."})

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}.")
        if self.max_pixels < 0:
            raise ValueError(f"--max_pixels must be >= 0 (0 = no limit), got {self.max_pixels}.")


ARGUMENTS = (ScoreArguments,)


def _read_inputs(args: ScoreArguments) -> tuple[list, list[str]]:
    """Readable images, each downscaled to ``--max_pixels`` with a note; one error line per unreadable file."""
    images, errors = read_images(args.images)
    fitted = []
    for name, image in images:
        small = fit_to_pixels(image, args.max_pixels)
        if small is not image:
            print(
                f"note: {name} is {image.width}x{image.height}, over --max_pixels {args.max_pixels}: scored at "
                f"{small.width}x{small.height}.",
                file=sys.stderr,
            )
        fitted.append((name, small))
    return fitted, errors


def _score_batches(model, images: list, args: ScoreArguments):
    """Yield ``(name, image, record)`` per image, same-size images batched ``--batch_size`` at a time."""
    from ..models import FinPercepImageProcessor
    from ..pipelines import output_to_records

    processor = FinPercepImageProcessor()
    by_size = sorted(images, key=lambda item: item[1].size)
    progress = tqdm(total=len(images), desc="scoring", unit="img", disable=len(images) < 2, file=sys.stderr)
    for _, same_size in groupby(by_size, key=lambda item: item[1].size):
        same_size = list(same_size)
        for start in range(0, len(same_size), args.batch_size):
            batch = same_size[start : start + args.batch_size]
            pixel_values = processor([image for _, image in batch])["pixel_values"].to(args.device)
            with torch.no_grad():
                records = output_to_records(model(pixel_values))
            for (name, image), record in zip(batch, records):
                yield name, image, record
            progress.update(len(batch))
    progress.close()


def run(args: ScoreArguments) -> int:
    from ..models import FinPercepCheckpointError, FinPercepRewardModel
    from ..visualization import save_pdm_overlay

    if args.out is not None:
        with output_errors_exit(args.out):
            check_output_dir(args.out)
    try:
        model = FinPercepRewardModel.from_pretrained(args.model).to(args.device).eval()
    except FinPercepCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD_ERROR
    images, errors = _read_inputs(args)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    stems = relative_output_names([name for name, _ in images])
    with output_errors_exit(args.out), ExitStack() as stack:
        jsonl = stack.enter_context((args.out / "scores.jsonl").open("w")) if args.out is not None else None
        for name, image, record in _score_batches(model, images, args):
            pdm = record.pop("pdm")
            line = {"path": name, **record}
            if pdm is not None:
                line.update(pdm_mean=float(np.mean(pdm)), pdm_max=float(np.max(pdm)))
            print(json.dumps(line), flush=True)
            if args.out is not None:
                title = f"{Path(name).name}  score {line['score']:.3f}  base {line['base_score']:.3f}"
                overlay = args.out / f"{stems[name]}_pdm.png"
                save_pdm_overlay(image, pdm, overlay, title=title)
                jsonl.write(json.dumps({**line, "overlay": overlay.relative_to(args.out).as_posix()}) + "\n")
    return EXIT_BAD_INPUT if errors else EXIT_OK


__all__ = ["ARGUMENTS", "DESCRIPTION", "HELP", "NAME", "ScoreArguments", "run"]
