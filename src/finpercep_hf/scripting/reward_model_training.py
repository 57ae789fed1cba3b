"""What ``train_reward_model.py`` runs: its model and data arguments, the FGR splits they name, RM_0 and the
curriculum model, the trainer, and the push of the stage checkpoints."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..cards import push_stage_dirs_to_hub
from ..checkpointing import resolve_checkpoint
from ..curriculum import RewardModelGrowthCallback, build_curriculum_model
from ..models import FinPercepRewardModel
from ..tiny_clip import save_tiny_clip
from ..trainers.reward_model import FinPercepTrainingArguments, RewardModelTrainer


@dataclass
class RewardModelScriptArguments:
    """The CLIP that RM_0 is built from and the FGR dataset of ``train_reward_model.py``."""

    dataset: str = field(metadata={"help": "FGR dataset: a local directory or a Hub dataset id."})
    base_clip: str | None = field(
        default=None, metadata={"help": "CLIP checkpoint (Hub id or local dir) that RM_0 is built from."}
    )
    tiny_clip: bool = field(default=False, metadata={"help": "Start from a tiny random CLIP (offline demo)."})
    decoder_channels: int = field(default=64, metadata={"help": "Decoder width of RM_1 and later stages."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "Split to evaluate on (default: 'test' if any)."})
    eval_fraction: float = field(
        default=0.05, metadata={"help": "Held-out fraction of the train split when there is no eval split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the train split (debugging)."})

    def __post_init__(self):
        if bool(self.base_clip) == self.tiny_clip:
            raise ValueError("pass exactly one of --base_clip CLIP and --tiny_clip.")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"--eval_fraction must be in [0, 1), got {self.eval_fraction}.")
        if self.decoder_channels < 1:
            raise ValueError(f"--decoder_channels must be >= 1, got {self.decoder_channels}.")


def resolve_resume_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """``latest`` -> the newest complete checkpoint in ``output_dir``, or None (a fresh start, logged)."""
    checkpoint = resolve_checkpoint(output_dir, resume_from_checkpoint)
    return None if checkpoint is None else str(checkpoint)


def load_fgr_splits(script_args: RewardModelScriptArguments, seed: int):
    """(train, eval or None) `datasets.Dataset`s of the FGR dataset named by ``script_args``."""
    import datasets

    try:
        dataset = datasets.load_dataset(script_args.dataset)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise ValueError(f"cannot load the FGR dataset {script_args.dataset!r}: {error}") from error
    train = dataset[script_args.train_split]
    eval_name = script_args.eval_split or ("test" if "test" in dataset else None)
    if eval_name is not None:
        evaluation = dataset[eval_name]
    elif script_args.eval_fraction > 0:
        split = train.train_test_split(test_size=script_args.eval_fraction, seed=seed)
        train, evaluation = split["train"], split["test"]
    else:
        evaluation = None
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    return train, evaluation


def build_reward_model_trainer(
    script_args: RewardModelScriptArguments, training_args: FinPercepTrainingArguments
) -> RewardModelTrainer:
    """The FGR splits, RM_0 from the CLIP, the curriculum model grown to the final stage, and the trainer.

    Raises `ValueError` (bad dataset) before any model loads, `FinPercepCheckpointError` when the CLIP cannot load.
    """
    train_dataset, eval_dataset = load_fgr_splits(script_args, training_args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        clip = str(save_tiny_clip(scratch)) if script_args.tiny_clip else script_args.base_clip
        rm0 = FinPercepRewardModel.from_clip(clip, decoder_channels=script_args.decoder_channels)
    model = build_curriculum_model(rm0, training_args.final_stage, training_args.lora_rank_list)
    growth = RewardModelGrowthCallback(
        training_args.schedule,
        ccl=training_args.ccl,
        evaluate_at_stage_end=eval_dataset is not None,
        training_data=script_args.dataset,
    )
    return RewardModelTrainer(
        model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        anchor_model=rm0,
        callbacks=[growth],
    )


def push_stage_checkpoints(trainer: RewardModelTrainer, hub_model_id: str | None) -> str | None:
    """With ``--push_to_hub``, upload every ``finpercep-rm-stage{k}`` dir (main process only); returns the URL."""
    args = trainer.args
    if not trainer.is_world_process_zero():
        return None
    return push_stage_dirs_to_hub(args.output_dir, hub_model_id or Path(args.output_dir).name, args.stage_list)


__all__ = [
    "RewardModelScriptArguments",
    "build_reward_model_trainer",
    "load_fgr_splits",
    "push_stage_checkpoints",
    "resolve_resume_checkpoint",
]
