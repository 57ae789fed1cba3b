"""GRPO fine-tuning (stochastic DDIM policy) of a diffusion SR generator rewarded by FinPercep-RM under the
co-evolutionary curriculum.

```bash
accelerate launch training_scripts/train_grpo.py \
  --pretrained_model_name_or_path stabilityai/stable-diffusion-x4-upscaler \
  --train_data_dir ./hr_photos \
  --reward_schedule "0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1,1000:runs/rm/finpercep-rm-stage3" \
  --num_samples_per_image 8 --num_inference_steps 20 --eta 1.0 --clip_range 1e-4 --adv_clip_max 5 --kl_beta 0.0 \
  --output_dir runs/grpo --checkpointing_steps 100 --resume_from_checkpoint latest --validation_steps 100
```

Every `DiffusionGRPOConfig` field is a flag; the data, generator and reward flags are those of ``train_refl.py``. All
the logic lives in `finpercep_hf.trainers`.
"""

from __future__ import annotations

from train_refl import ScriptArguments, build_datasets, run_generator_training
from transformers import HfArgumentParser

from finpercep_hf.trainers import DiffusionGRPOConfig, DiffusionGRPOTrainer


def main() -> None:
    script_args, config = HfArgumentParser((ScriptArguments, DiffusionGRPOConfig)).parse_args_into_dataclasses()
    # Prepare dataset
    train_dataset, eval_dataset = build_datasets(script_args)
    run_generator_training(DiffusionGRPOTrainer, script_args, config, train_dataset, eval_dataset)


if __name__ == "__main__":
    main()
