"""`build_fgr`: the sharded, resumable, multi-process Parquet writer of an FGR build."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm

from .card import render_dataset_card
from .config import FGRBuildConfig
from .schema import BUILD_FILE, DATA_DIR, FGR_FEATURES
from .synthesis import FGRSynthesizer

logger = logging.getLogger(__name__)


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


__all__ = [
    "build_fgr",
    "shard_path",
]
