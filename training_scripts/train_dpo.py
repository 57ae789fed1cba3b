"""Diffusion-DPO fine-tuning of a diffusion SR generator rewarded by FinPercep-RM under the co-evolutionary curriculum.

```bash
accelerate launch training_scripts/train_dpo.py \
  --pretrained_model_name_or_path stabilityai/stable-diffusion-x4-upscaler \
  --train_data_dir ./hr_photos \
  --reward_schedule "0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1,1000:runs/rm/finpercep-rm-stage3" \
  --num_candidates 4 --beta_dpo 2500 --loss_type sigmoid --output_dir runs/dpo \
  --checkpointing_steps 100 --resume_from_checkpoint latest --validation_steps 100 --report_to tensorboard
```

Offline mode trains on pre-ranked pairs of a dataset instead of ranking sampled candidates, e.g. an FGR dataset
(SYN preferred over SR): ``--preference_source offline --dataset ./fgr --chosen_column image_syn
--rejected_column image_sr`` (LR = the bicubic downsampling of ``--image_column``).

Every `DPOConfig` field is a flag; the data, generator and reward flags are those of ``train_refl.py``. All the
logic lives in `finpercep_hf.trainers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from torch.utils.data import Dataset as TorchDataset
from train_refl import ScriptArguments, build_datasets
from transformers import HfArgumentParser

from finpercep_hf.curriculum import CCLRewardCallback, CCLSchedule
from finpercep_hf.generators import SDUpscalerGenerator
from finpercep_hf.rewards import as_reward_function
from finpercep_hf.trainers import DPOConfig, DPOTrainer, GeneratorTrainer, GeneratorTrainerConfig
from finpercep_hf.trainers.dpo import PreferencePairDataset


@dataclass
class DPOScriptArguments(ScriptArguments):
    chosen_column: str = field(default="image_syn", metadata={"help": "Offline mode: the preferred image column."})
    rejected_column: str = field(default="image_sr", metadata={"help": "Offline mode: the rejected image column."})


def load_train_split(path: str) -> Dataset:
    """The train split of a `save_to_disk` directory, a Parquet/ImageFolder directory or a Hub dataset."""
    try:
        table = load_from_disk(path)
    except FileNotFoundError:
        table = load_dataset(path, split="train")
    return table["train"] if isinstance(table, DatasetDict) else table


def build_preference_datasets(
    script_args: DPOScriptArguments, preference_source: str
) -> tuple[TorchDataset, TorchDataset]:
    """Online: the LR/HR pairs of ``train_refl.py``; offline: chosen/rejected crops of ``--dataset``."""
    if preference_source == "online":
        return build_datasets(script_args)
    if not script_args.dataset:
        raise ValueError("--preference_source offline needs --dataset with pre-ranked image columns.")
    table = load_train_split(script_args.dataset)
    columns = dict(
        chosen_column=script_args.chosen_column,
        rejected_column=script_args.rejected_column,
        gt_column=script_args.image_column,
        resolution=script_args.resolution,
    )
    train_dataset = PreferencePairDataset(table, random_crop=True, **columns)
    return train_dataset, PreferencePairDataset(table, random_crop=False, **columns)


def run_generator_training(
    trainer_class: type[GeneratorTrainer],
    script_args: ScriptArguments,
    config: GeneratorTrainerConfig,
    train_dataset: TorchDataset,
    eval_dataset: TorchDataset,
) -> None:
    """Load the generator and the first RM of ``--reward_schedule``, then train under the CCL reward callback."""
    config.base_model = config.base_model or script_args.pretrained_model_name_or_path

    # Load models
    generator = SDUpscalerGenerator.from_pretrained(
        script_args.pretrained_model_name_or_path,
        prompt=script_args.prompt,
        noise_level=script_args.noise_level,
        num_inference_steps=config.num_inference_steps,
    )
    schedule = CCLSchedule.from_string(script_args.reward_schedule)
    reward = as_reward_function(schedule.stages[0].checkpoint, reward_type=script_args.reward)

    # Train!
    trainer = trainer_class(
        generator,
        reward=reward,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        callbacks=[CCLRewardCallback(schedule)],
    )
    trainer.train()


def main() -> None:
    script_args, config = HfArgumentParser((DPOScriptArguments, DPOConfig)).parse_args_into_dataclasses()
    # Prepare dataset
    train_dataset, eval_dataset = build_preference_datasets(script_args, config.preference_source)
    run_generator_training(DPOTrainer, script_args, config, train_dataset, eval_dataset)


if __name__ == "__main__":
    main()
