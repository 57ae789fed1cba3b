"""What the generator RL benchmarks (``bench_refl.py``, ``bench_rl.py``) share: their common flags, the trainer-loop
step timer and the pieces every RL benchmark trains (random generator, frozen stage-1 RM, random LR/HR data)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, TrainerCallback

from ..generators import (
    ControlNetSRGenerator,
    FeedForwardSRGenerator,
    OneStepSRGenerator,
    SDUpscalerGenerator,
    build_sd_upscaler_pipeline,
)
from ..generators.flow_random_init import build_flow_sr_generator
from ..generators.random_families import build_controlnet_sr_pipeline, build_feed_forward_network, build_sd_pipeline
from ..models import FinPercepConfig, FinPercepRewardModel

RM_VISION = {
    "tiny": dict(hidden_size=32, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, patch_size=8),
    "x4": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16),
}
DTYPES = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
GENERATOR_FAMILIES = ("sd_upscaler", "controlnet_sr", "one_step", "feed_forward", "flow")
FAMILY_SIZES = {"sd_upscaler": ("tiny", "x4"), "flow": ("tiny", "sd35-medium")}
RM_SIZES = {"tiny": "tiny", "x4": "x4", "sd35-medium": "x4"}


@dataclass
class RLBenchmarkArguments:
    """Flags every generator RL benchmark takes."""

    device: str = field(default="cpu", metadata={"help": "Where to run.", "choices": ("cpu", "cuda")})
    dtype: str = field(default="fp32", metadata={"help": "Mixed precision of the run.", "choices": tuple(DTYPES)})
    size: str = field(
        default="tiny",
        metadata={
            "help": "Generator and RM size ('x4': the SD-x4-upscaler UNet, 'sd35-medium': SD3.5-medium's DiT for the "
            "flow family; both with a ViT-B/16 RM).",
            "choices": ("tiny", "x4", "sd35-medium"),
        },
    )
    batch_size: int = field(default=1, metadata={"help": "LR images per update."})
    lr_size: int = field(default=16, metadata={"help": "LR side (SR side is 4x)."})
    num_inference_steps: int = field(default=8, metadata={"help": "Sampling length T."})
    steps: int = field(default=3, metadata={"help": "Timed trainer updates (after one warm-up update)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Checkpoint UNet and VAE."})
    output: Path | None = field(default=None, metadata={"help": "Also write the table to this file."})

    def __post_init__(self):
        if min(self.batch_size, self.lr_size, self.num_inference_steps, self.steps) < 1:
            raise ValueError("batch_size, lr_size, num_inference_steps and steps must be >= 1.")


def synchronize(device: str) -> None:
    """Wait for queued CUDA work (timings end when the work does); no-op elsewhere."""
    if device == "cuda":
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Wall time (ms) of each optimizer update of the trainer's own loop, and the CUDA peak memory (GiB) of each."""

    def __init__(self, device: str):
        self.device, self.times, self.peaks, self.start = device, [], [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.times.append((time.perf_counter() - self.start) * 1000)
        if self.device == "cuda":
            self.peaks.append(torch.cuda.max_memory_allocated() / 2**30)


def build_generator(family: str, size: str, num_inference_steps: int):
    """A random generator of ``family`` (one of ``GENERATOR_FAMILIES``; ``size`` "x4" exists for the SD-x4 upscaler,
    "sd35-medium" for the flow family, the other families are tiny)."""
    if family not in GENERATOR_FAMILIES:
        raise ValueError(f"family must be one of {GENERATOR_FAMILIES}, got {family!r}.")
    if size not in FAMILY_SIZES.get(family, ("tiny",)):
        raise ValueError(f"size {size!r} is not available for the {family} family.")
    if family == "flow":
        return build_flow_sr_generator(size, num_inference_steps=num_inference_steps)
    if family == "sd_upscaler":
        pipeline = build_sd_upscaler_pipeline(size)
        return SDUpscalerGenerator.from_pipeline(pipeline, num_inference_steps=num_inference_steps)
    if family == "controlnet_sr":
        pipeline = build_controlnet_sr_pipeline()
        return ControlNetSRGenerator.from_pipeline(pipeline, num_inference_steps=num_inference_steps)
    if family == "one_step":
        return OneStepSRGenerator.from_pipeline(build_sd_pipeline())
    return FeedForwardSRGenerator(build_feed_forward_network("ESRGAN"))


def build_components(
    args: RLBenchmarkArguments, output_dir: str, family: str = "sd_upscaler"
) -> tuple[SDUpscalerGenerator, FinPercepRewardModel, list[dict], dict]:
    """The pieces every RL benchmark shares: a random generator of ``family``, frozen stage-1 RM, random LR/HR data
    (``image_lr`` (3, l, l) and ``image_gt`` (3, 4l, 4l) in [0, 1]) and the `GeneratorTrainerConfig` loop settings."""
    generator = build_generator(family, args.size, args.num_inference_steps)
    torch.manual_seed(0)
    vision_config = CLIPVisionConfig(**RM_VISION[RM_SIZES[args.size]])
    config = FinPercepConfig(vision_config=vision_config, projection_dim=64, stage=1)
    rm = FinPercepRewardModel(config).eval().requires_grad_(False)
    hr = args.lr_size * generator.scale
    dataset = [
        {"image_lr": torch.rand(3, args.lr_size, args.lr_size), "image_gt": torch.rand(3, hr, hr)}
        for _ in range(args.batch_size * (args.steps + 2))
    ]
    common = dict(
        output_dir=output_dir,
        train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_train_steps=args.steps + 1,
        num_inference_steps=args.num_inference_steps,
        checkpointing_steps=10**9,
        validation_steps=0,
        report_to="none",
        mixed_precision=DTYPES[args.dtype],
        gradient_checkpointing=args.gradient_checkpointing,
    )
    return generator, rm, dataset, common


def run_methods_in_subprocesses(script: str, methods: tuple[str, ...], tag: str, output: Path | None) -> dict:
    """Run ``script`` once per method with this process's arguments (minus ``--output``) plus ``--method``; each run
    prints one ``TAG {json}`` line, returned per method (each method's peak memory is its own process's)."""
    forwarded = [arg for arg in sys.argv[1:] if not arg.startswith("--output") and arg != str(output)]
    results = {}
    for method in methods:
        command = [sys.executable, script, *forwarded, "--method", method]
        lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
        line = next(line for line in lines if line.startswith(tag + " "))
        results[method] = json.loads(line.removeprefix(tag + " "))
    return results


def write_report(report: str, output: Path | None) -> None:
    """Print the result table and, with ``output``, write it there too."""
    print(report)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report + "\n")


