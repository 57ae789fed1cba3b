"""A tiny training run of one trainer for the SIGKILL / resume tests (`test_resume.py`), which run `train_and_save`
in forked processes; also a command for trying it by hand.

``python tests/resume_driver.py METHOD OUTPUT_DIR [--resume] [--kill-at-step K]`` trains METHOD (``rm``, ``refl``,
``dpo``, ``grpo``) for `MAX_STEPS` updates with a checkpoint every `CHECKPOINT_STEPS`, then writes every trainable
tensor to ``OUTPUT_DIR/final_weights.safetensors``. ``--kill-at-step K`` makes the process SIGKILL itself at the
end of update K (after the update, before any checkpoint of that step); ``FINPERCEP_TEST_KILL_DURING_SAVE`` kills it
inside a checkpoint write (see `finpercep_hf.checkpointing.crash_point`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import datasets
import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import make_fgr_rows  # noqa: E402
from rl_helpers import brightness  # noqa: E402

MAX_STEPS, CHECKPOINT_STEPS = 5, 2


class KillAtStep(TrainerCallback):
    def __init__(self, step: int | None):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def photos() -> dict:
    from PIL import Image
    from skimage import data

    return {name: Image.fromarray(getattr(data, name)()[:96, :128]).convert("RGB") for name in ("astronaut", "coffee")}


def run_generator(method: str, output_dir: Path, resume: bool, kill: KillAtStep) -> dict[str, torch.Tensor]:
    from finpercep_hf.data import LRHRDataset
    from finpercep_hf.generators import SDUpscalerGenerator, build_sd_upscaler_pipeline
    from finpercep_hf.trainers import (
        DiffusionDPOConfig,
        DiffusionDPOTrainer,
        DiffusionGRPOConfig,
        DiffusionGRPOTrainer,
        REFLConfig,
        REFLTrainer,
    )

    torch.manual_seed(0)
    generator = SDUpscalerGenerator.from_pipeline(build_sd_upscaler_pipeline("tiny"))
    common = dict(
        output_dir=str(output_dir), max_train_steps=MAX_STEPS, checkpointing_steps=CHECKPOINT_STEPS,
        train_batch_size=1, learning_rate=1e-2, validation_steps=0, report_to="none",
        resume_from_checkpoint="latest" if resume else None,
    )  # fmt: skip
    trainer_class, config_class, options = {
        "refl": (REFLTrainer, REFLConfig, dict(num_inference_steps=3, min_stop_step=1, gradient_accumulation_steps=2)),
        "dpo": (DiffusionDPOTrainer, DiffusionDPOConfig, dict(num_samples_per_image=2, num_inference_steps=2)),
        "grpo": (DiffusionGRPOTrainer, DiffusionGRPOConfig, dict(num_samples_per_image=2, num_inference_steps=3)),
    }[method]
    config = config_class(**{"gradient_accumulation_steps": 1, **common, **options})
    # 3 items: an epoch is 3 updates (REFL, 2 micro-batches per update: 2 updates, the second of one micro-batch)
    dataset = LRHRDataset([*photos().values(), photos()["astronaut"].transpose(0)], resolution=32)
    trainer = trainer_class(generator, reward=brightness, args=config, train_dataset=dataset, callbacks=[kill])
    trainer.train()
    return generator.lora_state_dict()


def run_reward_model(output_dir: Path, resume: bool, kill: KillAtStep) -> dict[str, torch.Tensor]:
    from finpercep_hf import FinPercepRewardModel
    from finpercep_hf.curriculum import RewardModelGrowthCallback, build_curriculum_model
    from finpercep_hf.tiny_clip import save_tiny_clip
    from finpercep_hf.trainers import FinPercepTrainingArguments, RewardModelTrainer

    clip_dir = output_dir.parent / "tiny-clip"
    if not clip_dir.is_dir():
        save_tiny_clip(clip_dir)
    args = FinPercepTrainingArguments(
        output_dir=str(output_dir), ccl_schedule="0:1,3:2", max_steps=MAX_STEPS,
        lora_ranks="2", per_device_train_batch_size=4, learning_rate=1e-3, crop_size=32, augment=True,
        save_strategy="steps", save_steps=CHECKPOINT_STEPS, report_to=[], use_cpu=True, seed=0, logging_steps=1,
        dataloader_num_workers=0,
    )  # fmt: skip
    torch.manual_seed(0)
    rm0 = FinPercepRewardModel.from_clip(str(clip_dir), stage=0).eval()
    model = build_curriculum_model(rm0, args.final_stage, args.lora_rank_list)
    rows = datasets.Dataset.from_dict(make_fgr_rows(photos(), 12, size=48))  # 12 rows: 3 updates per epoch
    growth = RewardModelGrowthCallback(args.schedule, ccl=args.ccl, evaluate_at_stage_end=False)
    trainer = RewardModelTrainer(model, args=args, train_dataset=rows, anchor_model=rm0, callbacks=[growth, kill])
    trainer.train(resume_from_checkpoint="latest" if resume else None)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def train_and_save(method: str, output_dir: Path, resume: bool = False, kill_at_step: int | None = None) -> Path:
    """Train ``method`` in ``output_dir``; returns the path of ``final_weights.safetensors``."""
    torch.set_num_threads(1)
    kill = KillAtStep(kill_at_step)
    if method == "rm":
        weights = run_reward_model(output_dir, resume, kill)
    else:
        weights = run_generator(method, output_dir, resume, kill)
    path = output_dir / "final_weights.safetensors"
    save_file({key: value.contiguous() for key, value in weights.items()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=("rm", "refl", "dpo", "grpo"))
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at-step", type=int, default=None)
    options = parser.parse_args()
    train_and_save(options.method, options.output_dir, options.resume, options.kill_at_step)


if __name__ == "__main__":
    main()
