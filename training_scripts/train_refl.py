"""REFL fine-tuning of a diffusion SR generator rewarded by FinPercep-RM under the co-evolutionary curriculum.

```bash
accelerate launch training_scripts/train_refl.py \
  --pretrained_model_name_or_path stabilityai/stable-diffusion-x4-upscaler \
  --train_data_dir ./hr_photos \
  --reward_schedule "0:runs/rm/finpercep-rm-stage0,500:runs/rm/finpercep-rm-stage1,1000:runs/rm/finpercep-rm-stage3" \
  --reward finpercep --use_lora --rank 4 --output_dir runs/refl \
  --checkpointing_steps 100 --resume_from_checkpoint latest --validation_steps 100 --report_to tensorboard
```

Every `REFLConfig` field is a flag (``--learning_rate``, ``--grad_scale``, ``--pretrain_loss``, ...); the flags
below choose the generator, the data and the reward. All the logic lives in `finpercep_hf.trainers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from PIL import Image
from skimage import data as skimage_data
from torch.utils.data import Dataset as TorchDataset
from transformers import HfArgumentParser

from finpercep_hf.curriculum import CCLRewardCallback, CCLSchedule
from finpercep_hf.generators import FidelityConfig
from finpercep_hf.generators.loading import GENERATOR_LOADERS, load_generator_with_options
from finpercep_hf.rewards import REWARD_TYPES, as_reward_function
from finpercep_hf.trainers import GeneratorTrainer, GeneratorTrainerConfig, LRHRDataset, REFLConfig, REFLTrainer

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
DEGRADATIONS = ("bicubic", "realesrgan")


@dataclass
class ScriptArguments:
    pretrained_model_name_or_path: str = field(
        metadata={"help": "The generator: a pipeline (Hub id or directory), an SR weights file or module.py:Name."}
    )
    reward_schedule: str = field(
        metadata={"help": "STEP:RM_CHECKPOINT,...: the RM_k in force from each update on (one entry: no curriculum)."}
    )
    reward: str = field(default="finpercep", metadata={"help": f"Reward from the RM, one of {REWARD_TYPES}."})
    train_data_dir: str | None = field(
        default=None, metadata={"help": "HR images (LR made by --degradation), or gt/ + lr/ subfolders of pairs."}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "A datasets path or Hub id (e.g. an FGR dataset); --image_column is HR."}
    )
    image_column: str = field(default="image_gt", metadata={"help": "HR image column of --dataset."})
    degradation: str = field(default="bicubic", metadata={"help": f"How LR is made from HR: {DEGRADATIONS}."})
    resolution: int = field(default=512, metadata={"help": "HR crop size (LR is resolution / 4)."})
    generator: str | None = field(
        default=None,
        metadata={
            "help": f"Generator family, one of {sorted(GENERATOR_LOADERS)} (default: detected from "
            "--pretrained_model_name_or_path: a pipeline's model_index.json, a spandrel weights file, module.py:Name)."
        },
    )
    prompt: str | None = field(default=None, metadata={"help": "Prompt of a diffusion generator (encoded once; '')."})
    noise_level: int | None = field(default=None, metadata={"help": "SD-x4 upscaler: LR noise level (20)."})
    controlnet: str | None = field(default=None, metadata={"help": "controlnet_sr: a ControlNet for an SD2 base."})
    trainable: str | None = field(default=None, metadata={"help": "controlnet_sr: 'unet' (LoRA) or 'controlnet'."})


def load_train_split(path: str) -> Dataset:
    """The train split of a `save_to_disk` directory, a Parquet/ImageFolder directory or a Hub dataset."""
    try:
        table = load_from_disk(path)
    except FileNotFoundError:
        table = load_dataset(path, split="train")
    return table["train"] if isinstance(table, DatasetDict) else table


def load_hr_images(script_args: ScriptArguments) -> list:
    """HR images (PIL) from --dataset or, with no data source given, scikit-image's photos."""
    if script_args.dataset:
        table = load_train_split(script_args.dataset)
        if script_args.image_column not in table.column_names:
            raise ValueError(f"--dataset has no column {script_args.image_column!r}: {table.column_names}.")
        return list(table[script_args.image_column])
    photos = [Image.fromarray(getattr(skimage_data, name)()).convert("RGB") for name in SKIMAGE_PHOTOS]
    photos = [photo for photo in photos if min(photo.size) >= script_args.resolution]
    if not photos:
        raise ValueError(f"no scikit-image photo is {script_args.resolution} pixels wide; lower --resolution.")
    return photos


def build_datasets(script_args: ScriptArguments) -> tuple[LRHRDataset, LRHRDataset]:
    """Training pairs (random crops) and validation pairs (centre crops) from the chosen data source."""
    if script_args.train_data_dir and script_args.dataset:
        raise ValueError("pass --train_data_dir or --dataset, not both.")
    if script_args.degradation not in DEGRADATIONS:
        raise ValueError(f"--degradation must be one of {DEGRADATIONS}, got {script_args.degradation!r}.")
    degrade = None
    if script_args.degradation == "realesrgan":
        from finpercep_hf.data.degradations import degrade
    datasets = []
    images = None if script_args.train_data_dir else load_hr_images(script_args)
    for random_crop in (True, False):
        options = dict(resolution=script_args.resolution, random_crop=random_crop, degrade=degrade)
        if images is None:
            datasets.append(LRHRDataset.from_directory(script_args.train_data_dir, **options))
        else:
            datasets.append(LRHRDataset(images, **options))
    return datasets[0], datasets[1]


def run_generator_training(
    trainer_class: type[GeneratorTrainer],
    script_args: ScriptArguments,
    config: GeneratorTrainerConfig,
    train_dataset: TorchDataset,
    eval_dataset: TorchDataset,
    fidelity: FidelityConfig | None = None,
) -> None:
    """Load the generator and the first RM of ``--reward_schedule``, then train under the CCL reward callback.

    Shared by ``train_refl.py``, ``train_dpo.py`` and ``train_grpo.py``.
    """
    config.base_model = config.base_model or script_args.pretrained_model_name_or_path

    # Load models
    generator = load_generator_with_options(
        script_args.pretrained_model_name_or_path,
        script_args.generator,
        num_inference_steps=config.num_inference_steps,
        prompt=script_args.prompt,
        noise_level=script_args.noise_level,
        controlnet=script_args.controlnet,
        trainable=script_args.trainable,
        fidelity=fidelity,
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
    parser = HfArgumentParser((ScriptArguments, REFLConfig, FidelityConfig))
    script_args, config, fidelity = parser.parse_args_into_dataclasses()
    # Prepare dataset
    train_dataset, eval_dataset = build_datasets(script_args)
    run_generator_training(REFLTrainer, script_args, config, train_dataset, eval_dataset, fidelity=fidelity)


if __name__ == "__main__":
    main()
