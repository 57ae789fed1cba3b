"""The FGR dataset (paper Sec. 3.3): building, storing and describing it.

Each sample runs the pipeline of the paper's Fig. 3 on one random crop of a high-quality photo::

    image_gt --degrade (Real-ESRGAN, seeded)--> LR --SR model from the pool--> image_sr
    image_syn = mask * image_sr + (1 - mask) * image_gt          (mask: rectangle | stroke | SAM segment)
    pdm_target = clip((alpha * |SYN - GT| + (1 - alpha) * Diff_feat) / scale, 0, 1)

Row schema (``FGR_FEATURES``; ``datasets.load_dataset(output_dir)["train"][i]``):

======================  ======================================  =======================================================
column                  type                                    meaning
======================  ======================================  =======================================================
``image_gt``            Image, RGB, (S, S)                      the clean crop (S = ``crop_size``)
``image_sr``            Image, RGB, (S, S)                      the SR model's output for the degraded crop
``image_syn``           Image, RGB, (S, S)                      ``mask * image_sr + (1 - mask) * image_gt``
``mask``                Image, mode L, (S, S), {0, 255}         the swapped region
``pdm_target``          Image, mode F, (S, S), float32 [0, 1]   the ground-truth Perceptual Degradation Map
``sr_model``            string                                  SR model name (``bicubic``, ``artifact:<kind>``, a
                                                                diffusers id/path, an adapter name)
``artifact_kind``       string                                  the defect ``image_sr`` carries:
                                                                ``upsampled_degradation``, ``diffusion_sr``, one of
                                                                ``ARTIFACT_KINDS`` or an adapter's label
``mask_type``           string                                  ``rectangle``, ``stroke`` or ``semantic``
``mask_area``           float32                                 area ratio of ``mask``
``degradation_seed``    int64                                   seed of ``degrade`` for this sample
``source_id``           string                                  the photo (a path, or ``skimage:<name>``)
``crop_box``            int32 x 4                               (left, top, right, bottom) in the source resized by
                                                                ``source_scale``
``source_scale``        float32                                 resize factor applied to the source before cropping
``sample_index``        int64                                   index of the sample in the build (its seed)
======================  ======================================  =======================================================

On disk: ``data/train-XXXXX-of-YYYYY.parquet`` (one file per shard, written to a temporary name and renamed, so a
shard either exists complete or not at all), ``fgr_build.json`` (the build config and the normalisation scale) and
``README.md`` (the dataset card, whose YAML ``configs`` lets ``load_dataset(output_dir)`` work with no script).

``datasets`` caches a local folder's rows by the folder's name and the card's ``dataset_info`` (which records the
row count and Parquet bytes), not by the files' contents: after rebuilding a folder in place with another config,
load it once with ``download_mode="force_redownload"`` (or build into a new folder name).

Python entry points: ``build_fgr(FGRBuildConfig(...), output_dir)`` (``FGRBuildConfig.mini()`` for the offline
preset), ``FGRSynthesizer`` for single samples, and ``FGRBuilder``, a ``datasets.GeneratorBasedBuilder``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..cards import card_template_path
from ..images import FinPercepImageError, list_images, load_image, pil_to_tensor, tensor_to_pil
from .artifacts import ARTIFACT_KINDS
from .degradations import DegradationConfig, degrade, uniform
from .masks import MASK_TYPES, SemanticMasker, random_mask, region_swap
from .pdm_targets import PDMTargetBuilder
from .sr_pool import ClassicalUpsampler, SRPool

logger = logging.getLogger(__name__)

# Colour and gray photos that ship with scikit-image (no download).
SKIMAGE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "camera", "coins", "moon", "grass", "gravel", "brick", "clock", "page", "text",
)  # fmt: skip
MINI_SR_MODELS = ("bicubic", "lanczos", *(f"artifact:{kind}" for kind in ARTIFACT_KINDS))
BUILD_FILE = "fgr_build.json"
DATA_DIR = "data"

FGR_FEATURES = datasets.Features(
    {
        "image_gt": datasets.Image(),
        "image_sr": datasets.Image(),
        "image_syn": datasets.Image(),
        "mask": datasets.Image(),
        "pdm_target": datasets.Image(),
        "sr_model": datasets.Value("string"),
        "artifact_kind": datasets.Value("string"),
        "mask_type": datasets.Value("string"),
        "mask_area": datasets.Value("float32"),
        "degradation_seed": datasets.Value("int64"),
        "source_id": datasets.Value("string"),
        "crop_box": datasets.List(datasets.Value("int32"), length=4),
        "source_scale": datasets.Value("float32"),
        "sample_index": datasets.Value("int64"),
    }
)


@dataclass
class FGRBuildConfig:
    """Everything that determines an FGR build; two builds with equal configs produce identical rows."""

    # Sources
    images: list[str] = field(
        default_factory=list,
        metadata={"help": "Files or folders of high-quality photos; empty: use the skimage photos below."},
    )
    skimage_photos: tuple[str, ...] = field(
        default=SKIMAGE_PHOTOS,
        metadata={"help": f"scikit-image photo names used when images is empty; any of {SKIMAGE_PHOTOS}."},
    )
    source_scale_range: tuple[float, float] = field(
        default=(0.5, 1.0),
        metadata={"help": "Each source is resized by a factor drawn from this range before cropping."},
    )
    # Samples
    num_samples: int = field(default=30000, metadata={"help": "Number of samples (before skipping broken sources)."})
    crop_size: int = field(default=512, metadata={"help": "Side of the square crops, divisible by 4."})
    seed: int = field(default=0, metadata={"help": "Build seed; sample i is reproducible from (seed, i)."})
    samples_per_shard: int = field(default=500, metadata={"help": "Rows per Parquet shard (the unit of resume)."})
    # SR pool
    sr_models: list[str] = field(
        default_factory=lambda: list(MINI_SR_MODELS),
        metadata={
            "help": "SR model specs: bicubic | bilinear | lanczos | artifact:<kind> | module.py:Class | a "
            "diffusers SR pipeline id or path."
        },
    )
    sr_weights: list[float] | None = field(default=None, metadata={"help": "Sampling weights of sr_models."})
    sr_num_inference_steps: int = field(default=20, metadata={"help": "Denoising steps of diffusers SR models."})
    sr_guidance_scale: float = field(
        default=0.0, metadata={"help": "Classifier-free guidance of diffusers SR models."}
    )
    sr_prompt: str = field(default="", metadata={"help": "Text prompt of StableDiffusionUpscalePipeline members."})
    # Masks
    mask_types: tuple[str, ...] = field(
        default=("rectangle", "stroke"), metadata={"help": f"Mask types to draw from, any of {MASK_TYPES}."}
    )
    mask_weights: tuple[float, ...] | None = field(default=None, metadata={"help": "Sampling weights of mask_types."})
    area_range: tuple[float, float] = field(default=(0.1, 0.5), metadata={"help": "Bounds of the mask area ratio."})
    sam: str | None = field(default=None, metadata={"help": "SAM checkpoint for semantic masks (mask-generation)."})
    sam_points_per_batch: int = field(default=64, metadata={"help": "SAM prompt points per forward pass."})
    sam_points_per_crop: int = field(default=32, metadata={"help": "SAM prompt grid side (points_per_crop^2 points)."})
    sam_pred_iou_thresh: float = field(default=0.88, metadata={"help": "SAM predicted-IoU filter."})
    sam_stability_score_thresh: float = field(default=0.95, metadata={"help": "SAM stability-score filter."})
    # pdm_target
    dino: str | None = field(default=None, metadata={"help": "DINOv3 checkpoint; None: the 1 - SSIM fallback."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the pixel term in Eq. 4."})
    pdm_scale: float | None = field(default=None, metadata={"help": "Fixed normalisation scale; None: estimate."})
    scale_percentile: float = field(default=99.0, metadata={"help": "Percentile of raw maps used as the scale."})
    calibration_samples: int = field(default=64, metadata={"help": "Samples used to estimate the scale."})
    # Degradation and card
    degradation: DegradationConfig = field(
        default_factory=DegradationConfig, metadata={"help": "Real-ESRGAN degradation ranges."}
    )
    license: str = field(default="other", metadata={"help": "Licence field of the dataset card."})
    pretty_name: str = field(default="FGR", metadata={"help": "Dataset name shown in the card."})

    def __post_init__(self) -> None:
        if isinstance(self.degradation, dict):
            self.degradation = DegradationConfig(**self.degradation)
        if self.crop_size % self.degradation.scale or self.crop_size < 16 * self.degradation.scale:
            raise ValueError(
                f"crop_size must be a multiple of {self.degradation.scale} and >= 64, got {self.crop_size}."
            )
        if self.num_samples < 1 or self.samples_per_shard < 1:
            raise ValueError(
                f"num_samples and samples_per_shard must be >= 1, got {self.num_samples}, {self.samples_per_shard}."
            )
        unknown = set(self.mask_types) - set(MASK_TYPES)
        if unknown or not self.mask_types:
            raise ValueError(f"mask_types must be a non-empty subset of {MASK_TYPES}, got {self.mask_types}.")
        if "semantic" in self.mask_types and not self.sam:
            raise ValueError("mask_types includes 'semantic' but no SAM checkpoint is given (sam=...).")
        if not self.images:
            unknown = set(self.skimage_photos) - set(SKIMAGE_PHOTOS)
            if unknown or not self.skimage_photos:
                raise ValueError(
                    f"skimage_photos must be a non-empty subset of {SKIMAGE_PHOTOS}, got {unknown or ()}."
                )
        low, high = self.source_scale_range
        if not 0 < low <= high:
            raise ValueError(f"source_scale_range must satisfy 0 < low <= high, got {self.source_scale_range}.")

    @classmethod
    def mini(cls, **overrides) -> FGRBuildConfig:
        """The offline FGR-mini preset: skimage photos, 160 px crops, 320 samples, classical upsamplers plus every
        labelled artifact generator, rectangle and stroke masks, the ``1 - SSIM`` feature term. About a minute on
        2 CPU cores; any field can be overridden (e.g. ``skimage_photos=...`` to hold photos out)."""
        values = {
            "num_samples": 320,
            "crop_size": 160,
            "samples_per_shard": 64,
            "source_scale_range": (0.35, 1.0),
            "calibration_samples": 32,
            "pretty_name": "FGR-mini",
            "license": "other",
        }
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists); ``FGRBuildConfig.from_dict`` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> FGRBuildConfig:
        """Rebuild a config from ``to_dict`` output (e.g. the ``config`` entry of a build's ``fgr_build.json``)."""
        tuples = {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}
        values = {k: tuple(v) if k in tuples and v is not None else v for k, v in values.items()}
        values["degradation"] = DegradationConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values["degradation"].items()}
        )
        return cls(**values)

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.samples_per_shard)


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a build with ``seed`` (stable across processes and versions)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class FGRSynthesizer:
    """Builds single FGR samples: ``synthesizer.sample(i)`` -> a row dict (see the module docstring).

    Loads the sources lazily (a small cache), the SR pool, the SAM masker and the pdm_target builder once.
    """

    def __init__(self, config: FGRBuildConfig) -> None:
        self.config = config
        if config.images:
            self.sources = [str(path) for path in list_images(config.images)]
            if not self.sources:
                raise FinPercepImageError(f"no image files found in {config.images}.")
        else:
            self.sources = [f"skimage:{name}" for name in config.skimage_photos]
        self.sr_pool = SRPool(
            config.sr_models,
            config.sr_weights,
            scale=config.degradation.scale,
            num_inference_steps=config.sr_num_inference_steps,
            guidance_scale=config.sr_guidance_scale,
            prompt=config.sr_prompt,
        )
        self.masker = (
            SemanticMasker(
                config.sam,
                area_range=config.area_range,
                points_per_batch=config.sam_points_per_batch,
                points_per_crop=config.sam_points_per_crop,
                pred_iou_thresh=config.sam_pred_iou_thresh,
                stability_score_thresh=config.sam_stability_score_thresh,
            )
            if "semantic" in config.mask_types
            else None
        )
        self.pdm = PDMTargetBuilder(config.dino, alpha=config.alpha, scale=config.pdm_scale)
        weights = config.mask_weights or (1.0,) * len(config.mask_types)
        self.mask_weights = torch.tensor(weights, dtype=torch.float64)

    @functools.lru_cache(maxsize=32)  # noqa: B019 (the synthesizer lives for the whole build)
    def load_source(self, source_id: str) -> Image.Image:
        """The RGB photo behind ``source_id`` (a path or ``skimage:<name>``)."""
        if source_id.startswith("skimage:"):
            from skimage import data

            array = getattr(data, source_id.split(":", 1)[1])()
            return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")
        return load_image(source_id)

    def _crop(self, photo: Image.Image, generator: torch.Generator) -> tuple[Image.Image, list[int], float]:
        size = self.config.crop_size
        low, high = self.config.source_scale_range
        factor = max(uniform(generator, low, high), size / min(photo.size))
        scaled = (
            photo.resize(
                (max(size, round(photo.width * factor)), max(size, round(photo.height * factor))), Image.BICUBIC
            )
            if factor != 1
            else photo
        )
        left = int(torch.randint(0, scaled.width - size + 1, (), generator=generator))
        top = int(torch.randint(0, scaled.height - size + 1, (), generator=generator))
        box = [left, top, left + size, top + size]
        return scaled.crop(box), box, factor

    def _mask(self, image_gt: Image.Image, generator: torch.Generator) -> tuple[torch.Tensor, str]:
        mask_type = self.config.mask_types[torch.multinomial(self.mask_weights, 1, generator=generator).item()]
        if mask_type == "semantic":
            mask = self.masker(image_gt, generator)
            if mask is not None:
                return mask, mask_type
            mask_type = "rectangle" if torch.rand((), generator=generator).item() < 0.5 else "stroke"
        size = self.config.crop_size
        return random_mask(size, size, mask_type, generator, self.config.area_range), mask_type

    def synthesize(self, index: int) -> dict:
        """Sample ``index`` as tensors plus provenance: ``image_gt``, ``image_sr``, ``image_syn`` (3, S, S) and
        ``mask`` (S, S) float in [0, 1], ``raw_pdm`` (S, S) float32 (before normalisation), and the metadata."""
        generator = torch.Generator().manual_seed(sample_seed(self.config.seed, index))
        source_id = self.sources[index % len(self.sources)]
        crop, box, factor = self._crop(self.load_source(source_id), generator)
        image_gt = pil_to_tensor(crop)[None]
        degradation_seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
        lr = degrade(image_gt, degradation_seed, self.config.degradation)
        sr_model = self.sr_pool.pick(generator)
        image_sr = sr_model(lr, generator=generator)
        mask, mask_type = self._mask(crop, generator)
        image_syn = region_swap(image_gt, image_sr, mask)
        return {
            "image_gt": image_gt[0],
            "image_sr": image_sr[0],
            "image_syn": image_syn[0],
            "mask": mask,
            "raw_pdm": self.pdm.raw(image_syn, image_gt)[0, 0],
            "sr_model": sr_model.name,
            "artifact_kind": sr_model.artifact_kind,
            "mask_type": mask_type,
            "mask_area": float(mask.mean()),
            "degradation_seed": degradation_seed,
            "source_id": source_id,
            "crop_box": box,
            "source_scale": float(factor),
            "sample_index": index,
        }

    def to_row(self, sample: dict) -> dict:
        """Turn a ``synthesize`` result into a dataset row (PIL images, normalised ``pdm_target``)."""
        row = {key: value for key, value in sample.items() if key != "raw_pdm"}
        for key in ("image_gt", "image_sr", "image_syn"):
            row[key] = tensor_to_pil(sample[key])
        row["mask"] = Image.fromarray((sample["mask"].numpy() * 255).round().astype(np.uint8), mode="L")
        pdm_target = self.pdm.normalize(sample["raw_pdm"]).numpy().astype(np.float32)
        row["pdm_target"] = Image.fromarray(pdm_target, mode="F")
        return row

    def sample(self, index: int) -> dict | None:
        """Row ``index``, or None (logged) when its source image cannot be read."""
        try:
            return self.to_row(self.synthesize(index))
        except FinPercepImageError as error:
            logger.warning("FGR sample %d skipped: %s", index, error)
            return None

    def estimate_scale(self) -> float:
        """Estimate the normalisation scale from the raw maps of samples 0 .. calibration_samples - 1."""
        raw_maps = []
        for index in range(min(self.config.calibration_samples, self.config.num_samples)):
            try:
                raw_maps.append(self.synthesize(index)["raw_pdm"])
            except FinPercepImageError as error:
                logger.warning("FGR calibration sample %d skipped: %s", index, error)
        return self.pdm.estimate_scale(raw_maps, self.config.scale_percentile)


