"""One optimizer update of REFL vs Diffusion-DPO vs GRPO at equal batch: wall time and peak memory, side by side.

Every method gets the same generator (random SD-x4-upscaler architecture), the same stage-1 FinPercep-RM, the same
``--batch_size`` LR images per update and the same sampling length ``T = --num_inference_steps``; DPO samples
``K = --candidates`` candidates per LR image and GRPO a group of ``K``. What one update computes (UNet calls at
their batch sizes; B = batch, P = pairs = B for best-vs-worst):

    REFL  stop no-grad UNet fwd (B), 1 UNet fwd+bwd (B), VAE decode fwd+bwd (B), RM fwd+bwd (B)
    DPO   T no-grad UNet fwd (B*K), VAE decode (B*K), RM fwd (B*K), reference UNet fwd (2P), UNet fwd+bwd (2P)
    GRPO  T no-grad UNet fwd (B*K), VAE decode (B*K), RM fwd (B*K), ceil(0.6 T) UNet fwd+bwd (B*K)

Each method runs in its own process (so that its peak memory is its own: CUDA ``max_memory_allocated`` or, on
CPU, the growth of the resident set over the process's size after building the models), the update time is the
median of ``--steps`` updates after one warm-up, timed inside the trainer's own loop, and the three processes run
``--rounds`` times in turn (median over rounds) so that all see the same machine load.

    python benchmarks/bench_rl.py                                   # CPU, tiny models
    python benchmarks/bench_rl.py --device cuda --dtype bf16 --size x4 --batch_size 1 --lr_size 128 \
        --num_inference_steps 20 --candidates 4
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import tempfile
from argparse import RawDescriptionHelpFormatter
from dataclasses import dataclass, field
from unittest import mock

import torch

from finpercep_hf.scripting import parse_arguments
from finpercep_hf.scripting.benchmarking import (
    METHODS,
    RLBenchmarkArguments,
    StepTimer,
    build_components,
    refl_stop_step,
    resident_mib,
    run_methods_in_subprocesses,
    write_report,
)
from finpercep_hf.trainers import (
    DiffusionDPOConfig,
    DiffusionDPOTrainer,
    DiffusionGRPOConfig,
    DiffusionGRPOTrainer,
    REFLConfig,
    REFLTrainer,
)


@dataclass
class BenchRLArguments(RLBenchmarkArguments):
    family: str = field(
        default="sd_upscaler",
        metadata={
            "help": "Generator family: sd_upscaler or flow (FlowSRGenerator).",
            "choices": ("sd_upscaler", "flow"),
        },
    )
    candidates: int = field(default=4, metadata={"help": "DPO candidates / GRPO group size K."})
    rounds: int = field(default=2, metadata={"help": "Times the three methods run in turn."})
    method: str | None = field(
        default=None, metadata={"help": "(internal) run one method, print JSON.", "choices": METHODS}
    )


def build_trainer(method: str, args: BenchRLArguments, output_dir: str, timer: StepTimer):
    generator, rm, dataset, common = build_components(args, output_dir, family=args.family)
    if method == "refl":
        trainer_class, config = (
            REFLTrainer,
            REFLConfig(min_stop_step=refl_stop_step(args.num_inference_steps), **common),
        )
    elif method == "dpo":
        trainer_class, config = (
            DiffusionDPOTrainer,
            DiffusionDPOConfig(num_samples_per_image=args.candidates, **common),
        )
    else:
        trainer_class, config = (
            DiffusionGRPOTrainer,
            DiffusionGRPOConfig(num_samples_per_image=args.candidates, **common),
        )
    return trainer_class(generator, reward=rm, args=config, train_dataset=dataset, callbacks=[timer])


def run_method(method: str, args: BenchRLArguments) -> dict:
    """Build and train one method in this process; its median update time and its peak memory."""
    timer = StepTimer(args.device)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trainer(method, args, output_dir, timer)
        built = resident_mib()
        stop_step = refl_stop_step(args.num_inference_steps)  # every REFL update does the same work
        with mock.patch.object(REFLTrainer, "draw_stop_step", return_value=stop_step):
            trainer.train()
    result = {"method": method, "ms": statistics.median(timer.times[1:]), "times": timer.times[1:]}
    if args.device == "cuda":
        result["peak_mib"] = max(timer.peaks) * 1024
    else:
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - built
    return result


def main() -> None:
    (args,) = parse_arguments((BenchRLArguments,), description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"
        # One thread per process: on a small shared CPU, two threads of tiny kernels stall each other.
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)

    if args.method is not None:
        print("BENCH_RL " + json.dumps(run_method(args.method, args)))
        return

    results: dict[str, list[dict]] = {method: [] for method in METHODS}
    for _ in range(args.rounds):
        for method, result in run_methods_in_subprocesses(__file__, METHODS, "BENCH_RL", args.output).items():
            results[method].append(result)

    ms = {method: statistics.median(r["ms"] for r in runs) for method, runs in results.items()}
    peak = {method: statistics.median(r["peak_mib"] for r in runs) for method, runs in results.items()}
    memory = "CUDA max_memory_allocated" if args.device == "cuda" else "CPU resident-set growth over the built models"
    lines = [
        f"bench_rl: family={args.family} device={args.device} dtype={args.dtype} size={args.size} "
        f"batch={args.batch_size} "
        f"LR {args.lr_size}->{args.lr_size * 4} T={args.num_inference_steps} K={args.candidates} "
        f"gradient_checkpointing={args.gradient_checkpointing} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} rounds={args.rounds} steps={args.steps}",
        f"peak memory = {memory}",
        "",
        f"{'method':8s} {'update (ms)':>12s} {'x REFL':>7s} {'peak (MiB)':>11s} {'x REFL':>7s}   update times (ms)",
    ]
    for method in METHODS:
        times = ", ".join(f"{t:.0f}" for run in results[method] for t in run["times"])
        lines.append(
            f"{method:8s} {ms[method]:12.1f} {ms[method] / ms['refl']:7.2f} {peak[method]:11.1f} "
            f"{peak[method] / peak['refl']:7.2f}   {times}"
        )
    write_report("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
