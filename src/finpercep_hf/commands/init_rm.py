"""``finpercep init``: build RM_k from a CLIP checkpoint (or a tiny random CLIP, offline) and save it."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init",
        help="Build a FinPercep-RM at a given stage from a CLIP checkpoint and save it (weights, processor, card).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--clip", help="CLIP checkpoint: Hub id (e.g. openai/clip-vit-base-patch16) or local dir.")
    source.add_argument(
        "--tiny-clip", action="store_true", help="Use a tiny random CLIP built locally (offline demo; untrained)."
    )
    parser.add_argument("--stage", type=int, default=0, help="Curriculum stage k of RM_k (0 = CLIP-IQA).")
    parser.add_argument("--out", type=Path, required=True, help="Output directory.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cards import save_reward_model
    from ..models import FinPercepCheckpointError, FinPercepRewardModel
    from ..tiny_clip import save_tiny_clip

    with tempfile.TemporaryDirectory() as scratch:
        clip = str(save_tiny_clip(scratch)) if args.tiny_clip else args.clip
        try:
            model = FinPercepRewardModel.from_clip(clip, stage=args.stage)
        except (FinPercepCheckpointError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if args.tiny_clip:
            model.config.clip_name_or_path = "tiny random CLIP (finpercep_hf.tiny_clip)"
    save_reward_model(model, args.out, untrained=True)
    print(f"saved RM_{args.stage} to {args.out}")
    return 0


__all__ = ["register", "run"]
