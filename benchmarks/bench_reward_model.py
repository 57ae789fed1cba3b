"""Cost of FinPercep-RM against the bare CLIP vision tower it is built on, measured side by side in one run.

For each model size (random weights, no download) it times forward and forward+backward (gradients to the
pixels, as REFL needs) and the peak memory of

    (a) the bare CLIPVisionModel, (b) RM_0 (CLIP-IQA), (c) RM_1 (+ decoder, head), (d) RM_3 (+ 2 refine blocks)

at each image size and batch size, and prints ratio columns against (a). Targets at ViT-B/16 size: RM <= 1.2x (a)
forward, <= 1.3x forward+backward.

    python benchmarks/bench_reward_model.py                                   # CPU: tiny and ViT-B/16 sizes
    python benchmarks/bench_reward_model.py --device cuda --dtype bf16 --sizes 224 512 --batches 1 8

Peak memory is `torch.cuda.max_memory_allocated` on CUDA. On CPU it is the growth of the process' resident set size
during the timed runs (sampled every millisecond), after a warm-up: the allocator keeps freed memory, so it
under-counts reuse and often reads 0 -- use the CUDA figures for memory.
"""

from __future__ import annotations

import statistics
import threading
import time
from argparse import RawDescriptionHelpFormatter
from dataclasses import dataclass, field

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from finpercep_hf import FinPercepConfig, FinPercepRewardModel
from finpercep_hf.scripting import parse_arguments

MODEL_SIZES = {
    "tiny": dict(hidden_size=32, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, patch_size=8),
    "vit-b16": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16
    ),
}
STAGES = {"RM_0": dict(stage=0), "RM_1": dict(stage=1), "RM_3": dict(stage=3, decoder_refine_blocks=2)}


@dataclass
class BenchRMArguments:
    device: str = field(default="cpu", metadata={"help": "Torch device."})
    dtype: str = field(default="fp32", metadata={"help": "autocast dtype.", "choices": ("fp32", "bf16", "fp16")})
    model_sizes: list[str] = field(
        default_factory=lambda: list(MODEL_SIZES), metadata={"help": "Model sizes.", "choices": list(MODEL_SIZES)}
    )
    sizes: list[int] = field(default_factory=lambda: [224, 512], metadata={"help": "Image sides."})
    batches: list[int] = field(default_factory=lambda: [1, 8], metadata={"help": "Batch sizes."})
    repeats: int = field(default=3, metadata={"help": "Timed repeats per cell (median)."})
    max_pixels: int | None = field(
        default=None, metadata={"help": "Skip batch*H*W above this (e.g. to keep a CPU run short)."}
    )


@dataclass
class Measurement:
    forward_ms: float
    backward_ms: float
    forward_mib: float
    backward_mib: float


class PeakRSS:
    """Samples the resident set size in a thread; `peak_mib` is the growth over the value at entry."""

    def __enter__(self):
        self.start = self._rss()
        self.peak = self.start
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    @property
    def peak_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def run_once(model: torch.nn.Module, pixel_values: torch.Tensor, backward: bool, autocast_dtype) -> None:
    x = pixel_values.clone().requires_grad_(backward)
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        if isinstance(model, CLIPVisionModel):
            out = model(pixel_values=x, interpolate_pos_encoding=True).pooler_output.float().sum()
        else:
            out = model(x).global_score.float().sum()
    if backward:
        out.backward()


def timed(model, pixel_values, backward, autocast_dtype, repeats) -> tuple[float, float]:
    device = pixel_values.device
    run_once(model, pixel_values, backward, autocast_dtype)  # warm-up
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            if backward:
                run_once(model, pixel_values, True, autocast_dtype)
            else:
                with torch.no_grad():
                    run_once(model, pixel_values, False, autocast_dtype)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000)
    memory = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else rss.peak_mib
    model.zero_grad(set_to_none=True)
    return statistics.median(times), memory


def measure(model, pixel_values, autocast_dtype, repeats) -> Measurement:
    forward_ms, forward_mib = timed(model, pixel_values, False, autocast_dtype, repeats)
    backward_ms, backward_mib = timed(model, pixel_values, True, autocast_dtype, repeats)
    return Measurement(forward_ms, backward_ms, forward_mib, backward_mib)


def build_models(size: str, device: torch.device) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    vision = CLIPVisionConfig(**MODEL_SIZES[size], image_size=224)
    models: dict[str, torch.nn.Module] = {"CLIP tower": CLIPVisionModel(vision)}
    for name, kwargs in STAGES.items():
        models[name] = FinPercepRewardModel(FinPercepConfig(vision_config=vision.to_dict(), **kwargs))
    return {name: model.to(device).eval() for name, model in models.items()}


def main() -> None:
    (args,) = parse_arguments((BenchRMArguments,), description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    device = torch.device(args.device)
    autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    print(f"device={device} dtype={args.dtype} torch={torch.__version__} threads={torch.get_num_threads()}")
    header = (
        f"{'model':8} {'size':>5} {'batch':>5} {'variant':10} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd MiB':>8} "
        f"{'f+b MiB':>8} {'fwd x(a)':>8} {'f+b x(a)':>8}"
    )
    print(header)
    print("-" * len(header))
    for model_size in args.model_sizes:
        models = build_models(model_size, device)
        for size in args.sizes:
            for batch in args.batches:
                if args.max_pixels and batch * size * size > args.max_pixels:
                    continue
                pixel_values = torch.rand(batch, 3, size, size, device=device)
                baseline = None
                for name, model in models.items():
                    m = measure(model, pixel_values, autocast_dtype, args.repeats)
                    baseline = baseline or m
                    print(
                        f"{model_size:8} {size:5d} {batch:5d} {name:10} {m.forward_ms:9.1f} {m.backward_ms:11.1f} "
                        f"{m.forward_mib:8.1f} {m.backward_mib:8.1f} {m.forward_ms / baseline.forward_ms:8.2f} "
                        f"{m.backward_ms / baseline.backward_ms:8.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
