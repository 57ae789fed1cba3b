"""The FGR dataset card (rendered from the build record and the shards) and the Hub upload."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import datasets

from ...cards import card_template_path
from ..sr_pool import ClassicalUpsampler
from .config import FGRBuildConfig
from .schema import BUILD_FILE, DATA_DIR, FGR_FEATURES


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


__all__ = [
    "push_fgr_to_hub",
    "render_dataset_card",
]
