"""``finpercep score``: score images with a FinPercep reward model; JSON lines, and overlays with ``--out``.

Exit codes: 0 all images scored, 2 some inputs could not be read (they are reported; the others are scored),
1 the model could not be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..images import read_images


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="Score images: global score, CLIP-IQA base score and Perceptual Degradation Map statistics.",
        description="Prints one JSON line per image. With --out, writes scores.jsonl and a heatmap overlay PNG "
        "per image. With no IMAGES, scores the photos bundled with scikit-image.",
    )
    parser.add_argument("images", nargs="*", help="Image files or directories (searched recursively).")
    parser.add_argument("--model", required=True, help="FinPercep-RM checkpoint: a local directory or a Hub id.")
    parser.add_argument("--out", type=Path, default=None, help="Directory for scores.jsonl and overlay PNGs.")
    parser.add_argument("--batch-size", type=int, default=1, help="Images per forward (same-size images batch).")
    parser.add_argument("--device", default="cpu", help="Torch device, e.g. cpu or cuda.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import FinPercepCheckpointError, FinPercepImageProcessor, FinPercepRewardModel
    from ..pipelines import output_to_records
    from ..visualization import save_pdm_overlay

    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        model = FinPercepRewardModel.from_pretrained(args.model).to(args.device).eval()
    except FinPercepCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    processor = FinPercepImageProcessor()
    images, errors = read_images(args.images)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        jsonl = (args.out / "scores.jsonl").open("w")

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
                pdm = record.pop("pdm")
                line = {"path": name, **record}
                if pdm is not None:
                    line.update(pdm_mean=float(np.mean(pdm)), pdm_max=float(np.max(pdm)))
                print(json.dumps(line), flush=True)
                if args.out is not None:
                    stem = Path(name.replace("skimage:", "")).stem
                    title = f"{Path(name).name}  score {line['score']:.3f}  base {line['base_score']:.3f}"
                    overlay = save_pdm_overlay(image, pdm, args.out / f"{stem}_pdm.png", title=title)
                    jsonl.write(json.dumps({**line, "overlay": overlay.name}) + "\n")
            progress.update(len(batch))
    progress.close()
    if args.out is not None:
        jsonl.close()
    return 2 if errors else 0


__all__ = ["register", "run"]
