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
from finpercep_hf.generators import SDUpscalerGenerator
from finpercep_hf.generators.flow_sd3 import FlowSRGenerator, is_flow_checkpoint
from finpercep_hf.rewards import REWARD_TYPES, as_reward_function
from finpercep_hf.trainers import GeneratorTrainer, GeneratorTrainerConfig, LRHRDataset, REFLConfig, REFLTrainer

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
DEGRADATIONS = ("bicubic", "realesrgan")
GENERATOR_FAMILIES = ("auto", "sd-upscaler", "flow")


@dataclass
class ScriptArguments:
    pretrained_model_name_or_path: str = field(
        metadata={"help": "A StableDiffusionUpscalePipeline or SD3-family (flow) checkpoint (Hub id or directory)."}
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
    prompt: str = field(default="", metadata={"help": "Prompt of the upscaler (encoded once)."})
    noise_level: int = field(default=20, metadata={"help": "Noise level added to the LR conditioning."})
    generator: str = field(
        default="auto", metadata={"help": f"Generator family: {GENERATOR_FAMILIES} (auto: from model_index.json)."}
    )
    prompt_embeds_file: str | None = field(
        default=None, metadata={"help": "Flow: cached prompt embeddings (written on first use; no text encoders)."}
    )
    transformer_class: str | None = field(
        default=None, metadata={"help": "Flow: your transformer class as 'module.py:Class' (e.g. DiT4SR's)."}
    )


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
) -> None:
    """Load the generator and the first RM of ``--reward_schedule``, then train under the CCL reward callback.

    Shared by ``train_refl.py``, ``train_dpo.py`` and ``train_grpo.py``.
    """
    config.base_model = config.base_model or script_args.pretrained_model_name_or_path

    # Load models
    family, path = script_args.generator, script_args.pretrained_model_name_or_path
    if family not in GENERATOR_FAMILIES:
        raise ValueError(f"--generator must be one of {GENERATOR_FAMILIES}, got {family!r}.")
    if family == "flow" or (family == "auto" and is_flow_checkpoint(path)):
        generator = FlowSRGenerator.from_pretrained(
            path,
            prompt=script_args.prompt,
            prompt_embeds_file=script_args.prompt_embeds_file,
            transformer_class=script_args.transformer_class,
            num_inference_steps=config.num_inference_steps,
        )
    else:
        generator = SDUpscalerGenerator.from_pretrained(
            path,
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
    script_args, config = HfArgumentParser((ScriptArguments, REFLConfig)).parse_args_into_dataclasses()
    # Prepare dataset
    train_dataset, eval_dataset = build_datasets(script_args)
    run_generator_training(REFLTrainer, script_args, config, train_dataset, eval_dataset)


if __name__ == "__main__":
    main()
