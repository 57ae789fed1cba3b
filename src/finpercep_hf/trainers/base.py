"""The Accelerate training loop shared by the generator RL trainers (REFL, Diffusion-DPO, GRPO).

A trainer subclasses [`GeneratorTrainer`] and implements one method, ``compute_loss(batch) -> (loss, logs)``,
on an [`SRGenerator`](../generators/base.py) and a [`RewardFunction`](../rewards.py). The loop does the rest:

* gradient accumulation and mixed precision (``accelerator.accumulate`` / ``accelerator.autocast``), LoRA weights
  kept in float32, gradient clipping, AdamW + a diffusers LR schedule;
* atomic checkpoints: ``accelerator.save_state`` into ``checkpoint-N.tmp``, renamed to ``checkpoint-N`` once every
  process is done, the oldest removed beyond ``checkpoints_total_limit``; ``resume_from_checkpoint="latest"``
  restores weights (LoRA only, in diffusers format), optimizer, LR schedule, RNG states, the trainer state and the
  state of every callback that has ``state_dict``/``load_state_dict`` (e.g. the CCL stage);
* tracker logging (``report_to``), validation images and the reward-hacking monitor every ``validation_steps``;
* at the end: LoRA weights in ``output_dir`` (loadable by ``StableDiffusionUpscalePipeline.load_lora_weights``),
  a model card (diffusers' ``load_or_create_model_card``) and, optionally, ``push_to_hub``.

Callbacks are `transformers.TrainerCallback`s, called with ``(args, state, control, trainer=..., reward=...)``;
``state`` is a `transformers.TrainerState` whose ``global_step`` counts optimizer updates.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.utils.hub_utils import MODEL_CARD_TEMPLATE_PATH, load_or_create_model_card, populate_model_card
from huggingface_hub import ModelCard, ModelCardData
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from transformers import TrainerCallback, TrainerControl, TrainerState

from ..generators.base import SRGenerator
from ..images import list_images, load_image, pil_to_tensor
from ..rewards import RewardFunction, as_reward_function
from .monitor import RewardHackingMonitor

logger = get_logger(__name__)

MIXED_PRECISION = ("no", "fp16", "bf16")
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"


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


class LRHRDataset(Dataset):
    """LR/HR training pairs for SR generators: items ``{"image_lr": (3, h, w), "image_gt": (3, s*h, s*w)}`` in [0, 1].

    ``images_gt`` are HR images (paths or PIL); with no ``images_lr`` paired, LR is made from the HR crop by
    ``degrade(crop (3, H, W), seed) -> (3, H / scale, W / scale)`` (e.g. `finpercep_hf.data.degradations.degrade`,
    seeded per item), or by bicubic x``scale`` downsampling when ``degrade`` is None. Each item is a
    ``resolution`` crop of HR (random when ``random_crop``, else centred) and the matching LR. Images smaller than
    ``resolution`` are an error naming the image.
    """

    def __init__(
        self,
        images_gt: list,
        images_lr: list | None = None,
        resolution: int = 512,
        scale: int = 4,
        random_crop: bool = True,
        seed: int = 0,
        degrade: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    ):
        if resolution % scale:
            raise ValueError(f"resolution {resolution} must be a multiple of the scale {scale}.")
        if images_lr is not None and len(images_lr) != len(images_gt):
            raise ValueError(f"got {len(images_gt)} HR images but {len(images_lr)} LR images.")
        if not images_gt:
            raise ValueError("LRHRDataset needs at least one HR image.")
        self.images_gt, self.images_lr = images_gt, images_lr
        self.resolution, self.scale, self.random_crop = resolution, scale, random_crop
        self.rng = np.random.default_rng(seed)
        self.degrade = degrade

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> LRHRDataset:
        """HR images in ``directory`` (recursive); with ``gt/`` and ``lr/`` subfolders, pairs matched by name."""
        directory = Path(directory)
        if (directory / "gt").is_dir() and (directory / "lr").is_dir():
            images_gt = list_images([directory / "gt"])
            images_lr = [directory / "lr" / path.relative_to(directory / "gt") for path in images_gt]
            return cls(images_gt, images_lr, **kwargs)
        return cls(list_images([directory]), **kwargs)

    def __len__(self) -> int:
        return len(self.images_gt)

    @staticmethod
    def _open(item) -> Image.Image:
        return item.convert("RGB") if isinstance(item, Image.Image) else load_image(item)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_gt = self._open(self.images_gt[index])
        crop, scale = self.resolution, self.scale
        width, height = image_gt.size
        if width < crop or height < crop:
            raise ValueError(
                f"HR image {index} ({self.images_gt[index]}) is {width}x{height}, smaller than the "
                f"{crop}x{crop} crop (lower --resolution)."
            )
        lr_crop = crop // scale
        if self.random_crop:
            left = int(self.rng.integers(0, (width - crop) // scale + 1)) * scale
            top = int(self.rng.integers(0, (height - crop) // scale + 1)) * scale
        else:
            left, top = (width - crop) // (2 * scale) * scale, (height - crop) // (2 * scale) * scale
        gt = image_gt.crop((left, top, left + crop, top + crop))
        image_gt = pil_to_tensor(gt)
        if self.images_lr is not None:
            box = (left // scale, top // scale, left // scale + lr_crop, top // scale + lr_crop)
            image_lr = pil_to_tensor(self._open(self.images_lr[index]).crop(box))
        elif self.degrade is not None:
            image_lr = self.degrade(image_gt, int(self.rng.integers(0, 2**31)))
        else:
            image_lr = pil_to_tensor(gt.resize((lr_crop, lr_crop), Image.BICUBIC))
        return {"image_lr": image_lr, "image_gt": image_gt}


class GeneratorTrainer:
    """Shared loop of the generator RL trainers. Subclasses implement `compute_loss` (and set ``method_name``).

    Args:
        generator: an [`SRGenerator`] (e.g. [`SDUpscalerGenerator`]).
        reward: a reward function, a FinPercep-RM, a checkpoint path or a callable (see `as_reward_function`).
        args: the trainer's config (a [`GeneratorTrainerConfig`] subclass).
        train_dataset: items ``{"image_lr": (3, h, w), "image_gt": (3, H, W)}`` in [0, 1] (see [`LRHRDataset`]).
        eval_dataset: the validation pairs (default: the first ``num_validation_images`` of ``train_dataset``).
        callbacks: `transformers.TrainerCallback`s (e.g. [`CCLRewardCallback`]).
        monitor: the reward-hacking monitor (default: one whose held-out IQA is the reward's model at the start).
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
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)

        # Models: LoRA (or the full UNet) trainable, everything else frozen in weight_dtype.
        if args.use_lora and not generator.has_lora:
            generator.add_lora(rank=args.rank, alpha=args.lora_alpha)
        elif not args.use_lora:
            generator.trainable_model.requires_grad_(True)
        generator.to(self.accelerator.device, dtype=None if args.mixed_precision == "no" else self.weight_dtype)
        if args.gradient_checkpointing:
            generator.enable_gradient_checkpointing()
        self.reward.to(self.accelerator.device)
        self.monitor = monitor or RewardHackingMonitor.from_reward(self.reward)
        self.monitor.to(self.accelerator.device)

        # Data, optimizer, schedule.
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset if eval_dataset is not None else train_dataset
        self.train_dataloader = DataLoader(
            train_dataset,
            batch_size=args.train_batch_size,
            shuffle=True,
            num_workers=args.dataloader_num_workers,
            drop_last=len(train_dataset) >= args.train_batch_size * self.accelerator.num_processes,
        )
        self.optimizer = torch.optim.AdamW(
            list(generator.trainable_parameters()),
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
            eps=args.adam_epsilon,
        )
        self.lr_scheduler = get_scheduler(
            args.lr_scheduler,
            optimizer=self.optimizer,
            num_warmup_steps=args.lr_warmup_steps * self.accelerator.num_processes,
            num_training_steps=args.max_train_steps * self.accelerator.num_processes,
        )
        generator.trainable_model, self.optimizer, self.train_dataloader, self.lr_scheduler = self.accelerator.prepare(
            generator.trainable_model, self.optimizer, self.train_dataloader, self.lr_scheduler
        )

        # Checkpoint contents: LoRA weights (not the frozen UNet) and every stateful callback.
        self.accelerator.register_save_state_pre_hook(self._save_model_hook)
        self.accelerator.register_load_state_pre_hook(self._load_model_hook)
        for callback in self.callbacks:
            if hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict"):
                self.accelerator.register_for_checkpointing(callback)

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

    # To implement

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one micro-batch (with grad) and scalars to log (averaged over the update and processes)."""
        raise NotImplementedError

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

    def _save_model_hook(self, models: list, weights: list, output_dir: str) -> None:
        if self.args.use_lora:
            if self.accelerator.is_main_process:
                self.generator.save_lora_weights(output_dir)
            weights.clear()

    def _load_model_hook(self, models: list, input_dir: str) -> None:
        if self.args.use_lora:
            self.generator.load_lora_weights(input_dir)
            models.clear()

    def list_checkpoints(self) -> list[Path]:
        """Complete checkpoints in ``output_dir``, oldest first (``.tmp`` directories of a crash are ignored)."""
        if not self.output_dir.is_dir():
            return []
        found = [path for path in self.output_dir.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.match(path.name)]
        return sorted(found, key=lambda path: int(CHECKPOINT_PATTERN.match(path.name).group(1)))

    def save_checkpoint(self) -> Path:
        """Atomically write ``checkpoint-{global_step}`` and prune to ``checkpoints_total_limit``."""
        final = self.output_dir / f"checkpoint-{self.state.global_step}"
        partial = final.with_name(final.name + ".tmp")
        if self.accelerator.is_main_process and partial.exists():
            shutil.rmtree(partial)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(partial))
        if self.accelerator.is_main_process:
            self.state.save_to_json(str(partial / TRAINER_STATE_NAME))
        self.call_event("on_save", checkpoint_dir=partial)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            partial.rename(final)
            limit = self.args.checkpoints_total_limit
            if limit is not None:
                for old in self.list_checkpoints()[:-limit]:
                    shutil.rmtree(old)
            logger.info(f"Saved state to {final}")
        self.accelerator.wait_for_everyone()
        return final

    def _resolve_checkpoint(self) -> Path | None:
        resume = self.args.resume_from_checkpoint
        if not resume:
            return None
        if resume == "latest":
            checkpoints = self.list_checkpoints()
            if not checkpoints:
                logger.info(f"No checkpoint in {self.output_dir}; starting a new run.")
                return None
            return checkpoints[-1]
        path = Path(resume)
        path = path if path.is_dir() else self.output_dir / resume
        if not path.is_dir():
            raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint directory {resume!r}.")
        return path

    def load_checkpoint(self, path: Path) -> None:
        self.accelerator.load_state(str(path))
        saved = TrainerState.load_from_json(str(path / TRAINER_STATE_NAME))
        self.state.global_step = saved.global_step
        self.state.log_history = saved.log_history
        self.accelerator.print(f"Resumed from {path} at step {self.state.global_step}")

    # Validation

    def _validation_batch(self) -> dict[str, torch.Tensor]:
        count = min(self.args.num_validation_images, len(self.eval_dataset))
        items = [self.eval_dataset[index] for index in range(count)]
        return {key: torch.stack([item[key] for item in items]) for key in ("image_lr", "image_gt")}

    def validate(self) -> dict[str, float]:
        """Sample the validation LR images, run the hacking monitor, write images; main process only."""
        if not self.accelerator.is_main_process:
            return {}
        batch = self._validation_batch()
        wrapped = self.generator.trainable_model
        self.generator.trainable_model = self.accelerator.unwrap_model(wrapped)
        try:
            result = self.monitor.evaluate(
                self.generator,
                self.reward,
                batch["image_lr"],
                batch["image_gt"],
                num_inference_steps=self.args.validation_inference_steps,
                seed=self.args.seed,
            )
        finally:
            self.generator.trainable_model = wrapped
        step = self.state.global_step
        image_dir = self.output_dir / "validation" / f"step-{step}"
        written = self.monitor.write_images(result, image_dir)
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

    def train(self) -> TrainerState:
        args, accelerator = self.args, self.accelerator
        checkpoint = self._resolve_checkpoint()
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            tracker_config = {k: v for k, v in args.to_dict().items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers(args.tracker_project_name, config=tracker_config)
        batches_per_epoch = len(self.train_dataloader)
        if batches_per_epoch == 0:
            raise ValueError("the training dataset gives no batch (fewer items than train_batch_size x processes).")
        micro_batches_total = args.max_train_steps * args.gradient_accumulation_steps
        self.state.num_train_epochs = math.ceil(micro_batches_total / batches_per_epoch)
        self.call_event("on_train_begin")

        micro_batches_done = self.state.global_step * args.gradient_accumulation_steps
        skip = micro_batches_done % batches_per_epoch
        window_open, logs_sum, logs_count = False, {}, 0
        model = self.generator.trainable_model
        while self.state.global_step < args.max_train_steps:
            self.state.epoch = micro_batches_done / batches_per_epoch
            dataloader = accelerator.skip_first_batches(self.train_dataloader, skip) if skip else self.train_dataloader
            skip = 0
            for batch in dataloader:
                if not window_open:
                    self.call_event("on_step_begin")
                    window_open = True
                with accelerator.accumulate(model):
                    model.train()
                    with accelerator.autocast():
                        loss, step_logs = self.compute_loss(batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(self.optimizer.param_groups[0]["params"], args.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad()
                micro_batches_done += 1
                for key, value in {"loss": loss.detach().item(), **step_logs}.items():
                    logs_sum[key] = logs_sum.get(key, 0.0) + float(value)
                logs_count += 1
                if not accelerator.sync_gradients:
                    continue
                window_open = False
                self.state.global_step += 1
                keys = sorted(logs_sum)
                means = torch.tensor([logs_sum[key] / logs_count for key in keys], device=accelerator.device)
                means = accelerator.reduce(means, reduction="mean")
                logs = {f"train/{key}": value.item() for key, value in zip(keys, means)}
                logs["train/lr"] = self.lr_scheduler.get_last_lr()[0]
                logs_sum, logs_count = {}, 0
                self.log(logs)
                self.call_event("on_step_end")
                if self.state.global_step % args.checkpointing_steps == 0:
                    self.save_checkpoint()
                if args.validation_steps and self.state.global_step % args.validation_steps == 0:
                    self.validate()
                    accelerator.wait_for_everyone()
                if self.state.global_step >= args.max_train_steps:
                    break

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
        self.generator.trainable_model = self.accelerator.unwrap_model(self.generator.trainable_model)
        if self.args.use_lora:
            self.generator.save_lora_weights(self.output_dir)
        else:
            self.generator.save_trained_model(self.output_dir)
        (self.output_dir / "validation_history.json").write_text(json.dumps(self.validation_history, indent=2))
        self.save_model_card()
        if self.args.push_to_hub:
            from huggingface_hub import create_repo, upload_folder

            repo_id = create_repo(self.args.hub_model_id or self.output_dir.name, exist_ok=True).repo_id
            upload_folder(
                repo_id=repo_id,
                folder_path=str(self.output_dir),
                commit_message="End of training",
                ignore_patterns=["checkpoint-*", f"{self.args.logging_dir}/*"],
            )

    def model_card_description(self) -> str:
        """Markdown body of the model card: method, reward, usage, curriculum, last validation figures and panel."""
        method = self.method_name.upper()
        paper = f" ([paper]({self.paper_url}))" if self.paper_url else ""
        base, repo = self.args.base_model or "<base model>", self.args.hub_model_id or self.output_dir.name
        if self.args.use_lora:
            usage = [
                "from diffusers import StableDiffusionUpscalePipeline",
                f'pipe = StableDiffusionUpscalePipeline.from_pretrained("{base}")',
                f'pipe.load_lora_weights("{repo}")',
            ]
        else:
            usage = [
                "from diffusers import StableDiffusionUpscalePipeline, UNet2DConditionModel",
                f'unet = UNet2DConditionModel.from_pretrained("{repo}", subfolder="unet")',
                f'pipe = StableDiffusionUpscalePipeline.from_pretrained("{base}", unet=unet)',
            ]
        lines = [
            f"# {method} {'LoRA' if self.args.use_lora else 'fine-tuned UNet'} for an SR generator, "
            "rewarded by FinPercep-RM",
            "",
            f"Trained with `finpercep_hf` {method}{paper} for {self.state.global_step} updates from "
            f"`{self.args.base_model or 'an SD-x4-upscaler checkpoint'}`; reward: `{self.reward.name}`.",
            "",
            "```python",
            *usage,
            "```",
        ]
        lines += [f"\n{callback.describe()}" for callback in self.callbacks if hasattr(callback, "describe")]
        if self.validation_history:
            last = self.validation_history[-1]
            lines += ["", "## Last validation (reward-hacking monitor)", "", "| metric | value |", "|---|---|"]
            lines += [f"| {key} | {value:.4f} |" for key, value in last.items() if key != "step"]
            panel = Path("validation") / f"step-{last['step']}" / "0_panel.png"
            if (self.output_dir / panel).is_file():
                lines += ["", f"![LR (bicubic) | reference policy | trained policy | HR]({panel.as_posix()})"]
        return "\n".join(lines)

    def save_model_card(self) -> Path:
        """``output_dir/README.md`` from diffusers' training-card template. Only a run that pushes looks for a card
        already in its Hub repo (to build on it); a local run makes no network call."""
        if self.args.push_to_hub:
            card = load_or_create_model_card(
                self.args.hub_model_id or self.output_dir.name,
                from_training=True,
                model_description=self.model_card_description(),
                base_model=self.args.base_model,
            )
        else:
            card = ModelCard.from_template(
                ModelCardData(library_name="diffusers", base_model=self.args.base_model),
                template_path=MODEL_CARD_TEMPLATE_PATH,
                model_description=self.model_card_description(),
            )
        tags = ["super-resolution", "diffusers", "finpercep", self.method_name]
        tags += ["lora"] if self.args.use_lora else []
        card = populate_model_card(card, tags=tags)
        path = self.output_dir / "README.md"
        card.save(str(path))
        return path


__all__ = ["GeneratorTrainer", "GeneratorTrainerConfig", "LRHRDataset", "MIXED_PRECISION"]
