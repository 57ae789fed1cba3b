"""``finpercep quickstart``: the offline end-to-end default (FGR-mini -> RM_0..RM_N -> held-out report)."""

from __future__ import annotations

import argparse
from pathlib import Path

BUDGETS = ("fast", "full")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="Offline end to end: build FGR-mini from bundled photos, pre-train RM_0, grow RM_1..RM_3, report on "
        "held-out photos (with leave-kinds-out and 96/256 px tables).",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="Output directory.")
    parser.add_argument(
        "--budget", choices=BUDGETS, default="fast", help="fast: a few minutes on 2 cores; full: up to 15 minutes."
    )
    parser.add_argument("--encoder-type", choices=("backbone", "clip"), default=None, help="Encoder of RM_0.")
    parser.add_argument("--train-samples", type=int, default=None, help="FGR-mini training samples.")
    parser.add_argument("--heldout-samples", type=int, default=None, help="Held-out samples.")
    parser.add_argument("--stage-steps", default=None, help="Steps per stage, e.g. '0,150,100,100'.")
    parser.add_argument("--crop-size", type=int, default=None, help="Crop side of FGR-mini samples (pixels).")
    parser.add_argument("--seed", type=int, default=None, help="Seed of data and training.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..quickstart import QuickstartConfig, run_quickstart

    overrides = {
        "train_samples": args.train_samples,
        "heldout_samples": args.heldout_samples,
        "stage_steps": args.stage_steps,
        "crop_size": args.crop_size,
        "seed": args.seed,
        "encoder_type": args.encoder_type,
    }
    config = QuickstartConfig.for_budget(
        args.budget, **{key: value for key, value in overrides.items() if value is not None}
    )
    run_quickstart(args.out, config)
    return 0


__all__ = ["register", "run"]
