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

Every `DiffusionDPOConfig` field is a flag; the data, generator and reward flags are
`GeneratorScriptArguments`' (as in ``train_refl.py``). Bad values exit with code 2 before any model loads.
All the logic lives in the package.
"""

from finpercep_hf.scripting import exit_on_bad_input, parse_arguments
from finpercep_hf.scripting.generator_training import (
    GeneratorScriptArguments,
    build_preference_datasets,
    train_generator,
)
from finpercep_hf.trainers import DiffusionDPOConfig, DiffusionDPOTrainer


def main() -> None:
    script_args, config = parse_arguments((GeneratorScriptArguments, DiffusionDPOConfig))
    # Prepare dataset
    with exit_on_bad_input():
        train_dataset, eval_dataset = build_preference_datasets(script_args, config.preference_source)
    # Load models and train!
    train_generator(DiffusionDPOTrainer, script_args, config, train_dataset, eval_dataset)


if __name__ == "__main__":
    main()
