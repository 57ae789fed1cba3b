"""The Accelerate training loop shared by the generator RL trainers (REFL, Diffusion-DPO, GRPO).

A trainer subclasses [`GeneratorTrainer`] and implements ``compute_loss(batch) -> (loss, logs)`` on an
[`SRGenerator`](../generators/base.py) and a [`RewardFunction`](../rewards.py). The loop does the rest:

* gradient accumulation and mixed precision (``accelerator.accumulate`` / ``accelerator.autocast``), LoRA weights
  kept in float32, gradient clipping, AdamW + a diffusers LR schedule;
* randomness from the trainer's own seeded ``torch.Generator`` (``self.rng``, one per process; noise, timesteps,
  stop steps) and an epoch order that is a function of ``(seed, epoch)`` (`EpochShuffleSampler`), so a resumed run
  ends with the same weights, bit for bit, as an uninterrupted one;
* atomic checkpoints (see `checkpointing`): ``checkpoint-N.tmp`` renamed to ``checkpoint-N`` once complete, the
  oldest removed beyond ``checkpoints_total_limit``; ``resume_from_checkpoint="latest"`` restores weights (LoRA only,
  in diffusers format), optimizer, LR schedule, RNG states, the trainer state and the JSON state of every callback
  that has ``state_dict``/``load_state_dict`` (e.g. the CCL stage). No file of a checkpoint needs unpickling;
* tracker logging (``report_to``), validation images and the reward-hacking monitor every ``validation_steps``;
* at the end: LoRA weights in ``output_dir`` (loadable by ``StableDiffusionUpscalePipeline.load_lora_weights``),
  a model card and, optionally, ``push_to_hub`` (see `generator_card`).

A subclass implements ``compute_loss(batch) -> (loss, logs)``; one whose backward is split over several graphs
(GRPO) overrides ``training_step`` instead.

Callbacks are `transformers.TrainerCallback`s, called with ``(args, state, control, trainer=..., reward=...)``;
``state`` is a `transformers.TrainerState` whose ``global_step`` counts optimizer updates.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from transformers import TrainerCallback, TrainerControl, TrainerState

from .. import checkpointing
from ..data.samplers import EpochShuffleSampler
from ..generators.base import SRGenerator
from ..rewards import RewardFunction, as_reward_function
from .generator_card import push_generator_run, save_generator_card
from .monitor import RewardHackingMonitor

logger = get_logger(__name__)

MIXED_PRECISION = ("no", "fp16", "bf16")
TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME, SCHEDULER_NAME, FULL_MODEL_NAME = "optimizer.pt", "scheduler.json", "unet.safetensors"
PROCESS_SEED_STRIDE = 7919  # the processes' generators are seeded seed, seed + 7919, ...


@dataclass
class GeneratorTrainerConfig:
    """Arguments shared by every generator RL trainer. Defaults follow ImageReward's ReFL script where it has one."""

    # Output
    output_dir: str = field(default="runs/generator", metadata={"help": "Checkpoints, logs, LoRA weights, card."})
    # Optimisation
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate (ReFL: 1e-5)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    lr_scheduler: str = field(default="constant", metadata={"help": "diffusers LR schedule name."})
    lr_warmup_steps: int = field(default=0, metadata={"help": "Warm-up steps of the LR schedule."})
    train_batch_size: int = field(default=2, metadata={"help": "Batch size per device (ReFL: 2)."})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "Micro-batches per update (ReFL: 4)."})
    max_train_steps: int = field(default=100, metadata={"help": "Optimizer updates to run (ReFL: 100)."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16 (frozen weights cast to it)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute UNet/VAE activations."})
    seed: int = field(default=0, metadata={"help": "Seed (made device-specific, so processes draw other noise)."})
    # LoRA
    use_lora: bool = field(default=True, metadata={"help": "Train LoRA adapters on the UNet (else the full UNet)."})
    rank: int = field(default=4, metadata={"help": "LoRA rank."})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (default: the rank)."})
    # Checkpointing
    checkpointing_steps: int = field(default=500, metadata={"help": "Save a resumable checkpoint every N updates."})
    checkpoints_total_limit: int | None = field(default=None, metadata={"help": "Keep at most N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint-N directory, or 'latest' for the newest in output_dir."}
    )
    # Validation and logging
    validation_steps: int = field(default=100, metadata={"help": "Validate (images + hacking monitor) every N."})
    num_validation_images: int = field(default=4, metadata={"help": "Validation LR/HR pairs."})
    validation_inference_steps: int = field(default=40, metadata={"help": "Sampling steps at validation."})
    report_to: str = field(default="tensorboard", metadata={"help": "Accelerate tracker(s), or 'none'."})
    logging_dir: str = field(default="logs", metadata={"help": "Tracker directory, relative to output_dir."})
    tracker_project_name: str = field(default="finpercep-generator-rl", metadata={"help": "Tracker project."})
    # Hub
    push_to_hub: bool = field(default=False, metadata={"help": "Upload output_dir to the Hub at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id (default: output_dir's name)."})
    base_model: str | None = field(default=None, metadata={"help": "The generator checkpoint, for the model card."})

    def __post_init__(self):
        self.learning_rate = float(self.learning_rate)
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate}.")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
        for name in ("adam_epsilon", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        for name in ("adam_weight_decay", "lr_warmup_steps", "dataloader_num_workers", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0 or None (= the rank), got {self.lora_alpha}.")
        if self.resume_from_checkpoint is not None and not str(self.resume_from_checkpoint).strip():
            raise ValueError("resume_from_checkpoint must be a checkpoint directory, 'latest', or None.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}.")
        for name in (
            "max_train_steps",
            "train_batch_size",
            "gradient_accumulation_steps",
            "checkpointing_steps",
            "num_validation_images",
            "validation_inference_steps",
            "rank",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.validation_steps < 0:
            raise ValueError(f"validation_steps must be >= 0 (0 = never), got {self.validation_steps}.")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"checkpoints_total_limit must be >= 1 or None, got {self.checkpoints_total_limit}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GeneratorTrainer:
    """Shared loop of the generator RL trainers. Subclasses implement `compute_loss` (and set ``method_name``).

    Args:
        generator: an [`SRGenerator`] (e.g. [`SDUpscalerGenerator`]).
        reward: a reward function, a FinPercep-RM, a checkpoint path or a callable (see `as_reward_function`).
        args: the trainer's config (a [`GeneratorTrainerConfig`] subclass).
        train_dataset: items ``{"image_lr": (3, h, w), "image_gt": (3, H, W)}`` in [0, 1] (see [`LRHRDataset`]);
            if it has ``set_epoch(epoch)`` it is called before every epoch (random crops per epoch).
        eval_dataset: the validation pairs (default: the first ``num_validation_images`` of ``train_dataset``).
        callbacks: `transformers.TrainerCallback`s (e.g. [`CCLRewardCallback`]).
        monitor: the reward-hacking monitor (default: one whose held-out IQA is the reward's model at the start).

    Attributes:
        rng: the ``torch.Generator`` (on the accelerator's device, seeded ``seed + 7919 * process_index``) that every
            random draw of a trainer uses; its state is part of each checkpoint.
    """

    method_name = "generator-rl"
    paper_url = ""

    def __init__(
        self,
        generator: SRGenerator,
        reward,
        args: GeneratorTrainerConfig,
        train_dataset: Dataset,
        eval_dataset: Dataset | None = None,
        callbacks: list[TrainerCallback] | None = None,
        monitor: RewardHackingMonitor | None = None,
    ):
        self.args = args
        self.generator = generator
        self.reward: RewardFunction = as_reward_function(reward)
        self.callbacks = list(callbacks or [])
        checkpointing.stateful_callbacks(self.callbacks)  # two stateful callbacks of one class are an error now
        self.output_dir = Path(args.output_dir)
        report_to = None if args.report_to in ("none", "", None) else args.report_to
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / args.logging_dir)
            ),
        )
        set_seed(args.seed, device_specific=True)
        self.rng = torch.Generator(device=self.accelerator.device)
        self.rng.manual_seed(args.seed + PROCESS_SEED_STRIDE * self.accelerator.process_index)
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)
        self._prepare_generator()
        self.reward.to(self.accelerator.device)
        self.monitor = monitor or RewardHackingMonitor.from_reward(self.reward)
        self.monitor.to(self.accelerator.device)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset if eval_dataset is not None else train_dataset
        self._prepare_optimisation()
        self.state = TrainerState(
            max_steps=args.max_train_steps,
            save_steps=args.checkpointing_steps,
            eval_steps=args.validation_steps,
            train_batch_size=args.train_batch_size,
            is_local_process_zero=self.accelerator.is_local_main_process,
            is_world_process_zero=self.accelerator.is_main_process,
        )
        self.control = TrainerControl()
        self.validation_history: list[dict[str, float]] = []

    def _prepare_generator(self) -> None:
        """LoRA (or the full UNet) trainable, everything else frozen in ``weight_dtype``, on the device."""
        args, generator = self.args, self.generator
        if args.use_lora and not generator.has_lora:
            generator.add_lora(rank=args.rank, alpha=args.lora_alpha)
        elif not args.use_lora:
            generator.trainable_model.requires_grad_(True)
        generator.to(self.accelerator.device, dtype=None if args.mixed_precision == "no" else self.weight_dtype)
        if args.gradient_checkpointing:
            generator.enable_gradient_checkpointing()

    def _prepare_optimisation(self) -> None:
        """Data loader (seeded epoch order), AdamW, LR schedule; the trainable model becomes its DDP wrapper once."""
        args, accelerator = self.args, self.accelerator
        self.train_sampler = EpochShuffleSampler(len(self.train_dataset), seed=args.seed)
        self.train_dataloader = DataLoader(
            self.train_dataset,
            batch_size=args.train_batch_size,
            sampler=self.train_sampler,
            num_workers=args.dataloader_num_workers,
            drop_last=len(self.train_dataset) >= args.train_batch_size * accelerator.num_processes,
        )
        self.optimizer = torch.optim.AdamW(
            list(self.generator.trainable_parameters()),
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
            eps=args.adam_epsilon,
        )
        self.lr_scheduler = get_scheduler(
            args.lr_scheduler,
            optimizer=self.optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=args.max_train_steps * accelerator.num_processes,
        )
        prepared = accelerator.prepare(
            self.generator.trainable_model, self.optimizer, self.train_dataloader, self.lr_scheduler
        )
        self.generator.trainable_model, self.optimizer, self.train_dataloader, self.lr_scheduler = prepared

    # To implement

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one micro-batch (with grad) and scalars to log (averaged over the update and processes)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward and backward of one micro-batch (inside ``accelerator.accumulate``); returns the detached loss
        and the scalars to log. Override it when the backward is split over several graphs (GRPO)."""
        with self.accelerator.autocast():
            loss, logs = self.compute_loss(batch)
        self.accelerator.backward(loss)
        return loss.detach(), logs

    # Callbacks

    def call_event(self, event: str, **kwargs) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self.args, self.state, self.control, trainer=self, reward=self.reward, **kwargs)

    def log(self, logs: dict[str, float]) -> None:
        """Log scalars at the current step to the trackers and the state's history (main process)."""
        step = self.state.global_step
        self.accelerator.log(logs, step=step)
        self.state.log_history.append({**logs, "step": step})
        self.call_event("on_log", logs=logs)

    # Checkpoints

    def list_checkpoints(self) -> list[Path]:
        """Complete checkpoints in ``output_dir``, oldest first (``.tmp`` directories of a crash are ignored)."""
        return checkpointing.list_checkpoints(self.output_dir)

    def _save_weights(self, directory: Path) -> None:
        if self.args.use_lora:
            self.generator.save_lora_weights(directory)
        else:
            model = self.accelerator.unwrap_model(self.generator.trainable_model)
            state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
            save_file(state, str(directory / FULL_MODEL_NAME))

    def _load_weights(self, directory: Path) -> None:
        if self.args.use_lora:
            self.generator.load_lora_weights(directory)
        else:
            model = self.accelerator.unwrap_model(self.generator.trainable_model)
            model.load_state_dict(load_file(str(directory / FULL_MODEL_NAME), device=str(self.accelerator.device)))

    def save_checkpoint(self) -> Path:
        """Atomically write ``checkpoint-{global_step}`` (weights, optimizer, LR schedule, RNGs, trainer and callback
        state) and prune to ``checkpoints_total_limit``."""
        accelerator = self.accelerator
        final = self.output_dir / f"checkpoint-{self.state.global_step}"
        partial = checkpointing.partial_path(final)
        if accelerator.is_main_process:
            checkpointing.prepare_partial(final)
            self._save_weights(partial)
            torch.save(self.optimizer.state_dict(), partial / OPTIMIZER_NAME)
            checkpointing.save_json(partial / SCHEDULER_NAME, self.lr_scheduler.state_dict())
            self.state.save_to_json(str(partial / TRAINER_STATE_NAME))
            checkpointing.save_callback_states(self.callbacks, partial)
        accelerator.wait_for_everyone()
        checkpointing.save_rng_states(
            checkpointing.rng_states_file(partial, accelerator.process_index), {"trainer": self.rng}
        )
        self.call_event("on_save", checkpoint_dir=partial)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            checkpointing.publish_directory(partial, final)
            checkpointing.prune_checkpoints(self.output_dir, self.args.checkpoints_total_limit)
            logger.info(f"Saved state to {final}")
        accelerator.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything `save_checkpoint` wrote (each process its own RNG state)."""
        device = self.accelerator.device
        self._load_weights(path)
        self.optimizer.load_state_dict(torch.load(path / OPTIMIZER_NAME, map_location=device, weights_only=True))
        self.lr_scheduler.load_state_dict(checkpointing.load_json(path / SCHEDULER_NAME))
        rng_file = checkpointing.rng_states_file(path, self.accelerator.process_index)
        if not rng_file.is_file():
            raise FileNotFoundError(
                f"{rng_file} is missing: resume with the number of processes the checkpoint was written with."
            )
        checkpointing.load_rng_states(rng_file, {"trainer": self.rng})
        saved = TrainerState.load_from_json(str(path / TRAINER_STATE_NAME))
        self.state.global_step = saved.global_step
        self.state.log_history = saved.log_history
        checkpointing.load_callback_states(self.callbacks, path)
        self.accelerator.print(f"Resumed from {path} at step {self.state.global_step}")

    # Validation

    def _validation_batch(self) -> dict[str, torch.Tensor]:
        count = min(self.args.num_validation_images, len(self.eval_dataset))
        items = [self.eval_dataset[index] for index in range(count)]
        return {key: torch.stack([item[key] for item in items]) for key in ("image_lr", "image_gt")}

    def validate(self) -> dict[str, float]:
        """Sample the validation LR images and run the hacking monitor on every process (the DDP forward is
        collective); the main process writes the images and logs. Returns the logged scalars (main process)."""
        batch = self._validation_batch()
        result = self.monitor.evaluate(
            self.generator,
            self.reward,
            batch["image_lr"],
            batch["image_gt"],
            num_inference_steps=self.args.validation_inference_steps,
            seed=self.args.seed,
        )
        if not self.accelerator.is_main_process:
            return {}
        step = self.state.global_step
        written = self.monitor.write_images(result, self.output_dir / "validation" / f"step-{step}")
        scalars = {f"validation/{key}": value for key, value in result.scalars.items()}
        self.log(scalars)
        self._log_images(written, step)
        self.validation_history.append({"step": step, **result.scalars})
        self.call_event("on_evaluate", metrics=scalars)
        return scalars

    def _log_images(self, images: dict[str, list[Path]], step: int) -> None:
        for tracker in self.accelerator.trackers:
            for name, paths in images.items():
                arrays = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])
                if tracker.name == "tensorboard":
                    tracker.writer.add_images(f"validation/{name}", arrays, step, dataformats="NHWC")
                elif tracker.name == "wandb":
                    import wandb

                    tracker.log({f"validation/{name}": [wandb.Image(array) for array in arrays]}, step=step)

    # Training loop

    def _begin_training(self) -> int:
        """Resume if asked, start the trackers, call ``on_train_begin``; returns the number of batches per epoch."""
        args, accelerator = self.args, self.accelerator
        checkpoint = checkpointing.resolve_checkpoint(self.output_dir, args.resume_from_checkpoint)
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
        elif args.resume_from_checkpoint:
            accelerator.print(f"No checkpoint in {self.output_dir}: starting a new run.")
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            tracker_config = {k: v for k, v in args.to_dict().items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers(args.tracker_project_name, config=tracker_config)
        batches_per_epoch = len(self.train_dataloader)
        if batches_per_epoch == 0:
            raise ValueError("the training dataset gives no batch (fewer items than train_batch_size x processes).")
        self.state.num_train_epochs = math.ceil(args.max_train_steps / self.updates_per_epoch(batches_per_epoch))
        self.call_event("on_train_begin")
        return batches_per_epoch

    def updates_per_epoch(self, batches_per_epoch: int) -> int:
        """Optimizer updates per epoch: the last window of an epoch may be shorter (accelerate syncs at its end)."""
        return math.ceil(batches_per_epoch / self.args.gradient_accumulation_steps)

    def _epoch_batches(self, epoch: int, skip: int, batches_per_epoch: int):
        """The batches of ``epoch`` with the first ``skip`` left out; the sampler, the dataset and accelerate's
        loader all told the epoch (accelerate re-sets the sampler's epoch from its own counter at every pass)."""
        self.state.epoch = epoch + skip / batches_per_epoch
        self.train_sampler.set_epoch(epoch)
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        loader = self.accelerator.skip_first_batches(self.train_dataloader, skip) if skip else self.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        return loader

    def _end_update(self, logs_sum: dict[str, float], logs_count: int) -> None:
        """After an optimizer update: log the means over the update and processes, checkpoint, validate."""
        args, accelerator = self.args, self.accelerator
        self.state.global_step += 1
        keys = sorted(logs_sum)
        means = torch.tensor([logs_sum[key] / logs_count for key in keys], device=accelerator.device)
        means = accelerator.reduce(means, reduction="mean")
        logs = {f"train/{key}": value.item() for key, value in zip(keys, means)}
        logs["train/lr"] = self.lr_scheduler.get_last_lr()[0]
        self.log(logs)
        self.call_event("on_step_end")
        if self.state.global_step % args.checkpointing_steps == 0:
            self.save_checkpoint()
        if args.validation_steps and self.state.global_step % args.validation_steps == 0:
            self.validate()
            accelerator.wait_for_everyone()

    def train(self) -> TrainerState:
        args, accelerator = self.args, self.accelerator
        batches_per_epoch = self._begin_training()
        epoch, update_in_epoch = divmod(self.state.global_step, self.updates_per_epoch(batches_per_epoch))
        skip = update_in_epoch * args.gradient_accumulation_steps
        window_open, logs_sum, logs_count = False, {}, 0
        model = self.generator.trainable_model
        while self.state.global_step < args.max_train_steps:
            for batch in self._epoch_batches(epoch, skip, batches_per_epoch):
                if not window_open:
                    self.call_event("on_step_begin")
                    window_open = True
                with accelerator.accumulate(model):
                    model.train()
                    loss, step_logs = self.training_step(batch)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(self.optimizer.param_groups[0]["params"], args.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad()
                for key, value in {"loss": loss.item(), **step_logs}.items():
                    logs_sum[key] = logs_sum.get(key, 0.0) + float(value)
                logs_count += 1
                if not accelerator.sync_gradients:
                    continue
                window_open = False
                self._end_update(logs_sum, logs_count)
                logs_sum, logs_count = {}, 0
                if self.state.global_step >= args.max_train_steps:
                    break
            epoch, skip = epoch + 1, 0

        self.save_final()
        self.call_event("on_train_end")
        accelerator.end_training()
        return self.state

    # End of training

    def save_final(self) -> None:
        """LoRA weights (or the UNet), the validation history and the model card in ``output_dir``; push if asked."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        if self.args.use_lora:
            self.generator.save_lora_weights(self.output_dir)
        if not self.args.use_lora or not hasattr(self.generator, "lora_pipeline_class"):
            # a feed-forward network has no pipeline to load a LoRA into: its merged weights go out too (spandrel)
            self.generator.save_trained_model(self.output_dir)
        (self.output_dir / "validation_history.json").write_text(json.dumps(self.validation_history, indent=2))
        save_generator_card(self)
        if self.args.push_to_hub:
            push_generator_run(self.args)


__all__ = ["GeneratorTrainer", "GeneratorTrainerConfig", "MIXED_PRECISION"]
