"""Train FinPercep-RM on an FGR dataset with the co-evolutionary curriculum (CCL path 1).

    accelerate launch training_scripts/train_reward_model.py --base_clip openai/clip-vit-base-patch16 \
        --dataset ./fgr-30k --ccl_schedule 0:0,0:1,2000:2,4000:3 --max_steps 6000 --output_dir runs/rm \
        [--ccl param|weight|none] [--resume_from_checkpoint latest] [--report_to tensorboard] \
        [--push_to_hub --hub_model_id org/finpercep-rm]

Every `FinPercepTrainingArguments` field (transformers' `TrainingArguments` plus losses and curriculum) is a flag,
e.g. ``--per_device_train_batch_size``, ``--save_steps``, ``--bf16``, ``--no_augment``. Writes
``<output_dir>/finpercep-rm-stage{k}`` for every stage (``save_pretrained`` dirs with model cards) and
``<output_dir>/checkpoint-N`` training checkpoints. Exit codes: 0 done, 1 the CLIP could not be loaded, 2 bad
options or dataset.
"""

import logging
import sys

from finpercep_hf.models import FinPercepCheckpointError
from finpercep_hf.scripting import EXIT_LOAD_ERROR, exit_on_bad_input, parse_arguments
from finpercep_hf.scripting.reward_model_training import (
    RewardModelScriptArguments,
    build_reward_model_trainer,
    push_stage_checkpoints,
    resolve_resume_checkpoint,
)
from finpercep_hf.trainers.reward_model import FinPercepTrainingArguments


def main() -> int:
    script_args, training_args = parse_arguments((RewardModelScriptArguments, FinPercepTrainingArguments))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # The stage checkpoints are pushed at the end, not every training checkpoint by the Trainer.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)

    # Prepare dataset, load models
    try:
        with exit_on_bad_input():
            trainer = build_reward_model_trainer(script_args, training_args)
    except FinPercepCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD_ERROR

    # Train!
    trainer.train(resume_from_checkpoint=resume)
    if push_to_hub:
        push_stage_checkpoints(trainer, training_args.hub_model_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
