"""Diffusion-DPO fine-tuning of a diffusion SR generator rewarded by FinPercep-RM under the co-evolutionary curriculum.

```bash
accelerate launch training_scripts/train_dpo.py \
  --pretrained_model_name_or_path stabilityai/stable-diffusion-x4-upscaler \
  --train_data_dir ./hr_photos \
  --reward_schedule "0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1,1000:runs/rm/finpercep-rm-stage3" \
  --num_samples_per_image 4 --beta_dpo 2500 --loss_type sigmoid --output_dir runs/dpo \
  --checkpointing_steps 100 --resume_from_checkpoint latest --validation_steps 100 --report_to tensorboard
```

Offline mode trains on pre-ranked pairs of a dataset instead of ranking sampled candidates, e.g. an FGR dataset
(SYN preferred over SR): ``--preference_source offline --dataset ./fgr --chosen_column image_syn
--rejected_column image_sr`` (LR = the bicubic downsampling of ``--image_column``).

Every `DiffusionDPOConfig` field is a flag; the data, generator and reward flags are those of ``train_refl.py``. All
the logic lives in `finpercep_hf.trainers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset as TorchDataset
from train_refl import ScriptArguments, build_datasets, load_train_split, run_generator_training
from transformers import HfArgumentParser

from finpercep_hf.data import PreferencePairDataset
from finpercep_hf.trainers import DiffusionDPOConfig, DiffusionDPOTrainer


@dataclass
class DPOScriptArguments(ScriptArguments):
    chosen_column: str = field(default="image_syn", metadata={"help": "Offline mode: the preferred image column."})
    rejected_column: str = field(default="image_sr", metadata={"help": "Offline mode: the rejected image column."})


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


def main() -> None:
    script_args, config = HfArgumentParser((DPOScriptArguments, DiffusionDPOConfig)).parse_args_into_dataclasses()
    # Prepare dataset
    train_dataset, eval_dataset = build_preference_datasets(script_args, config.preference_source)
    run_generator_training(DiffusionDPOTrainer, script_args, config, train_dataset, eval_dataset)


if __name__ == "__main__":
    main()
