"""``finpercep probe``: the reward-hacking probe (paper Fig. 1a) for one or more reward models.

Exit codes: 0 done, 1 a reward model could not be loaded, 2 bad input (options, unreadable images).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from ..evaluation.artifacts import ARTIFACTS
from ..evaluation.probe import FinPercepProbeConfig, run_probe
from ..images import read_images
from .evaluate import parse_named_path

CONFIG_HELP = {item.name: item.metadata["help"] for item in fields(FinPercepProbeConfig)}


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = FinPercepProbeConfig()
    parser = subparsers.add_parser(
        "probe",
        help="Reward-hacking probe: implant local artifacts and check that each reward model notices them.",
        description="For each image, implants blur, noise, JPEG blocks, oversharpening, hallucinated texture and a "
        "colour shift locally (several area fractions) and globally, then reports per reward model the score drop, "
        "whether clean > locally distorted > globally distorted, and the PDM's localisation AUROC. Writes "
        "probe.csv, summary.csv, summary.md, plots/ and overlays/. With no --images, uses scikit-image's photos.",
    )
    parser.add_argument(
        "--rm",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="FinPercep-RM checkpoint (directory or Hub id); repeat to compare models. NAME labels its rows.",
    )
    parser.add_argument("--images", nargs="+", default=[], help="Image files or directories (searched recursively).")
    parser.add_argument("--out", type=Path, required=True, help="Output directory.")
    parser.add_argument(
        "--artifacts", default=",".join(defaults.artifacts), help=f"Comma-separated; {CONFIG_HELP['artifacts']}"
    )
    parser.add_argument(
        "--areas",
        default=",".join(f"{area:g}" for area in defaults.area_fractions),
        help=f"Comma-separated. {CONFIG_HELP['area_fractions']}",
    )
    for name in ("seed", "max_side", "batch_size", "overlay_images"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name), help=CONFIG_HELP[name]
        )
    parser.add_argument("--device", default=defaults.device, help=CONFIG_HELP["device"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import FinPercepCheckpointError, FinPercepRewardModel

    try:
        config = FinPercepProbeConfig(
            artifacts=tuple(kind.strip() for kind in args.artifacts.split(",") if kind.strip()),
            area_fractions=tuple(float(area) for area in args.areas.split(",") if area.strip()),
            seed=args.seed,
            max_side=args.max_side,
            batch_size=args.batch_size,
            device=args.device,
            overlay_images=args.overlay_images,
        )
        named = [parse_named_path(value) for value in args.rm]
        if len({name for name, _ in named}) != len(named):
            raise ValueError(f"reward-model names must be unique, got {[name for name, _ in named]} (--rm NAME=PATH).")
    except ValueError as error:
        print(f"error: {error} (artifacts: {', '.join(ARTIFACTS)})", file=sys.stderr)
        return 2
    images, errors = read_images(args.images)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if errors or not images:
        print(
            "error: no readable images to probe." if not images else "error: some images are unreadable.",
            file=sys.stderr,
        )
        return 2
    try:
        models = {name: FinPercepRewardModel.from_pretrained(str(path)).to(args.device).eval() for name, path in named}
    except FinPercepCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    run_probe(models, dict(images), args.out, config)
    print((args.out / "summary.md").read_text())
    return 0


__all__ = ["register", "run"]
