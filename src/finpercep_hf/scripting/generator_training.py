"""What the generator RL scripts (``train_refl.py``, ``train_dpo.py``, ``train_grpo.py``) share: their data, generator
and reward arguments, the LR/HR or preference datasets those arguments name, and the load-and-train phase."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from ..curriculum import CCLRewardCallback, CCLSchedule
from ..data import LRHRDataset, PreferencePairDataset
from ..generators import FidelityConfig
from ..generators.controlnet_sr import TRAINABLE_PARTS
from ..generators.loading import GENERATOR_LOADERS, load_generator_with_options
from ..rewards import REWARD_TYPES, as_reward_function
from ..trainers import GeneratorTrainer, GeneratorTrainerConfig

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
DEGRADATIONS = ("bicubic", "realesrgan")


@dataclass
class GeneratorScriptArguments:
    """The generator, the reward schedule and the training images of a generator RL script."""

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
    trainable: str | None = field(
        default=None, metadata={"help": f"controlnet_sr: the trained part, one of {TRAINABLE_PARTS} ('unet')."}
    )
    prompt_embeds_file: str | None = field(
        default=None, metadata={"help": "flow: cached prompt embeddings (written on first use; no text encoders)."}
    )
    transformer_class: str | None = field(
        default=None, metadata={"help": "flow: your transformer class as 'module.py:Class' (e.g. DiT4SR's)."}
    )
    # Offline Diffusion-DPO (``--preference_source offline``)
    chosen_column: str = field(default="image_syn", metadata={"help": "Offline DPO: the preferred image column."})
    rejected_column: str = field(default="image_sr", metadata={"help": "Offline DPO: the rejected image column."})

    def __post_init__(self):
        if self.train_data_dir and self.dataset:
            raise ValueError("pass --train_data_dir or --dataset, not both.")
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"--degradation must be one of {DEGRADATIONS}, got {self.degradation!r}.")
        if self.resolution < 4 or self.resolution % 4:
            raise ValueError(f"--resolution must be a positive multiple of 4, got {self.resolution}.")
        if self.generator is not None and self.generator not in GENERATOR_LOADERS:
            raise ValueError(f"--generator must be one of {sorted(GENERATOR_LOADERS)}, got {self.generator!r}.")
        if self.trainable is not None and self.trainable not in TRAINABLE_PARTS:
            raise ValueError(f"--trainable must be one of {TRAINABLE_PARTS}, got {self.trainable!r}.")
        CCLSchedule.from_string(self.reward_schedule)  # a bad schedule fails here, before any model loads


def load_train_split(path: str):
    """The train split (a `datasets.Dataset`) of a `save_to_disk` directory, a Parquet/ImageFolder directory or a
    Hub dataset; `ValueError` naming ``path`` when there is none."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    try:
        table = load_from_disk(path)
    except FileNotFoundError:
        try:
            table = load_dataset(path, split="train")
        except (FileNotFoundError, OSError) as error:
            raise ValueError(f"cannot load the dataset {path!r}: {error}") from error
    return table["train"] if isinstance(table, DatasetDict) else table


def load_hr_images(script_args: GeneratorScriptArguments) -> list[Image.Image]:
    """HR images (PIL) from --dataset or, with no data source given, scikit-image's photos."""
    if script_args.dataset:
        table = load_train_split(script_args.dataset)
        if script_args.image_column not in table.column_names:
            raise ValueError(f"--dataset has no column {script_args.image_column!r}: {table.column_names}.")
        return list(table[script_args.image_column])
    from skimage import data as skimage_data

    photos = [Image.fromarray(getattr(skimage_data, name)()).convert("RGB") for name in SKIMAGE_PHOTOS]
    photos = [photo for photo in photos if min(photo.size) >= script_args.resolution]
    if not photos:
        raise ValueError(f"no scikit-image photo is {script_args.resolution} pixels wide; lower --resolution.")
    return photos


def build_lr_hr_datasets(script_args: GeneratorScriptArguments) -> tuple[LRHRDataset, LRHRDataset]:
    """Training pairs (random crops) and validation pairs (centre crops) from the chosen data source."""
    degrade = None
    if script_args.degradation == "realesrgan":
        from ..data.degradations import degrade
    images = None if script_args.train_data_dir else load_hr_images(script_args)
    datasets = []
    for random_crop in (True, False):
        options = dict(resolution=script_args.resolution, random_crop=random_crop, degrade=degrade)
        if images is None:
            datasets.append(LRHRDataset.from_directory(script_args.train_data_dir, **options))
        else:
            datasets.append(LRHRDataset(images, **options))
    return datasets[0], datasets[1]


def build_preference_datasets(
    script_args: GeneratorScriptArguments, preference_source: str
) -> tuple[TorchDataset, TorchDataset]:
    """Online: the LR/HR pairs of `build_lr_hr_datasets`; offline: chosen/rejected crops of ``--dataset``."""
    if preference_source == "online":
        return build_lr_hr_datasets(script_args)
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


def train_generator(
    trainer_class: type[GeneratorTrainer],
    script_args: GeneratorScriptArguments,
    config: GeneratorTrainerConfig,
    train_dataset: TorchDataset,
    eval_dataset: TorchDataset,
    fidelity: FidelityConfig | None = None,
) -> GeneratorTrainer:
    """Load the generator (any family, see `load_generator_with_options`; ``fidelity``: REFL's terms of the direct
    generators) and the first RM of ``--reward_schedule``, then train under the CCL reward callback."""
    config.base_model = config.base_model or script_args.pretrained_model_name_or_path
    generator = load_generator_with_options(
        script_args.pretrained_model_name_or_path,
        script_args.generator,
        num_inference_steps=config.num_inference_steps,
        prompt=script_args.prompt,
        noise_level=script_args.noise_level,
        controlnet=script_args.controlnet,
        trainable=script_args.trainable,
        prompt_embeds_file=script_args.prompt_embeds_file,
        transformer_class=script_args.transformer_class,
        fidelity=fidelity,
    )
    schedule = CCLSchedule.from_string(script_args.reward_schedule)
    reward = as_reward_function(schedule.stages[0].checkpoint, reward_type=script_args.reward)
    trainer = trainer_class(
        generator,
        reward=reward,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        callbacks=[CCLRewardCallback(schedule)],
    )
    trainer.train()
    return trainer


__all__ = [
    "DEGRADATIONS",
    "SKIMAGE_PHOTOS",
    "GeneratorScriptArguments",
    "build_lr_hr_datasets",
    "build_preference_datasets",
    "load_hr_images",
    "load_train_split",
    "train_generator",
]
