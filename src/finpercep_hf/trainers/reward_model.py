"""Training FinPercep-RM on FGR (paper Sec. 3.4-3.5.1): `FinPercepTrainingArguments` + `RewardModelTrainer`.

Paper: *FinPercep-RM: A Fine-grained Reward Model and Co-evolutionary Curriculum for RL-based Real-world
Super-Resolution* (Liu, Fan et al.).

```python
from datasets import load_from_disk
from finpercep_hf import FinPercepRewardModel
from finpercep_hf.curriculum import RewardModelGrowthCallback, build_curriculum_model
from finpercep_hf.trainers import FinPercepTrainingArguments, RewardModelTrainer

fgr = load_from_disk("fgr")  # see `finpercep build-fgr`
args = FinPercepTrainingArguments(output_dir="runs/rm", ccl_schedule="0:0,0:1,2000:2,4000:3", max_steps=6000)
rm0 = FinPercepRewardModel.from_clip("openai/clip-vit-base-patch16")
model = build_curriculum_model(rm0, final_stage=args.final_stage, lora_ranks=args.lora_rank_list)
trainer = RewardModelTrainer(model, args=args, train_dataset=fgr["train"], eval_dataset=fgr["test"],
                             anchor_model=rm0, callbacks=[RewardModelGrowthCallback(args.schedule, ccl=args.ccl)])
trainer.train(resume_from_checkpoint="latest")   # -> runs/rm/finpercep-rm-stage0 ... finpercep-rm-stage3
```

Each batch holds aligned (GT, SR, SYN, pdm_target, mask) crops. The three images run through the model in one
forward; the loss is Eq. 8 over Eq. 5 (map, on SYN), Eq. 6 (rank, S_SR < S_SYN < S_GT) and Eq. 7 (align, S(GT) to the
frozen RM_0's CLIP-IQA score of GT). In ``ccl="weight"`` mode ``lambda_map`` and ``lambda_rank`` ramp up per stage.

Checkpoints are atomic and pickle-free (see `checkpointing`): ``checkpoint-N`` is written as ``checkpoint-N.tmp`` and
renamed when complete; it holds safetensors weights and RNG states, JSON trainer, callback and argument states, and
optimizer/scheduler states that load with ``torch.load(weights_only=True)``. Augmentations are seeded per sample
from ``(seed, epoch, position)`` (`EpochShuffleSampler` + `SeededDataset`), so a resumed run ends with the same
weights as an uninterrupted one. ``resume_from_checkpoint="latest"`` with no checkpoint starts a new run.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import SchedulerType

from .. import checkpointing
from ..curriculum.growth import CCL_MODES, export_stage_model, loss_weight_scale
from ..curriculum.schedule import CCLSchedule
from ..data.samplers import EpochShuffleSampler, SeededDataset
from ..data.triplet_collator import IMAGE_COLUMNS, FinPercepTripletCollator
from ..evaluation.reward_model_eval import evaluate_reward_model
from ..losses import align_loss, map_bce_loss, map_loss, rank_loss, total_loss
from ..models import FinPercepRewardModel


def _int_list(text: str, name: str) -> list[int]:
    try:
        return [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}.") from error


@dataclass
class FinPercepTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the FinPercep-RM losses, curriculum and data fields.

    The paper publishes no loss weights or margins: every default of the "Losses" group is ours. L_map defaults to
    BCE on the map logits, not Eq. 5's L1 on the sigmoid map, which collapses to ``pdm == 0`` on sparse targets
    (see `losses.map_bce_loss`); ``map_loss="l1"`` restores the printed form.
    ``ccl_schedule`` gives each stage's start step (`CCLSchedule.from_string` with ``values="stage"``); the last
    stage ends at ``max_steps``.
    """

    # Losses (Eq. 5-8; defaults are ours)
    lambda_map: float = field(default=1.0, metadata={"help": "Weight of L_map (Eq. 5)."})
    map_loss: str = field(
        default="bce",
        metadata={"help": "L_map form: 'bce' (ours, default: BCE on the map logits) or 'l1' (Eq. 5 as printed)."},
    )
    lambda_rank: float = field(default=1.0, metadata={"help": "Weight of L_rank (Eq. 6, triplet hinge)."})
    lambda_align: float = field(default=1.0, metadata={"help": "Weight of L_align (Eq. 7, GT score anchor)."})
    margin_sr: float = field(default=0.05, metadata={"help": "m1 of Eq. 6: margin of S_SYN over S_SR."})
    margin_gt: float = field(default=0.05, metadata={"help": "m2 of Eq. 6: margin of S_GT over S_SYN."})
    # Curriculum (CCL path 1)
    ccl: str = field(
        default="param",
        metadata={"help": "'param' (grow stage by stage), 'weight' (full size, ramp lambda_map/rank), 'none'."},
    )
    ccl_schedule: str = field(
        default="0:0,0:1,2000:2,4000:3",
        metadata={
            "help": "START:STAGE per RM stage, e.g. '0:0,0:1,2000:2,4000:3': a stage runs from its start to the next "
            "one's (the last to max_steps); stage 0 (CLIP-IQA) takes no steps, so it shares stage 1's start."
        },
    )
    lora_ranks: str = field(
        default="", metadata={"help": "Encoder LoRA rank per stage >= 2, e.g. '4,8'; empty: 4, 8, 16, ..."}
    )
    # Data
    crop_size: int = field(default=224, metadata={"help": "Training crop side (random crops at several scales)."})
    augment: bool = field(default=True, metadata={"help": "Random crops, scales, flips and colour jitter."})
    rescale_crops: bool = field(
        default=True,
        metadata={
            "help": "With augment: crops of 0.6-1.0 x the short side resized to crop_size (True), or crop_size crops "
            "at the rows' own scale (False: no resampling of the artifacts)."
        },
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the FGR image columns."})
    # `TrainingArguments` defaults that differ for FinPercep-RM
    lr_scheduler_type: SchedulerType | str = field(
        default="constant_with_warmup", metadata={"help": "transformers LR scheduler name."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, augmentation and data order."})
    max_steps: int = field(
        default=6000, metadata={"help": "Total training steps; the last ccl_schedule stage ends here."}
    )

    def __post_init__(self):
        self._check_loss_and_data_fields()
        schedule = self._check_schedule_fields()
        if self.map_loss not in ("bce", "l1"):
            raise ValueError(f"map_loss must be 'bce' or 'l1', got {self.map_loss!r}.")
        if self.ccl not in CCL_MODES:
            raise ValueError(f"ccl must be one of {CCL_MODES}, got {self.ccl!r}.")
        final_stage = schedule.stages[-1].stage
        ranks = _int_list(self.lora_ranks, "lora_ranks") or [4 * 2**i for i in range(final_stage - 1)]
        if len(ranks) != final_stage - 1:
            raise ValueError(f"lora_ranks needs one rank per stage 2..{final_stage}, got {ranks}.")
        if any(rank < 1 for rank in ranks):
            raise ValueError(f"lora_ranks must all be >= 1, got {ranks}.")
        self.lora_rank_list = ranks
        super().__post_init__()

    def _check_schedule_fields(self) -> CCLSchedule:
        try:
            schedule = CCLSchedule.from_string(self.ccl_schedule, values="stage")
        except ValueError as error:
            raise ValueError(f"ccl_schedule {self.ccl_schedule!r}: {error}") from None
        stages, starts = [s.stage for s in schedule.stages], schedule.start_steps
        if stages != list(range(stages[0], stages[-1] + 1)) or stages[0] not in (0, 1) or stages[-1] < 1:
            raise ValueError(f"ccl_schedule stages must be consecutive, start at 0 or 1 and reach 1, got {stages}.")
        if stages[0] == 0 and starts[1] != 0:
            raise ValueError("ccl_schedule: stage 0 (CLIP-IQA) takes no training steps: start stage 1 at 0 too.")
        if self.max_steps < max(starts[-1], 1):
            raise ValueError(f"max_steps must be >= 1 and >= the last ccl_schedule start, got {self.max_steps}.")
        return schedule

    def _check_loss_and_data_fields(self) -> None:
        for name in ("lambda_map", "lambda_rank", "lambda_align", "margin_sr", "margin_gt"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
        if not isinstance(self.crop_size, int) or self.crop_size < 16:
            raise ValueError(f"crop_size must be an integer >= 16 (pixels), got {self.crop_size!r}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate}.")

    @property
    def schedule(self) -> CCLSchedule:
        return CCLSchedule.from_string(self.ccl_schedule, values="stage")

    @property
    def stage_list(self) -> list[int]:
        """The RM stages of ``ccl_schedule`` in order (stage 0 only if listed)."""
        return [stage.stage for stage in self.schedule.stages]

    @property
    def final_stage(self) -> int:
        return self.stage_list[-1]


def forward_triplet(model, anchor_model, inputs: dict[str, torch.Tensor]):
    """One forward of GT, SR and SYN through ``model`` (and of GT through the frozen ``anchor_model``).

    Returns ``(score_gt, score_sr, score_syn, pdm_syn, pdm_logits_syn, anchor_base_score_gt)``: (B,) scores and
    the SYN map and its logits (B, 1, H, W).
    """
    batch = inputs["image_gt"].shape[0]
    outputs = model(pixel_values=torch.cat([inputs[column] for column in IMAGE_COLUMNS]))
    score_gt, score_sr, score_syn = outputs.global_score.split(batch)
    with torch.no_grad():
        anchor_gt = anchor_model(pixel_values=inputs["image_gt"]).base_score
    return score_gt, score_sr, score_syn, outputs.pdm[2 * batch :], outputs.pdm_logits[2 * batch :], anchor_gt


class RewardModelTrainer(Trainer):
    """A `transformers.Trainer` for FinPercep-RM: Eq. 8 loss over FGR triplets, per-term logging, RM metrics.

    Args:
        model: the curriculum model (`build_curriculum_model`), or any `FinPercepRewardModel` of stage >= 1.
        args: `FinPercepTrainingArguments`.
        anchor_model: the frozen pre-trained RM_0 for L_align and the score-drift metric; by default a frozen
            export of ``model``'s stage 0 taken at construction.
        data_collator: by default `FinPercepTripletCollator(args.crop_size, args.augment, rescale=args.rescale_crops)`;
            `evaluate` always uses centre crops without augmentation.
    """

    def __init__(self, model: FinPercepRewardModel, args: FinPercepTrainingArguments, anchor_model=None, **kwargs):
        collator = FinPercepTripletCollator(args.crop_size, args.augment, rescale=args.rescale_crops, seed=args.seed)
        kwargs.setdefault("data_collator", collator)
        if kwargs.get("train_dataset") is not None:
            kwargs["train_dataset"] = SeededDataset(kwargs["train_dataset"])
        super().__init__(model=model, args=args, **kwargs)
        anchor = anchor_model if anchor_model is not None else export_stage_model(model, 0)
        self.anchor_model = anchor.to(self.args.device).eval().requires_grad_(False)
        self.schedule = args.schedule
        self._loss_terms: dict[str, list[float]] = defaultdict(list)

    # Seeded data order and augmentation

    def _get_train_sampler(self, train_dataset=None) -> EpochShuffleSampler:
        """Epoch order from ``(seed, epoch)`` and a per-sample augmentation seed (see `EpochShuffleSampler`)."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return EpochShuffleSampler(len(dataset), seed=self.args.seed, with_seeds=True)

    # Atomic, pickle-free checkpoints

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`; ``resume_from_checkpoint="latest"`` (or True) resumes from the newest complete checkpoint,
        or starts a new run (and says so) when there is none. Callback states come from ``callback_state.json``."""
        checkpoint = checkpointing.resolve_checkpoint(self.args.output_dir, resume_from_checkpoint)
        if checkpoint is not None:
            checkpointing.load_callback_states(self.callback_handler.callbacks, checkpoint)
        elif resume_from_checkpoint:
            print(f"No checkpoint in {self.args.output_dir}: starting a new run.")
        return super().train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint), **kwargs)

    def _get_output_dir(self, trial) -> str:
        staging = getattr(self, "_staging_dir", None)
        return str(staging) if staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Write ``checkpoint-N`` into ``checkpoint-N.tmp/``, then publish it atomically and prune old ones."""
        run_dir = Path(super()._get_output_dir(trial))
        final = run_dir / f"checkpoint-{self.state.global_step}"
        staging = checkpointing.partial_path(final)
        if self.args.should_save:
            checkpointing.prepare_partial(final)
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        if self.args.should_save:
            checkpointing.save_callback_states(self.callback_handler.callbacks, staging / final.name)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            checkpointing.publish_directory(staging / final.name, final)
            staging.rmdir()
            checkpointing.prune_checkpoints(run_dir, self.args.save_total_limit)
        self.accelerator.wait_for_everyone()

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Model (safetensors) and processor; the training arguments as JSON, not as a pickled ``.bin``."""
        if not self.args.should_save:
            return
        output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        (output_dir / "training_args.json").write_text(self.args.to_json_string())

    def _save_rng_state(self, output_dir: str) -> None:
        path = checkpointing.rng_states_file(output_dir, self.args.process_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpointing.save_rng_states(path, {})

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            path = checkpointing.rng_states_file(checkpoint, self.args.process_index)
            if path.is_file():
                checkpointing.load_rng_states(path, {})

    # Loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        triplet = forward_triplet(model, self.anchor_model, inputs)
        score_gt, score_sr, score_syn, pdm_syn, logits_syn, anchor_gt = triplet
        if self.args.map_loss == "l1":
            loss_map = map_loss(pdm_syn, inputs["pdm_target"])
        else:
            loss_map = map_bce_loss(logits_syn, inputs["pdm_target"])
        terms = {
            "map": loss_map,
            "rank": rank_loss(score_sr, score_syn, score_gt, self.args.margin_sr, self.args.margin_gt),
            "align": align_loss(score_gt, anchor_gt),
        }
        scale = loss_weight_scale(
            self.schedule.stage_at(self.state.global_step).stage,
            self.schedule.stage_at(0).stage,
            self.args.final_stage,
            self.args.ccl,
        )
        loss = total_loss(terms, self.args.lambda_map * scale, self.args.lambda_rank * scale, self.args.lambda_align)
        for name, value in terms.items():
            self._loss_terms[f"loss_{name}"].append(value.detach().item())
        return (loss, {"global_score": torch.stack([score_gt, score_sr, score_syn])}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_terms:
            logs.update({name: sum(values) / len(values) for name, values in self._loss_terms.items()})
            logs["stage"] = self.schedule.stage_at(max(self.state.global_step - 1, 0)).stage
            self._loss_terms.clear()
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """RM metrics on the eval set (see `evaluate_reward_model`), logged and passed to the callbacks."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluate() needs an eval_dataset.")
        with self._autocast():
            results = evaluate_reward_model(
                self.model, dataset, self.anchor_model, self.args.per_device_eval_batch_size, self.args.crop_size,
                device=self.args.device, progress=False,
            )  # fmt: skip
        self.model.train()
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in results.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _autocast(self):
        if self.args.bf16:
            return torch.autocast(self.args.device.type, dtype=torch.bfloat16)
        if self.args.fp16:
            return torch.autocast(self.args.device.type, dtype=torch.float16)
        return contextlib.nullcontext()


__all__ = ["FinPercepTrainingArguments", "RewardModelTrainer", "forward_triplet"]
