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

Every `DiffusionGRPOConfig` field is a flag; the data, generator and reward flags are
`GeneratorScriptArguments`' (as in ``train_refl.py``). Bad values exit with code 2 before any model loads.
All the logic lives in the package.
"""

from finpercep_hf.scripting import exit_on_bad_input, parse_arguments
from finpercep_hf.scripting.generator_training import GeneratorScriptArguments, build_lr_hr_datasets, train_generator
from finpercep_hf.trainers import DiffusionGRPOConfig, DiffusionGRPOTrainer


def main() -> None:
    script_args, config = parse_arguments((GeneratorScriptArguments, DiffusionGRPOConfig))
    # Prepare dataset
    with exit_on_bad_input():
        train_dataset, eval_dataset = build_lr_hr_datasets(script_args)
    # Load models and train!
    train_generator(DiffusionGRPOTrainer, script_args, config, train_dataset, eval_dataset)


if __name__ == "__main__":
    main()
