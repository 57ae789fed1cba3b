"""Train FinPercep-RM on an FGR dataset with the co-evolutionary curriculum (CCL path 1).

    accelerate launch training_scripts/train_reward_model.py --base_clip openai/clip-vit-base-patch16 \
        --dataset ./fgr-30k --stages 0,1,2,3 --stage_steps 0,2000,2000,2000 --output_dir runs/rm \
        [--ccl param|weight|none] [--resume_from_checkpoint latest] [--report_to tensorboard] \
        [--push_to_hub org/finpercep-rm]

Writes ``<output_dir>/finpercep-rm-stage{k}`` for every stage (plain `save_pretrained` dirs with model cards) and
``<output_dir>/checkpoint-N`` training checkpoints (adapters, optimizer, scheduler, RNG, curriculum state).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile

import datasets
import torch
from transformers.trainer_utils import get_last_checkpoint

from finpercep_hf import FinPercepCheckpointError, FinPercepRewardModel
from finpercep_hf.cards import push_stage_dirs_to_hub
from finpercep_hf.curriculum import RewardModelGrowthCallback, build_curriculum_model
from finpercep_hf.tiny_clip import save_tiny_clip
from finpercep_hf.trainers.reward_model import FinPercepTrainingArguments, RewardModelTrainer

logger = logging.getLogger("train_reward_model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train FinPercep-RM on FGR with the co-evolutionary curriculum.")
    # Model and data
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--base_clip", help="CLIP checkpoint (Hub id or local dir) that RM_0 is built from.")
    source.add_argument("--tiny_clip", action="store_true", help="Start from a tiny random CLIP (offline demo).")
    parser.add_argument("--dataset", required=True, help="FGR dataset: a local directory or a Hub dataset id.")
    parser.add_argument("--train_split", default="train", help="Split to train on.")
    parser.add_argument("--eval_split", default=None, help="Split to evaluate on (default: 'test' if present).")
    parser.add_argument(
        "--eval_fraction", type=float, default=0.05, help="Held-out fraction of the train split when no eval split."
    )
    parser.add_argument("--max_train_samples", type=int, default=None, help="Truncate the train split (debugging).")
    # Curriculum
    parser.add_argument("--stages", default="0,1,2,3", help="Comma-separated RM stages.")
    parser.add_argument("--stage_steps", default="0,2000,2000,2000", help="Training steps per stage.")
    parser.add_argument("--lora_ranks", default="", help="Encoder LoRA rank per stage >= 2 (default 4,8,16,...).")
    parser.add_argument("--ccl", default="param", choices=["param", "weight", "none"], help="Curriculum mode.")
    parser.add_argument("--decoder_channels", type=int, default=64, help="Decoder width.")
    # Losses (defaults are ours; the paper gives none)
    parser.add_argument("--lambda_map", type=float, default=1.0, help="Weight of L_map.")
    parser.add_argument("--lambda_rank", type=float, default=1.0, help="Weight of L_rank.")
    parser.add_argument("--lambda_align", type=float, default=1.0, help="Weight of L_align.")
    parser.add_argument("--margin_sr", type=float, default=0.05, help="m1 of Eq. 6.")
    parser.add_argument("--margin_gt", type=float, default=0.05, help="m2 of Eq. 6.")
    # Optimisation
    parser.add_argument("--output_dir", required=True, help="Where stage dirs and checkpoints go.")
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="Peak learning rate.")
    parser.add_argument("--lr_scheduler", default="constant_with_warmup", help="transformers scheduler name.")
    parser.add_argument("--warmup_steps", type=int, default=0, help="Warm-up steps.")
    parser.add_argument("--train_batch_size", type=int, default=8, help="Triplets per device per step.")
    parser.add_argument("--eval_batch_size", type=int, default=8, help="Triplets per device in evaluation.")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Accumulation steps.")
    parser.add_argument("--crop_size", type=int, default=224, help="Training crop side.")
    parser.add_argument("--no_augment", action="store_true", help="Disable crops/flips/jitter augmentation.")
    parser.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"], help="Mixed precision.")
    parser.add_argument("--gradient_checkpointing", action="store_true", help="Checkpoint the CLIP encoder.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    parser.add_argument("--dataloader_num_workers", type=int, default=0, help="Data loading processes.")
    # Checkpoints, logging, hub
    parser.add_argument("--checkpointing_steps", type=int, default=500, help="Save a training checkpoint every N.")
    parser.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints.")
    parser.add_argument(
        "--resume_from_checkpoint", default=None, help="A checkpoint dir, or 'latest' (the newest in output_dir)."
    )
    parser.add_argument("--logging_steps", type=int, default=10, help="Log every N steps.")
    parser.add_argument("--report_to", default="none", help="tensorboard, wandb, ... or none.")
    parser.add_argument("--push_to_hub", default=None, metavar="REPO_ID", help="Push the stage checkpoints here.")
    return parser.parse_args(argv)


def load_splits(args: argparse.Namespace) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    try:
        dataset = datasets.load_dataset(args.dataset)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise SystemExit(f"error: cannot load the FGR dataset {args.dataset!r}: {error}") from error
    train = dataset[args.train_split]
    eval_name = args.eval_split or ("test" if "test" in dataset else None)
    if eval_name is not None:
        evaluation = dataset[eval_name]
    elif args.eval_fraction > 0:
        split = train.train_test_split(test_size=args.eval_fraction, seed=args.seed)
        train, evaluation = split["train"], split["test"]
    else:
        evaluation = None
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    return train, evaluation


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    resume = get_last_checkpoint(args.output_dir) if args.resume_from_checkpoint == "latest" else None
    resume = resume or (args.resume_from_checkpoint if args.resume_from_checkpoint != "latest" else None)

    training_args = FinPercepTrainingArguments(
        output_dir=args.output_dir,
        stages=args.stages,
        stage_steps=args.stage_steps,
        lora_ranks=args.lora_ranks,
        ccl=args.ccl,
        lambda_map=args.lambda_map,
        lambda_rank=args.lambda_rank,
        lambda_align=args.lambda_align,
        margin_sr=args.margin_sr,
        margin_gt=args.margin_gt,
        learning_rate=args.learning_rate,
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=args.warmup_steps,
        per_device_train_batch_size=args.train_batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        crop_size=args.crop_size,
        augment=not args.no_augment,
        bf16=args.mixed_precision == "bf16",
        fp16=args.mixed_precision == "fp16",
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
        dataloader_num_workers=args.dataloader_num_workers,
        save_strategy="steps",
        save_steps=args.checkpointing_steps,
        save_total_limit=args.checkpoints_total_limit,
        logging_steps=args.logging_steps,
        report_to=[] if args.report_to == "none" else [args.report_to],
        use_cpu=not torch.cuda.is_available(),
    )

    # Load models
    with tempfile.TemporaryDirectory() as scratch:
        clip = str(save_tiny_clip(scratch)) if args.tiny_clip else args.base_clip
        try:
            rm0 = FinPercepRewardModel.from_clip(clip, decoder_channels=args.decoder_channels)
        except FinPercepCheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    model = build_curriculum_model(rm0, training_args.final_stage, training_args.lora_rank_list)

    # Prepare dataset
    train_dataset, eval_dataset = load_splits(args)

    # Train!
    growth = RewardModelGrowthCallback(
        training_args.schedule, ccl=args.ccl, evaluate_at_stage_end=eval_dataset is not None,
        training_data=args.dataset,
    )  # fmt: skip
    trainer = RewardModelTrainer(
        model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset, anchor_model=rm0,
        callbacks=[growth],
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)

    if args.push_to_hub and trainer.is_world_process_zero():
        push_stage_dirs_to_hub(args.output_dir, args.push_to_hub, training_args.stage_list)
    return 0


if __name__ == "__main__":
    sys.exit(main())
