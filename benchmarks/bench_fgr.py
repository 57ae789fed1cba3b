"""FGR synthesis throughput: samples/s at 512x512, 1 vs 2 processes, side by side.

Measures the synthesis steps of one FGR sample (Real-ESRGAN degradation, a random mask, the region swap and
``pdm_target``) with the offline ``1 - SSIM`` feature term and with a ViT-S-sized random DINOv3 (384 wide, 12 layers,
patch 16, 4 register tokens: the shape of facebook/dinov3-vits16-pretrain-lvd1689m). The SR model is excluded from
these figures and timed separately per pool member (classical upsamplers and the labelled artifact generators).
Each process runs with one torch thread. Target: >= 10 samples/s per core without models, >= 1.8x with 2 processes.

    python benchmarks/bench_fgr.py [--samples 24] [--dino-samples 4] [--size 512]
    python benchmarks/bench_fgr.py --mini     # FGR-mini build time and per-artifact-kind pdm_target contrast
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time

import torch
from PIL import Image

from finpercep_hf.data import ARTIFACT_KINDS, PDMTargetBuilder, degrade, load_sr_model, random_mask, region_swap
from finpercep_hf.images import pil_to_tensor

PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")


def make_gt(size: int) -> list[torch.Tensor]:
    """(1, 3, size, size) crops of skimage photos (resized up when a photo is smaller)."""
    from skimage import data

    crops = []
    for name in PHOTOS:
        photo = Image.fromarray(getattr(data, name)()).convert("RGB")
        factor = max(1.0, size / min(photo.size))
        photo = photo.resize((round(photo.width * factor), round(photo.height * factor)), Image.BICUBIC)
        crops.append(pil_to_tensor(photo.crop((0, 0, size, size)))[None])
    return crops


def build_dino():
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    return DINOv3ViTModel(DINOv3ViTConfig(num_register_tokens=4)).eval()  # ViT-S/16 shape, random weights


def synthesize(indices: list[int], size: int, use_dino: bool) -> dict:
    """Run the synthesis steps on ``indices``; returns the per-step seconds summed over the samples."""
    torch.set_num_threads(1)
    crops = make_gt(size)
    upsampler = load_sr_model("bicubic")
    builder = PDMTargetBuilder(build_dino() if use_dino else None, alpha=0.5, scale=0.5)
    steps = {"degrade": 0.0, "mask": 0.0, "swap": 0.0, "pdm_target": 0.0}
    image_sr = upsampler(degrade(crops[0], seed=0))  # warm-up, not timed; SR excluded below
    builder(image_sr, crops[0])
    for index in indices:
        generator = torch.Generator().manual_seed(index)
        image_gt = crops[index % len(crops)]
        tic = time.perf_counter()
        lr = degrade(image_gt, seed=index)
        steps["degrade"] += time.perf_counter() - tic
        image_sr = upsampler(lr)  # the SR model: excluded from the synthesis time
        tic = time.perf_counter()
        mask = random_mask(size, size, ("rectangle", "stroke")[index % 2], generator)
        steps["mask"] += time.perf_counter() - tic
        tic = time.perf_counter()
        image_syn = region_swap(image_gt, image_sr, mask)
        steps["swap"] += time.perf_counter() - tic
        tic = time.perf_counter()
        builder(image_syn, image_gt)
        steps["pdm_target"] += time.perf_counter() - tic
    return {"steps": steps, "count": len(indices)}


def run_processes(num_samples: int, num_processes: int, size: int, use_dino: bool) -> tuple[float, dict]:
    """Samples/s of the synthesis steps over ``num_processes`` worker processes (spawned, one thread each).

    Throughput counts synthesis time only: each worker's SR time is excluded by summing its step times, and the
    processes' rates add up (they run concurrently)."""
    chunks = [list(range(rank, num_samples, num_processes)) for rank in range(num_processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_processes) as pool:
        results = pool.starmap(synthesize, [(chunk, size, use_dino) for chunk in chunks])
    rate = sum(result["count"] / sum(result["steps"].values()) for result in results)
    steps = {key: sum(result["steps"][key] for result in results) / num_samples for key in results[0]["steps"]}
    return rate, steps


def time_sr_models(size: int, repeats: int = 4) -> dict[str, float]:
    """Seconds per sample of each built-in offline SR model (x4 from (size/4)^2), one thread."""
    torch.set_num_threads(1)
    lr = degrade(make_gt(size)[0], seed=0)
    timings = {}
    for spec in ("bicubic", "lanczos", *(f"artifact:{kind}" for kind in ARTIFACT_KINDS)):
        model = load_sr_model(spec)
        model(lr, torch.Generator().manual_seed(0))
        tic = time.perf_counter()
        for repeat in range(repeats):
            model(lr, torch.Generator().manual_seed(repeat))
        timings[spec] = (time.perf_counter() - tic) / repeats
    return timings


def bench_mini() -> None:
    """Build time of the FGR-mini preset (one thread) and, per artifact kind, the mean pdm_target inside and
    outside the mask: how visible each kind is to the reward model it trains."""
    import tempfile

    import datasets
    import numpy as np

    from finpercep_hf.data import FGRBuildConfig, build_fgr

    config = FGRBuildConfig.mini()
    with tempfile.TemporaryDirectory() as scratch:
        tic = time.perf_counter()
        path = build_fgr(config, scratch, progress=False)
        seconds = time.perf_counter() - tic
        rows = datasets.load_dataset(str(path), split="train")
        stats: dict[str, list[tuple[float, float, float]]] = {}
        for row in rows:
            mask = np.asarray(row["mask"]) > 127
            target = np.asarray(row["pdm_target"])
            stats.setdefault(row["artifact_kind"], []).append(
                (target[mask].mean(), target[~mask].mean(), row["mask_area"])
            )
    print(f"# FGR-mini preset: {len(rows)} samples at {config.crop_size}x{config.crop_size}, 1 torch thread")
    print(f"build time {seconds:.1f} s ({len(rows) / seconds:.1f} samples/s), load average {os.getloadavg()[0]:.1f}")
    print()
    print("| artifact_kind | rows | mean pdm_target inside mask | outside mask | inside / outside |")
    print("|---|---|---|---|---|")
    for kind, values in sorted(stats.items()):
        inside, outside = np.mean([v[0] for v in values]), np.mean([v[1] for v in values])
        print(f"| {kind} | {len(values)} | {inside:.3f} | {outside:.3f} | {inside / max(outside, 1e-6):.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24, help="Samples per run without models.")
    parser.add_argument("--dino-samples", type=int, default=4, help="Samples per run with the ViT-S DINOv3.")
    parser.add_argument("--size", type=int, default=512, help="Crop side in pixels.")
    parser.add_argument("--mini", action="store_true", help="Time the FGR-mini preset build and its per-kind maps.")
    args = parser.parse_args()
    if args.mini:
        torch.set_num_threads(1)
        bench_mini()
        return

    print(f"# FGR synthesis throughput at {args.size}x{args.size} (SR model excluded)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"load average before the run {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for label, use_dino, count in (
        ("1-SSIM fallback", False, args.samples),
        ("ViT-S DINOv3", True, args.dino_samples),
    ):
        one, steps_one = run_processes(count, 1, args.size, use_dino)
        two, _ = run_processes(count, 2, args.size, use_dino)
        rows.append((label, count, one, two, steps_one))
    print()
    print("| pdm feature term | samples | 1 process (samples/s) | 2 processes (samples/s) | 2 vs 1 |")
    print("|---|---|---|---|---|")
    for label, count, one, two, _ in rows:
        print(f"| {label} | {count} | {one:.2f} | {two:.2f} | {two / one:.2f}x |")
    print()
    print("Per-step seconds per sample, 1 process:")
    print("| pdm feature term | " + " | ".join(rows[0][4]) + " |")
    print("|---|" + "---|" * len(rows[0][4]))
    for label, _, _, _, steps in rows:
        print(f"| {label} | " + " | ".join(f"{value:.4f}" for value in steps.values()) + " |")
    print()
    print(f"SR models (reported separately), seconds per sample from {args.size // 4}^2 LR, 1 thread:")
    sr = time_sr_models(args.size)
    print("| sr_model | s/sample | vs bicubic |")
    print("|---|---|---|")
    for name, seconds in sr.items():
        print(f"| {name} | {seconds:.4f} | {seconds / sr['bicubic']:.1f}x |")
    print(f"\nload average after the run {os.getloadavg()[0]:.1f} (2 cores shared with other jobs lower the figures)")


if __name__ == "__main__":
    main()
