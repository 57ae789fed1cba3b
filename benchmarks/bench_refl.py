"""Time breakdown of one REFL update through `REFLTrainer`, next to the bare compute of the same pieces, in one run.

Columns: the pieces as the trainer runs them (its generator wrapper, reward function and loop) and the same pieces
as bare module calls (UNet / VAE / RM called directly on the same weights, dtype and batch):

    no-grad rollout (stop x UNet forward) | grad UNet step | VAE decode fwd+bwd | RM fwd+bwd | optimizer | rest

"whole trainer step" is measured inside `REFLTrainer.train()` by a callback (``on_step_begin`` -> ``on_step_end``),
so it includes data loading, conditioning, accumulation/autocast contexts, clipping, logging and callbacks;
"everything else" is the whole step minus the timed pieces. The REFL stop step is pinned to ``--stop_step``
(default 34, the mean of ImageReward's U{30..39} rounded down) so both columns count the same UNet calls.

    python benchmarks/bench_refl.py                                   # CPU, tiny models (minutes on 2 cores)
    python benchmarks/bench_refl.py --device cuda --dtype bf16 --size x4 --batch_size 4 --lr_size 128
    python benchmarks/bench_refl.py --device cuda --dtype bf16 --size x4 --batch_size 1 --lr_size 128 \
        --gradient_checkpointing                                          # peak-memory target (<= 20 GiB)

``--size x4`` is the SD-x4-upscaler architecture (473 M-parameter UNet, random weights) and a ViT-B/16 RM_1.
Targets (issue 5): whole trainer step <= 1.15x the bare compute; peak memory at batch 1 <= 20 GiB (CUDA only).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from argparse import RawDescriptionHelpFormatter
from dataclasses import dataclass, field
from unittest import mock

import torch

from finpercep_hf.scripting import parse_arguments
from finpercep_hf.scripting.benchmarking import (
    RLBenchmarkArguments,
    StepTimer,
    build_components,
    synchronize,
    write_report,
)
from finpercep_hf.trainers import REFLConfig, REFLTrainer


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


@dataclass
class BenchREFLArguments(RLBenchmarkArguments):
    num_inference_steps: int = field(default=40, metadata={"help": "REFL schedule length T."})
    stop_step: int = field(default=34, metadata={"help": "Pinned REFL stop step (no-grad UNet calls)."})
    repeats: int = field(default=3, metadata={"help": "Repeats of each bare/piece timing (median)."})


def build_trainer(args: BenchREFLArguments, output_dir: str, timer: StepTimer) -> REFLTrainer:
    generator, rm, dataset, common = build_components(args, output_dir)
    config = REFLConfig(min_stop_step=args.stop_step, **common)
    return REFLTrainer(generator, reward=rm, args=config, train_dataset=dataset, callbacks=[timer])


def measure_pieces(trainer: REFLTrainer, stop: int, args) -> dict[str, tuple[float, float]]:
    """Each piece as the trainer runs it (its wrapper, reward function, optimizer) and as bare module calls on the
    same weights, dtype and batch: ``name -> (trainer ms, bare ms)``."""
    device, repeats = args.device, args.repeats
    generator, accelerator = trainer.generator, trainer.accelerator
    unet, vae, rm = generator.unet, generator.vae, trainer.reward.model
    batch_size, size, dtype = args.batch_size, args.lr_size, generator.dtype
    image_lr = torch.rand(batch_size, 3, size, size, device=accelerator.device)
    sample = torch.randn(batch_size, 7, size, size, device=accelerator.device, dtype=dtype)
    embeds = generator.prompt_embeds.expand(batch_size, -1, -1)
    labels = torch.full((batch_size,), 20, device=accelerator.device)
    timestep = torch.tensor(500, device=accelerator.device)

    def bare_unet():
        return unet(sample, timestep, encoder_hidden_states=embeds, class_labels=labels).sample

    pieces = {}
    with accelerator.autocast():
        latents, stop_timestep, condition = trainer.rollout_to_stop_step(image_lr, stop)

        def bare_rollout():
            with torch.no_grad():
                for _ in range(stop):
                    bare_unet()

        pieces["no-grad rollout"] = timed_pair(
            lambda: trainer.rollout_to_stop_step(image_lr, stop), bare_rollout, device, repeats
        )
        pieces["grad UNet step fwd+bwd"] = timed_pair(
            lambda: generator.predict_x0_with_grad(latents, stop_timestep, condition).float().sum().backward(),
            lambda: bare_unet().float().sum().backward(),
            device,
            repeats,
        )
        x0 = generator.predict_x0_with_grad(latents, stop_timestep, condition).detach()

        def bare_decode():
            vae.decode(x0.clone().requires_grad_(True) / vae.config.scaling_factor).sample.float().sum().backward()

        pieces["VAE decode fwd+bwd"] = timed_pair(
            lambda: generator.decode(x0.clone().requires_grad_(True)).sum().backward(),
            bare_decode,
            device,
            repeats,
        )
        images = generator.decode(x0).detach()
        pieces["RM fwd+bwd"] = timed_pair(
            lambda: trainer.reward(images.clone().requires_grad_(True)).sum().backward(),
            lambda: rm(images.clone().requires_grad_(True)).global_score.sum().backward(),
            device,
            repeats,
        )

    def optimizer_step():
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    pieces["optimizer step"] = timed_pair(optimizer_step, lambda: None, device, repeats)
    return pieces


def main() -> None:
    (args,) = parse_arguments((BenchREFLArguments,), description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"
        torch.set_num_threads(min(2, torch.get_num_threads()))
        torch.set_flush_denormal(True)

    timer = StepTimer(args.device)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trainer(args, output_dir, timer)
        with mock.patch.object(REFLTrainer, "draw_stop_step", return_value=args.stop_step):
            trainer.train()
        step_times = timer.times[1:]
        whole = statistics.median(step_times)
        pieces = measure_pieces(trainer, args.stop_step, args)

    ours = {name: times[0] for name, times in pieces.items()}
    bare = {name: times[1] for name, times in pieces.items()}
    bare["optimizer step"] = 0.0
    ours["everything else in the trainer"] = whole - sum(ours.values())
    bare["everything else in the trainer"] = 0.0
    unet_params = sum(p.numel() for p in trainer.generator.unet.parameters()) / 1e6
    lines = [
        f"bench_refl: device={args.device} dtype={args.dtype} size={args.size} ({unet_params:.1f} M UNet params "
        f"incl. LoRA) batch={args.batch_size} LR {args.lr_size}->{args.lr_size * 4} T={args.num_inference_steps} "
        f"stop_step={args.stop_step} gradient_checkpointing={args.gradient_checkpointing} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}",
        "",
        f"{'piece':34s} {'trainer (ms)':>13s} {'bare (ms)':>11s} {'ratio':>7s}",
    ]
    for name in ours:
        ratio = f"{ours[name] / bare[name]:.2f}" if bare[name] > 0 else "-"
        lines.append(f"{name:34s} {ours[name]:13.1f} {bare[name]:11.1f} {ratio:>7s}")
    total_bare = sum(bare.values())
    lines += [
        f"{'whole trainer step (median of ' + str(len(step_times)) + ')':34s} {whole:13.1f} {total_bare:11.1f} "
        f"{whole / total_bare:7.2f}   (target <= 1.15)",
        f"trainer step times (ms): {', '.join(f'{t:.0f}' for t in step_times)}",
    ]
    if args.device == "cuda":
        lines.append(f"peak memory per trainer step: {max(timer.peaks):.2f} GiB (target at batch 1: <= 20 GiB)")
    write_report("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
