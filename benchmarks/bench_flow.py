"""REFL, Diffusion-DPO and GRPO on the flow-matching SR generator (`FlowSRGenerator`): the trainer's update time
against the bare compute of its pieces, and peak memory.

For each method one process builds the generator (random SD3-family weights, LR-stream transformer, LoRA), a
frozen stage-1 FinPercep-RM and random LR/HR data, trains ``--steps`` updates after one warm-up inside the trainer's
own loop (median update time), then times each piece as a bare module call on the same weights, dtype and batch
(transformer, VAE, RM; medians of ``--repeats``). The bare compute of one update is the sum of its pieces
(B = batch, K = candidates / group size, P = B pairs, T = sampling steps, 0.6 T trained GRPO steps):

    REFL  VAE enc (B) + stop x fwd (B) + fwd+bwd (B) + VAE dec fwd+bwd (B) + RM fwd+bwd (B)
    DPO   VAE enc (BK) + T x fwd (BK) + VAE dec (BK) + RM (BK) + VAE enc (P) + ref fwd (2P) + fwd+bwd (2P)
    GRPO  VAE enc (B) + T x fwd (BK) + VAE dec (BK) + RM (BK) + ceil(0.6 T) x fwd+bwd (BK)

The optimizer step counts as trainer overhead (bare 0). Peak memory: CUDA ``max_memory_allocated`` or, on CPU, the
growth of the resident set over the process's size after building the models.

    python benchmarks/bench_flow.py                                        # CPU, tiny models
    python benchmarks/bench_flow.py --device cuda --dtype bf16 --size sd35-medium --lr_size 128 \\
        --gradient_checkpointing --num_inference_steps 20 --candidates 4   # SD3.5-medium size, 512^2 output

Targets (issue 15): trainer update <= 1.15x bare compute for each method; at SD3.5-medium size (bf16, LoRA,
gradient checkpointing, 512^2 output, batch 1) peak memory <= 40 GiB.
"""

from __future__ import annotations

import json
import math
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
    synchronize,
    timed_pair,
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
class BenchFlowArguments(RLBenchmarkArguments):
    generator: str = field(
        default="flow", metadata={"help": "Generator family (this benchmark: flow).", "choices": ("flow",)}
    )
    candidates: int = field(default=4, metadata={"help": "DPO candidates / GRPO group size K."})
    repeats: int = field(default=3, metadata={"help": "Repeats of each bare piece timing (median)."})
    method: str | None = field(
        default=None, metadata={"help": "(internal) run one method, print JSON.", "choices": (None, *METHODS)}
    )


def build_trainer(method: str, args: BenchFlowArguments, output_dir: str, timer: StepTimer):
    generator, rm, dataset, common = build_components(args, output_dir, family="flow")
    if method == "refl":
        trainer_class = REFLTrainer
        config = REFLConfig(min_stop_step=refl_stop_step(args.num_inference_steps), **common)
    elif method == "dpo":
        trainer_class, config = (
            DiffusionDPOTrainer,
            DiffusionDPOConfig(num_samples_per_image=args.candidates, **common),
        )
    else:
        config = DiffusionGRPOConfig(num_samples_per_image=args.candidates, eta=0.7, **common)
        trainer_class = DiffusionGRPOTrainer
    return trainer_class(generator, reward=rm, args=config, train_dataset=dataset, callbacks=[timer])


def bare_pieces(trainer, args: BenchFlowArguments) -> dict[str, float]:
    """Median ms of each bare module call at the batch sizes the methods use: ``"fwd@4" -> ms``."""
    generator, accelerator = trainer.generator, trainer.accelerator
    transformer, vae, rm = generator.transformer, generator.vae, trainer.reward.model
    device, dtype, repeats = accelerator.device, generator.dtype, args.repeats
    batch, candidates = args.batch_size, args.candidates
    hr = args.lr_size * generator.scale
    latent = hr // generator.vae_scale_factor
    channels = vae.config.latent_channels
    prompt_embeds, pooled = generator.prompt_embeds, generator.pooled_prompt_embeds
    sizes = {batch, batch * candidates, 2 * batch}
    pieces = {}
    for n in sorted(sizes):
        latents = torch.randn(n, channels, latent, latent, device=device, dtype=dtype)
        lr_latents = torch.randn_like(latents)
        inputs = dict(
            hidden_states=latents,
            controlnet_image=lr_latents,
            encoder_hidden_states=prompt_embeds.expand(n, -1, -1),
            pooled_projections=pooled.expand(n, -1),
            timestep=torch.full((n,), 500.0, device=device),
        )
        images = torch.rand(n, 3, hr, hr, device=device, dtype=dtype)

        def forward(inputs=inputs):
            with torch.no_grad():
                transformer(**inputs)

        def forward_backward(inputs=inputs):
            transformer(**inputs).sample.float().sum().backward()

        def encode(images=images):
            with torch.no_grad():
                vae.encode(images * 2 - 1)

        def decode(latents=latents, grad=False):
            with torch.set_grad_enabled(grad):
                source = latents.clone().requires_grad_(grad)
                output = vae.decode(source / vae.config.scaling_factor).sample.float().sum()
                if grad:
                    output.backward()

        def reward(images=images, grad=False):
            with torch.set_grad_enabled(grad):
                score = rm(images.float().clone().requires_grad_(grad)).global_score.sum()
                if grad:
                    score.backward()

        with accelerator.autocast():
            for name, fn in [
                ("fwd", forward),
                ("fwd+bwd", forward_backward),
                ("enc", encode),
                ("dec", decode),
                ("dec+bwd", lambda decode=decode: decode(grad=True)),
                ("rm", reward),
                ("rm+bwd", lambda reward=reward: reward(grad=True)),
            ]:
                pieces[f"{name}@{n}"] = timed_pair(fn, lambda: None, device.type, repeats)[0]
        trainer.optimizer.zero_grad()
    return pieces


