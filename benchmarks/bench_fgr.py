"""FGR synthesis throughput: samples/s at 512x512, 1 vs 2 processes, side by side.

Measures the synthesis steps of one FGR sample (Real-ESRGAN degradation, a random mask, the region swap and
``pdm_target``) with the offline ``1 - SSIM`` feature term and with a random DINOv3 of the ViT-S shape (384 wide, 12
layers, patch 16, 4 register tokens: facebook/dinov3-vits16-pretrain-lvd1689m; ``--dino_models ViT-S ViT-B`` adds
the ViT-B shape) run on ``--device``. The SR model is excluded from these figures and timed separately per pool member
(classical upsamplers, the labelled artifact generators and, with ``--sd_x4_steps N``, a random-init SD-x4-upscaler
of the real size through ``DiffusersSR``). Each process runs with one torch thread and first synthesizes
``--warmup`` samples of other seeds, untimed: a build runs thousands of samples per process, so its steady state has
warm allocator pools and oneDNN kernels compiled for the recurring convolution shapes; the first samples of a process
do not. Each measurement runs ``--repeats`` times, 1 and 2 processes alternated, and the median is quoted: on a
shared machine single runs of the same work vary by 20-40%. Target: >= 10 samples/s per core without models, >= 1.8x
with 2 processes.

    python benchmarks/bench_fgr.py [--samples 48] [--warmup 8] [--repeats 3] [--dino_samples 4] [--size 512]
    python benchmarks/bench_fgr.py --device cuda --dino_models ViT-S ViT-B --sd_x4_steps 20   # on a GPU machine
    python benchmarks/bench_fgr.py --mini     # FGR-mini build time and per-artifact-kind pdm_target contrast
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from finpercep_hf.data import ARTIFACT_KINDS, PDMTargetBuilder, degrade, load_sr_model, random_mask, region_swap
from finpercep_hf.images import pil_to_tensor
from finpercep_hf.scripting import parse_arguments

PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")
DINO_SHAPES = {  # DINOv3ViTConfig defaults are the ViT-S/16 shape
    "ViT-S": dict(num_register_tokens=4),
    "ViT-B": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_register_tokens=4),
}
WARMUP_SEED = 10**6  # warm-up samples use seeds from here on, never the timed ones


@dataclass
class BenchFGRArguments:
    samples: int = field(default=48, metadata={"help": "Timed samples per run without models."})
    dino_samples: int = field(default=4, metadata={"help": "Timed samples per run with a DINOv3."})
    warmup: int = field(default=8, metadata={"help": "Untimed samples (other seeds) per process first."})
    repeats: int = field(default=3, metadata={"help": "Runs of each measurement (1, 2, 1, 2, ...); median."})
    size: int = field(default=512, metadata={"help": "Crop side in pixels."})
    device: str = field(default="cpu", metadata={"help": "Where the DINOv3 models (and the SD-x4 pipeline) run."})
    dino_models: list[str] = field(
        default_factory=lambda: ["ViT-S"], metadata={"help": "DINOv3 shapes.", "choices": list(DINO_SHAPES)}
    )
    sd_x4_steps: int = field(default=0, metadata={"help": "Also time a random SD-x4 upscaler (0: skip)."})
    mini: bool = field(default=False, metadata={"help": "Time the FGR-mini preset build and its per-kind maps."})


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


def build_dino(shape: str):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    return DINOv3ViTModel(DINOv3ViTConfig(**DINO_SHAPES[shape])).eval()  # random weights, the checkpoint's shape


def synthesize(indices: list[int], size: int, dino: str | None, device: str, warmup: int) -> dict:
    """Run the synthesis steps on ``indices`` after ``warmup`` untimed samples; returns per-step seconds, summed."""
    torch.set_num_threads(1)
    crops = make_gt(size)
    upsampler = load_sr_model("bicubic")
    builder = PDMTargetBuilder(build_dino(dino) if dino else None, alpha=0.5, scale=0.5, device=device)

    def sample(index: int, steps: dict[str, float]) -> None:
        def clock(step: str, start: float) -> float:
            if device != "cpu":
                torch.cuda.synchronize()
            now = time.perf_counter()
            steps[step] = steps.get(step, 0.0) + now - start
            return now

        generator = torch.Generator().manual_seed(index)
        image_gt = crops[index % len(crops)]
        tic = time.perf_counter()
        lr = degrade(image_gt, seed=index)
        clock("degrade", tic)
        image_sr = upsampler(lr)  # the SR model: excluded from the synthesis time
        tic = time.perf_counter()
        mask = random_mask(size, size, ("rectangle", "stroke")[index % 2], generator)
        tic = clock("mask", tic)
        image_syn = region_swap(image_gt, image_sr, mask)
        tic = clock("swap", tic)
        builder(image_syn, image_gt)
        clock("pdm_target", tic)

    for index in range(WARMUP_SEED, WARMUP_SEED + warmup):
        sample(index, {})
    steps: dict[str, float] = {}
    for index in indices:
        sample(index, steps)
    return {"steps": steps, "count": len(indices)}


def run_processes(
    num_samples: int, num_processes: int, size: int, dino: str | None, device: str, warmup: int
) -> tuple[float, dict]:
    """Samples/s of the synthesis steps over ``num_processes`` worker processes (spawned, one thread each).

    Throughput counts synthesis time only: each worker's SR time is excluded by summing its step times, and the
    processes' rates add up (they run concurrently)."""
    chunks = [list(range(rank, num_samples, num_processes)) for rank in range(num_processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_processes) as pool:
        results = pool.starmap(synthesize, [(chunk, size, dino, device, warmup) for chunk in chunks])
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


def time_sd_x4(size: int, steps: int, device: str, dtype: torch.dtype, repeats: int = 3) -> float:
    """Seconds per sample of a random-init SD-x4-upscaler of the real architecture, loaded through ``DiffusersSR``
    from a saved directory as a user's checkpoint is (x4 from (size/4)^2, ``steps`` denoising steps)."""
    import tempfile

    from finpercep_hf.data import DiffusersSR
    from finpercep_hf.generators.random_init import build_sd_upscaler_pipeline

    with tempfile.TemporaryDirectory() as scratch:
        build_sd_upscaler_pipeline("x4").save_pretrained(scratch)
        model = DiffusersSR(scratch, num_inference_steps=steps, device=device, dtype=dtype)
    lr = degrade(make_gt(size)[0], seed=0)
    model(lr, torch.Generator().manual_seed(0))
    tic = time.perf_counter()
    for repeat in range(repeats):
        model(lr, torch.Generator().manual_seed(repeat))  # returns on the CPU: synchronised
    return (time.perf_counter() - tic) / repeats


def main() -> None:
    (args,) = parse_arguments((BenchFGRArguments,), description=__doc__.splitlines()[0])
    if args.mini:
        torch.set_num_threads(1)
        bench_mini()
        return
    dinos = args.dino_models

    print(f"# FGR synthesis throughput at {args.size}x{args.size} (SR model excluded)")
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs{gpu}, "
        f"torch {torch.__version__}, load average before the run {os.getloadavg()[0]:.1f}; "
        f"{args.warmup} warm-up samples per process"
    )
    print()
    print(f"Median of {args.repeats} runs each (all runs in brackets; each row printed as soon as it is measured):")
    print("| pdm feature term | samples | 1 process (samples/s) | 2 processes (samples/s) | 2 vs 1 |")
    print("|---|---|---|---|---|", flush=True)
    rows = []
    for label, dino, count in (
        ("1-SSIM fallback (CPU)", None, args.samples),
        *((f"{name} DINOv3 ({args.device})", name, args.dino_samples) for name in dinos),
    ):
        ones, twos, steps = [], [], []
        for _ in range(args.repeats):  # alternated, so a drift in the machine's speed hits both alike
            one, steps_one = run_processes(count, 1, args.size, dino, args.device, args.warmup)
            ones.append(one)
            steps.append(steps_one)
            twos.append(run_processes(count, 2, args.size, dino, args.device, args.warmup)[0])
        one, two = statistics.median(ones), statistics.median(twos)
        runs_one, runs_two = ", ".join(f"{rate:.1f}" for rate in ones), ", ".join(f"{rate:.1f}" for rate in twos)
        row = f"| {label} | {count} | {one:.2f} ({runs_one}) | {two:.2f} ({runs_two}) | {two / one:.2f}x |"
        print(row, flush=True)
        rows.append((label, {key: statistics.median(run[key] for run in steps) for key in steps[0]}))
    print()
    print("Per-step seconds per sample, 1 process (median of the runs):")
    print("| pdm feature term | " + " | ".join(rows[0][1]) + " |")
    print("|---|" + "---|" * len(rows[0][1]))
    for label, steps in rows:
        print(f"| {label} | " + " | ".join(f"{value:.4f}" for value in steps.values()) + " |")
    print()
    print(f"SR models (reported separately), seconds per sample from {args.size // 4}^2 LR, 1 thread:")
    sr = time_sr_models(args.size)
    if args.sd_x4_steps:
        dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
        name = f"random SD-x4 upscaler, {args.sd_x4_steps} steps ({args.device}, {str(dtype).split('.')[-1]})"
        sr[name] = time_sd_x4(args.size, args.sd_x4_steps, args.device, dtype)
    print("| sr_model | s/sample | vs bicubic |")
    print("|---|---|---|")
    for name, seconds in sr.items():
        print(f"| {name} | {seconds:.4f} | {seconds / sr['bicubic']:.1f}x |")
    print(f"\nload average after the run {os.getloadavg()[0]:.1f} (cores shared with other jobs lower the figures)")


if __name__ == "__main__":
    main()
