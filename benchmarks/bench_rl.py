"""One optimizer update of REFL vs Diffusion-DPO vs GRPO at equal batch: wall time and peak memory, side by side.

Every method gets the same generator (random SD-x4-upscaler architecture), the same stage-1 FinPercep-RM, the same
``--batch-size`` LR images per update and the same sampling length ``T = --num-inference-steps``; DPO samples
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
    python benchmarks/bench_rl.py --device cuda --dtype bf16 --size x4 --batch-size 1 --lr-size 128 \
        --num-inference-steps 20 --candidates 4
    python benchmarks/bench_rl.py --generator flow                  # the flow generator (see bench_flow.py)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch
from bench_refl import DTYPES, StepTimer, build_components

from finpercep_hf.trainers import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, REFLConfig, REFLTrainer

METHODS = ("refl", "dpo", "grpo")


def refl_stop_step(num_inference_steps: int) -> int:
    """REFL's stop step, pinned (ImageReward draws it from U{30..39} of 40: mean 34.5, scaled to T)."""
    return min(round(0.85 * num_inference_steps), num_inference_steps - 1)


def resident_mib() -> float:
    """The current resident set size of this process (Linux), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_trainer(method: str, args, output_dir: str, timer: StepTimer):
    if args.generator == "flow":
        from bench_flow import build_flow_components

        generator, rm, dataset, common = build_flow_components(args, output_dir)
    else:
        generator, rm, dataset, common = build_components(args, output_dir)
    if method == "refl":
        trainer_class, config = (
            REFLTrainer,
            REFLConfig(min_stop_step=refl_stop_step(args.num_inference_steps), **common),
        )
    elif method == "dpo":
        trainer_class, config = DPOTrainer, DPOConfig(num_candidates=args.candidates, **common)
    else:
        trainer_class, config = GRPOTrainer, GRPOConfig(group_size=args.candidates, **common)
    return trainer_class(generator, reward=rm, args=config, train_dataset=dataset, callbacks=[timer])


def run_method(method: str, args) -> dict:
    """Build and train one method in this process; its median update time and its peak memory."""
    timer = StepTimer(args.device)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trainer(method, args, output_dir, timer)
        built = resident_mib()
        stop_step = refl_stop_step(args.num_inference_steps)  # every REFL update does the same work
        with mock.patch("finpercep_hf.trainers.refl.random.randint", return_value=stop_step):
            trainer.train()
    result = {"method": method, "ms": statistics.median(timer.times[1:]), "times": timer.times[1:]}
    if args.device == "cuda":
        result["peak_mib"] = max(timer.peaks) * 1024
    else:
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - built
    return result


def run_methods_in_subprocesses(script: str, output: Path | None, tag: str) -> dict[str, dict]:
    """Run ``script`` once per method with this process's arguments (minus ``--output``) plus ``--method``; each
    prints one ``TAG {json}`` line, returned per method."""
    forwarded = [arg for arg in sys.argv[1:] if not arg.startswith("--output") and arg != str(output)]
    results = {}
    for method in METHODS:
        command = [sys.executable, script, *forwarded, "--method", method]
        lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
        line = next(line for line in lines if line.startswith(tag + " "))
        results[method] = json.loads(line.removeprefix(tag + " "))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="Where to run.")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="Mixed precision of the run.")
    parser.add_argument("--generator", choices=("sd-upscaler", "flow"), default="sd-upscaler", help="Generator.")
    parser.add_argument(
        "--size", choices=("tiny", "x4", "sd35-medium"), default="tiny", help="Size (x4: SD-x4; sd35-medium: flow)."
    )
    parser.add_argument("--batch-size", type=int, default=1, help="LR images per update (all methods).")
    parser.add_argument("--lr-size", type=int, default=16, help="LR side (SR side is 4x).")
    parser.add_argument("--num-inference-steps", type=int, default=8, help="Sampling length T (all methods).")
    parser.add_argument("--candidates", type=int, default=4, help="DPO candidates / GRPO group size K.")
    parser.add_argument("--steps", type=int, default=3, help="Timed updates per method (after one warm-up).")
    parser.add_argument("--rounds", type=int, default=2, help="Times the three methods run in turn.")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="Checkpoint UNet and VAE.")
    parser.add_argument("--method", choices=METHODS, default=None, help="(internal) run one method, print JSON.")
    parser.add_argument("--output", type=Path, default=None, help="Also write the table to this file.")
    args = parser.parse_args()
    if (args.size == "x4" and args.generator == "flow") or (args.size == "sd35-medium" and args.generator != "flow"):
        parser.error("--size x4 is the SD-x4 upscaler's, --size sd35-medium the flow generator's.")
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
        for method, result in run_methods_in_subprocesses(__file__, args.output, "BENCH_RL").items():
            results[method].append(result)

    ms = {method: statistics.median(r["ms"] for r in runs) for method, runs in results.items()}
    peak = {method: statistics.median(r["peak_mib"] for r in runs) for method, runs in results.items()}
    memory = "CUDA max_memory_allocated" if args.device == "cuda" else "CPU resident-set growth over the built models"
    lines = [
        f"bench_rl: generator={args.generator} device={args.device} dtype={args.dtype} size={args.size} "
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
    report = "\n".join(lines)
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