def bare_update(method: str, pieces: dict[str, float], args: BenchFlowArguments) -> float:
    """The bare compute (ms) of one update of ``method`` from its pieces (see the module docstring)."""
    b, bk, steps = args.batch_size, args.batch_size * args.candidates, args.num_inference_steps
    if method == "refl":
        stop = refl_stop_step(steps)
        grad_step = pieces[f"fwd+bwd@{b}"] + pieces[f"dec+bwd@{b}"] + pieces[f"rm+bwd@{b}"]
        return pieces[f"enc@{b}"] + stop * pieces[f"fwd@{b}"] + grad_step
    rollout = steps * pieces[f"fwd@{bk}"] + pieces[f"dec@{bk}"] + pieces[f"rm@{bk}"]
    if method == "dpo":
        return pieces[f"enc@{bk}"] + rollout + pieces[f"enc@{b}"] + pieces[f"fwd@{2 * b}"] + pieces[f"fwd+bwd@{2 * b}"]
    return pieces[f"enc@{b}"] + rollout + math.ceil(0.6 * steps) * pieces[f"fwd+bwd@{bk}"]


def run_method(method: str, args: BenchFlowArguments) -> dict:
    """Build and train one method in this process; its update times, bare compute and peak memory."""
    timer = StepTimer(args.device)
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = build_trainer(method, args, output_dir, timer)
        built = resident_mib()
        stop_step = refl_stop_step(args.num_inference_steps)
        with mock.patch.object(REFLTrainer, "draw_stop_step", return_value=stop_step):
            trainer.train()
        if args.device == "cuda":
            peak_mib = max(timer.peaks) * 1024
        else:
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - built
        synchronize(args.device)
        bare = bare_update(method, bare_pieces(trainer, args), args)
    params = sum(p.numel() for p in trainer.generator.transformer.parameters()) / 1e6
    times = timer.times[1:]
    return {"method": method, "ms": statistics.median(times), "times": times, "bare_ms": bare, "peak_mib": peak_mib,
            "params_m": params}  # fmt: skip


def main() -> None:
    (args,) = parse_arguments((BenchFlowArguments,), description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)

    if args.method is not None:
        print("BENCH_FLOW " + json.dumps(run_method(args.method, args)))
        return

    results = run_methods_in_subprocesses(__file__, METHODS, "BENCH_FLOW", args.output)
    memory = "CUDA max_memory_allocated" if args.device == "cuda" else "CPU resident-set growth over the built models"
    lines = [
        f"bench_flow: device={args.device} dtype={args.dtype} size={args.size} "
        f"({results['refl']['params_m']:.2f} M transformer params incl. LR stream and LoRA) batch={args.batch_size} "
        f"LR {args.lr_size}->{args.lr_size * 4} T={args.num_inference_steps} K={args.candidates} "
        f"gradient_checkpointing={args.gradient_checkpointing} torch={torch.__version__} threads=1 steps={args.steps}",
        f"peak memory = {memory}",
        "",
        f"{'method':8s} {'trainer (ms)':>13s} {'bare (ms)':>10s} {'ratio':>6s} {'peak (MiB)':>11s}   updates (ms)",
    ]
    for method, result in results.items():
        times = ", ".join(f"{t:.0f}" for t in result["times"])
        ratio = result["ms"] / result["bare_ms"]
        lines.append(
            f"{method:8s} {result['ms']:13.1f} {result['bare_ms']:10.1f} {ratio:6.2f} {result['peak_mib']:11.1f}"
            f"   {times}"
        )
    lines.append("target: ratio <= 1.15 for each method")
    write_report("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