# Writing
def shard_path(output_dir: Path, shard: int, num_shards: int) -> Path:
    return output_dir / DATA_DIR / f"train-{shard:05d}-of-{num_shards:05d}.parquet"


def _write_shard(synthesizer: FGRSynthesizer, shard: int, path: Path, progress: tqdm | None) -> int:
    """Write one shard to a temporary file, then rename it; a failure (or a kill) never leaves a partial shard
    under the final name, and the temporary file is removed (or, after a kill, at the next start)."""
    config = synthesizer.config
    start = shard * config.samples_per_shard
    stop = min(start + config.samples_per_shard, config.num_samples)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink()
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    rows = 0
    try:
        with datasets.arrow_writer.ParquetWriter(features=FGR_FEATURES, path=str(temporary)) as writer:
            for index in range(start, stop):
                row = synthesizer.sample(index)
                if row is not None:
                    writer.write(FGR_FEATURES.encode_example(row))
                    rows += 1
                if progress is not None:
                    progress.update(1)
            writer.finalize()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return rows


def _load_or_create_build_file(
    output_dir: Path, config: FGRBuildConfig, synthesizer: FGRSynthesizer, is_main: bool, poll_seconds: float
) -> dict:
    """Rank 0 estimates the scale and writes ``fgr_build.json``; other ranks wait for it. A resumed build must
    have the same config as the stored one."""
    build_file = output_dir / BUILD_FILE
    if not build_file.exists() and is_main:
        scale = config.pdm_scale or synthesizer.estimate_scale()
        record = {"config": config.to_dict(), "pdm_scale": scale, "pdm_feature": synthesizer.pdm.feature_name}
        temporary = build_file.with_name(f".{BUILD_FILE}.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(record, indent=2))
        os.replace(temporary, build_file)
    while not build_file.exists():
        time.sleep(poll_seconds)
    record = json.loads(build_file.read_text())
    if record["config"] != config.to_dict():
        raise ValueError(
            f"{output_dir} holds a different FGR build (see {build_file}); use a new output directory to build "
            "with this config, or the stored config to resume."
        )
    return record


def build_fgr(
    config: FGRBuildConfig,
    output_dir: str | os.PathLike,
    process_index: int | None = None,
    num_processes: int | None = None,
    progress: bool = True,
    poll_seconds: float = 1.0,
    num_threads: int | None = 1,
) -> Path:
    """Build an FGR dataset into ``output_dir`` and return its path (``load_dataset(str(path))`` reads it).

    Resumable: shards already on disk are kept and the build goes on at the first missing one. Across processes
    (``accelerate launch``, or explicit ``process_index`` / ``num_processes``), rank r builds shards r, r + N, ...;
    rank 0 estimates the normalisation scale first and writes the dataset card once every shard exists.

    Args:
        config: the build config (``FGRBuildConfig.mini()`` for the offline preset).
        output_dir: where the shards, ``fgr_build.json`` and ``README.md`` go.
        process_index, num_processes: this process's rank and the process count (default: from Accelerate).
        progress: show a tqdm bar of samples.
        poll_seconds: how often non-main ranks check for files written by the others.
        num_threads: torch threads during the build (restored afterwards); None keeps the current setting. The
            default 1 is the fastest for the small per-sample ops (parallelise with processes instead); raise it
            when a DINOv3 or diffusion model runs on CPU.
    """
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _build(config, Path(output_dir), process_index, num_processes, progress, poll_seconds)
    finally:
        torch.set_num_threads(previous_threads)


def _build(
    config: FGRBuildConfig,
    output_dir: Path,
    process_index: int | None,
    num_processes: int | None,
    progress: bool,
    poll_seconds: float,
) -> Path:
    if process_index is None or num_processes is None:
        from accelerate import PartialState

        state = PartialState()
        process_index, num_processes = state.process_index, state.num_processes
    (output_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)
    synthesizer = FGRSynthesizer(config)
    record = _load_or_create_build_file(output_dir, config, synthesizer, process_index == 0, poll_seconds)
    synthesizer.pdm.scale = record["pdm_scale"]

    num_shards = config.num_shards
    my_shards = [s for s in range(process_index, num_shards, num_processes)]
    todo = [s for s in my_shards if not shard_path(output_dir, s, num_shards).exists()]
    total = sum(min(config.samples_per_shard, config.num_samples - s * config.samples_per_shard) for s in todo)
    if len(todo) < len(my_shards):
        logger.info(
            "FGR build resumes: %d of %d shards of rank %d already done.",
            len(my_shards) - len(todo),
            len(my_shards),
            process_index,
        )
    bar = tqdm(total=total, desc=f"FGR rank {process_index}", unit="sample", disable=not progress)
    for shard in todo:
        _write_shard(synthesizer, shard, shard_path(output_dir, shard, num_shards), bar)
    bar.close()

    if process_index == 0:
        paths = [shard_path(output_dir, s, num_shards) for s in range(num_shards)]
        while not all(path.exists() for path in paths):
            time.sleep(poll_seconds)
        render_dataset_card(output_dir, config, record).save(output_dir / "README.md")
    return output_dir


def push_fgr_to_hub(output_dir: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload a built FGR folder (shards, card, build record) to the dataset repo ``repo_id``; returns its URL."""
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    if not (output_dir / "README.md").is_file():
        raise FileNotFoundError(f"{output_dir} has no README.md: build the dataset before pushing it.")
    api = HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(output_dir),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=["README.md", BUILD_FILE, f"{DATA_DIR}/*.parquet"],
    )
    return str(url)


# Card
def _column_counts(output_dir: Path, column: str) -> Counter:
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for path in sorted((output_dir / DATA_DIR).glob("train-*.parquet")):
        counts.update(pq.read_table(path, columns=[column]).column(column).to_pylist())
    return counts


def render_dataset_card(output_dir: str | os.PathLike, config: FGRBuildConfig, record: dict):
    """The dataset card (``huggingface_hub.DatasetCard``) of a built FGR folder: YAML ``configs`` for
    ``load_dataset``, construction, parameters, normalisation scale, SR models and counts, licence, citation."""
    from huggingface_hub import DatasetCard, DatasetCardData

    output_dir = Path(output_dir)
    sr_counts = _column_counts(output_dir, "sr_model")
    num_rows = sum(sr_counts.values())
    size_category = next(
        label
        for limit, label in (
            (1_000, "n<1K"),
            (10_000, "1K<n<10K"),
            (100_000, "10K<n<100K"),
            (float("inf"), "100K<n<1M"),
        )
        if num_rows < limit
    )
    card_data = DatasetCardData(
        license=config.license,
        pretty_name=config.pretty_name,
        size_categories=size_category,
        task_categories=["image-to-image"],
        tags=["finpercep", "super-resolution", "image-quality-assessment", "reward-model"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": f"{DATA_DIR}/train-*"}]}],
    )
    # The card's dataset_info (features, row count, bytes) also keys datasets' local cache: without it, every
    # folder with the same name would share one cached copy and a rebuilt folder would load stale rows.
    num_bytes = sum(path.stat().st_size for path in (output_dir / DATA_DIR).glob("train-*.parquet"))
    splits = datasets.SplitDict()
    splits.add(datasets.SplitInfo(name="train", num_bytes=num_bytes, num_examples=num_rows))
    info = datasets.DatasetInfo(
        features=FGR_FEATURES, splits=splits, download_size=num_bytes, dataset_size=num_bytes, config_name="default"
    )
    datasets.info.DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    return DatasetCard.from_template(
        card_data,
        template_path=str(card_template_path("dataset_card")),
        pretty_name=config.pretty_name,
        num_rows=num_rows,
        num_requested=config.num_samples,
        crop_size=config.crop_size,
        seed=config.seed,
        sources=", ".join(config.images)
        if config.images
        else "scikit-image photos: " + ", ".join(config.skimage_photos),
        pdm_scale=f"{record['pdm_scale']:.6g}",
        pdm_feature=record["pdm_feature"],
        alpha=config.alpha,
        scale_percentile=config.scale_percentile,
        calibration_samples=config.calibration_samples,
        area_range=list(config.area_range),
        sam=config.sam or "none",
        sr_counts=dict(sorted(sr_counts.items())),
        artifact_counts=dict(sorted(_column_counts(output_dir, "artifact_kind").items())),
        mask_counts=dict(sorted(_column_counts(output_dir, "mask_type").items())),
        offline=all(spec in ClassicalUpsampler.MODES or spec.startswith("artifact:") for spec in config.sr_models),
        license=config.license,
    )


# Local regeneration with the datasets builder API
@dataclass
class FGRBuilderConfig(datasets.BuilderConfig):
    """A ``datasets.BuilderConfig`` that carries an ``FGRBuildConfig`` (default: the mini preset)."""

    build: FGRBuildConfig = field(default_factory=FGRBuildConfig.mini)


class FGRBuilder(datasets.GeneratorBasedBuilder):
    """FGR as a ``datasets.GeneratorBasedBuilder``, for local regeneration into the datasets cache::

        builder = FGRBuilder(cache_dir="./cache", build=FGRBuildConfig.mini(num_samples=64))
        builder.download_and_prepare()
        ds = builder.as_dataset("train")   # rows as in the module docstring; the scale is in ds.info.description

    It yields the same rows as ``build_fgr`` with the same config (single process; use ``build_fgr`` for resumable,
    multi-process builds and a dataset card).
    """

    BUILDER_CONFIG_CLASS = FGRBuilderConfig
    BUILDER_CONFIGS = [FGRBuilderConfig(name="mini", description="The offline FGR-mini preset.")]
    DEFAULT_CONFIG_NAME = "mini"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="FGR: fine-grained reward samples for real-world SR (FinPercep-RM, Sec. 3.3).",
            features=FGR_FEATURES,
            license=self.config.build.license,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        synthesizer = FGRSynthesizer(self.config.build)
        scale = self.config.build.pdm_scale or synthesizer.estimate_scale()
        synthesizer.pdm.scale = scale
        self.info.description += f" pdm_scale={scale:.6g}; pdm_feature={synthesizer.pdm.feature_name}."
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"synthesizer": synthesizer})]

    def _generate_examples(self, synthesizer: FGRSynthesizer):
        for index in range(self.config.build.num_samples):
            row = synthesizer.sample(index)
            if row is not None:
                yield datasets.builder.Key(0, index), row


__all__ = [
    "FGRBuilder",
    "FGRBuilderConfig",
    "FGR_FEATURES",
    "FGRBuildConfig",
    "FGRSynthesizer",
    "MINI_SR_MODELS",
    "SKIMAGE_PHOTOS",
    "build_fgr",
    "push_fgr_to_hub",
    "render_dataset_card",
    "sample_seed",
]
