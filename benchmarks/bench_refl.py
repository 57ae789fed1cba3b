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

``--family`` picks the generator family (tiny random models only, except ``sd_upscaler``): ``controlnet_sr``
(SD2 UNet + ControlNet, the same REFL rollout pieces with ControlNet + UNet calls), ``one_step`` (OSEDiff-style
one UNet call) and ``feed_forward`` (a tiny ESRGAN), the last two trained by the direct REFL gradient: their pieces
are the generator + RM forward and backward with the reference-output fidelity term, against the same module calls
written out by hand (VAE encode, UNet, x0, VAE decode, RM, the reference forward with adapters off).

    python benchmarks/bench_refl.py --family one_step --steps 5 --repeats 5
"""

from __future__ import annotations

import os
import statistics
import tempfile
from argparse import RawDescriptionHelpFormatter
from dataclasses import dataclass, field
from unittest import mock

import torch
import torch.nn.functional as F

from finpercep_hf.generators import FeedForwardSRGenerator, SDUpscalerGenerator
from finpercep_hf.generators.latent_diffusion import unwrap_model
from finpercep_hf.scripting import parse_arguments
from finpercep_hf.scripting.benchmarking import (
    GENERATOR_FAMILIES,
    RLBenchmarkArguments,
    StepTimer,
    build_components,
    timed_pair,
    write_report,
)
from finpercep_hf.trainers import REFLConfig, REFLTrainer


@dataclass
class BenchREFLArguments(RLBenchmarkArguments):
    num_inference_steps: int = field(default=40, metadata={"help": "REFL schedule length T."})
    stop_step: int = field(default=34, metadata={"help": "Pinned REFL stop step (no-grad UNet calls)."})
    repeats: int = field(default=3, metadata={"help": "Repeats of each bare/piece timing (median)."})
    family: str = field(
        default="sd_upscaler",
        metadata={"help": "Generator family (tiny only but sd_upscaler).", "choices": GENERATOR_FAMILIES},
    )


def build_trainer(args: BenchREFLArguments, output_dir: str, timer: StepTimer) -> REFLTrainer:
    generator, rm, dataset, common = build_components(args, output_dir, family=args.family)
    config = REFLConfig(min_stop_step=args.stop_step, **common)
    return REFLTrainer(generator, reward=rm, args=config, train_dataset=dataset, callbacks=[timer])


def bare_denoiser(generator, image_lr: torch.Tensor):
    """The denoiser of a multi-step family called directly on inputs of the right shapes: UNet (SD-x4: 7 channels
    and noise-level labels) or ControlNet + UNet."""
    batch_size, device, dtype = image_lr.shape[0], image_lr.device, generator.dtype
    condition = generator.encode_condition(image_lr)
    latents = generator.prepare_latents(condition)
    embeds = generator.prompt_embeds.expand(batch_size, -1, -1)
    timestep = torch.tensor(500, device=device)
    unet = generator.unet
    if isinstance(generator, SDUpscalerGenerator):
        sample = torch.randn(batch_size, 7, *latents.shape[-2:], device=device, dtype=dtype)
        labels = torch.full((batch_size,), 20, device=device)
        return lambda: unet(sample, timestep, encoder_hidden_states=embeds, class_labels=labels).sample
    controlnet, control = generator.controlnet, condition.image_lr

    def controlnet_unet():
        down, mid = controlnet(
            latents, timestep, encoder_hidden_states=embeds, controlnet_cond=control, return_dict=False
        )
        return unet(
            latents, timestep, encoder_hidden_states=embeds, down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample  # fmt: skip

    return controlnet_unet


def bare_direct_refl(generator, rm, image_lr: torch.Tensor):
    """REFL's direct loss of a one-step or feed-forward generator written as bare module calls (reward hinge with
    offset 2 and the reference L1 at weight 1, scaled by 1e-3), backward included."""
    if isinstance(generator, FeedForwardSRGenerator):
        network = unwrap_model(generator.trainable_model)

        def forward(lr):
            return network(lr).float().clamp(0, 1)

        def reference(lr):
            network.disable_adapter_layers()
            image = forward(lr)
            network.enable_adapter_layers()
            return image

    else:
        unet, vae, vae_scale = generator.unet, generator.vae, generator.vae.config.scaling_factor
        alpha = generator.scheduler.alphas_cumprod[generator.timestep]
        embeds = generator.prompt_embeds.expand(image_lr.shape[0], -1, -1)

        def forward(lr):
            with torch.no_grad():
                upsampled = F.interpolate(lr, scale_factor=generator.scale, mode="bicubic").clamp(0, 1)
                latents = vae.encode(upsampled * 2 - 1).latent_dist.mean * vae_scale
            eps = unet(latents, generator.timestep, encoder_hidden_states=embeds).sample
            x0 = (latents - (1 - alpha).sqrt() * eps) / alpha.sqrt()
            return (vae.decode(x0 / vae_scale).sample / 2 + 0.5).clamp(0, 1)

        def reference(lr):
            unet.disable_adapters()
            image = forward(lr)
            unet.enable_adapters()
            return image

    def step():
        image_sr = forward(image_lr)
        with torch.no_grad():
            image_reference = reference(image_lr)
        hinge = F.relu(2.0 - rm(image_sr).global_score).mean()
        ((hinge + (image_sr - image_reference).abs().mean()) * 1e-3).backward()

    return step


def measure_direct_pieces(trainer: REFLTrainer, args) -> dict[str, tuple[float, float]]:
    """A direct generator's REFL loss fwd+bwd through the trainer (``compute_loss``) vs bare module calls, and the
    optimizer step: ``name -> (trainer ms, bare ms)``."""
    generator, accelerator = trainer.generator, trainer.accelerator
    image_lr = torch.rand(args.batch_size, 3, args.lr_size, args.lr_size, device=accelerator.device)
    hr = args.lr_size * generator.scale
    batch = {"image_lr": image_lr, "image_gt": torch.rand(args.batch_size, 3, hr, hr, device=accelerator.device)}
    bare = bare_direct_refl(generator, trainer.reward.model, image_lr)

    def ours():
        trainer.compute_loss(batch)[0].backward()

    def optimizer_step():
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    with accelerator.autocast():
        pieces = {"generator + RM + reference fwd+bwd": timed_pair(ours, bare, args.device, args.repeats)}
    pieces["optimizer step"] = timed_pair(optimizer_step, lambda: None, args.device, args.repeats)
    return pieces


def measure_pieces(trainer: REFLTrainer, stop: int, args) -> dict[str, tuple[float, float]]:
    """Each piece as the trainer runs it (its wrapper, reward function, optimizer) and as bare module calls on the
    same weights, dtype and batch: ``name -> (trainer ms, bare ms)``."""
    device, repeats = args.device, args.repeats
    generator, accelerator = trainer.generator, trainer.accelerator
    vae, rm = generator.vae, trainer.reward.model
    image_lr = torch.rand(args.batch_size, 3, args.lr_size, args.lr_size, device=accelerator.device)
    bare_unet = bare_denoiser(generator, image_lr)

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
        if args.family in ("one_step", "feed_forward"):
            pieces = measure_direct_pieces(trainer, args)
        else:
            pieces = measure_pieces(trainer, args.stop_step, args)

    ours = {name: times[0] for name, times in pieces.items()}
    bare = {name: times[1] for name, times in pieces.items()}
    bare["optimizer step"] = 0.0
    ours["everything else in the trainer"] = whole - sum(ours.values())
    bare["everything else in the trainer"] = 0.0
    trained = unwrap_model(trainer.generator.trainable_model)
    trained_params = sum(p.numel() for p in trained.parameters()) / 1e6
    lines = [
        f"bench_refl: family={args.family} device={args.device} dtype={args.dtype} size={args.size} "
        f"({trained_params:.1f} M params in the trained {type(trained).__name__}, incl. LoRA) "
        f"batch={args.batch_size} LR {args.lr_size}->{args.lr_size * 4} T={args.num_inference_steps} "
        f"stop_step={args.stop_step} gradient_checkpointing={args.gradient_checkpointing} torch={torch.__version__} "
        f"threads={torch.get_num_threads()}",
        "",
        f"{'piece':36s} {'trainer (ms)':>13s} {'bare (ms)':>11s} {'ratio':>7s}",
    ]
    for name in ours:
        ratio = f"{ours[name] / bare[name]:.2f}" if bare[name] > 0 else "-"
        lines.append(f"{name:36s} {ours[name]:13.1f} {bare[name]:11.1f} {ratio:>7s}")
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
