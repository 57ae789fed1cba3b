"""REFL fine-tuning of a diffusion SR generator rewarded by FinPercep-RM under the co-evolutionary curriculum.

```bash
accelerate launch training_scripts/train_refl.py \
  --pretrained_model_name_or_path stabilityai/stable-diffusion-x4-upscaler \
  --train_data_dir ./hr_photos \
  --reward_schedule "0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1,1000:runs/rm/finpercep-rm-stage3" \
  --reward finpercep --use_lora --rank 4 --output_dir runs/refl \
  --checkpointing_steps 100 --resume_from_checkpoint latest --validation_steps 100 --report_to tensorboard
```

Every `REFLConfig` field is a flag (``--learning_rate``, ``--grad_scale``, ``--pretrain_loss``, ...); the
`GeneratorScriptArguments` flags choose the generator (any family: ``--generator``), the data and the reward;
the `FidelityConfig` flags weight the fidelity terms of the one-step and feed-forward generators. Bad values exit
with code 2 before any model loads. All the logic lives in the package.
"""

from finpercep_hf.generators import FidelityConfig
from finpercep_hf.scripting import exit_on_bad_input, parse_arguments
from finpercep_hf.scripting.generator_training import GeneratorScriptArguments, build_lr_hr_datasets, train_generator
from finpercep_hf.trainers import REFLConfig, REFLTrainer


def main() -> None:
    script_args, config, fidelity = parse_arguments((GeneratorScriptArguments, REFLConfig, FidelityConfig))
    # Prepare dataset
    with exit_on_bad_input():
        train_dataset, eval_dataset = build_lr_hr_datasets(script_args)
    # Load models and train!
    train_generator(REFLTrainer, script_args, config, train_dataset, eval_dataset, fidelity=fidelity)


if __name__ == "__main__":
    main()