METHODS = ("refl", "dpo", "grpo")


def timed_pair(ours, bare, device: str, repeats: int) -> tuple[float, float]:
    """Median wall times (ms) of ``ours()`` and ``bare()``, called alternately (after one warm-up each) so that
    both see the same machine load."""
    ours(), bare()
    times = {ours: [], bare: []}
    for _ in range(repeats):
        for fn in (ours, bare):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[fn].append((time.perf_counter() - start) * 1000)
    return statistics.median(times[ours]), statistics.median(times[bare])


def refl_stop_step(num_inference_steps: int) -> int:
    """REFL's stop step, pinned (ImageReward draws it from U{30..39} of 40: mean 34.5, scaled to T)."""
    return min(round(0.85 * num_inference_steps), num_inference_steps - 1)


def resident_mib() -> float:
    """The current resident set size of this process (Linux), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


__all__ = [
    "METHODS",
    "refl_stop_step",
    "resident_mib",
    "timed_pair",
    "DTYPES",
    "FAMILY_SIZES",
    "GENERATOR_FAMILIES",
    "RM_SIZES",
    "RM_VISION",
    "RLBenchmarkArguments",
    "StepTimer",
    "build_components",
    "build_generator",
    "run_methods_in_subprocesses",
    "synchronize",
    "write_report",
]
