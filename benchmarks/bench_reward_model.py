"""Cost of FinPercep-RM against the bare CLIP vision tower it is built on, measured side by side in one run.

For each model size (random weights, no download) it times forward and forward+backward (gradients to the
pixels, as REFL needs) and the peak memory of

    (a) the bare CLIPVisionModel, (b) RM_0 (CLIP-IQA), (c) RM_1 (+ decoder, head), (d) RM_3 (+ 2 refine blocks)

at each image size and batch size, eager and/or compiled (``--compile_modes``: ``eager``, or a `torch.compile`
mode such as ``default``, ``max-autotune-no-cudagraphs``, ``reduce-overhead``; every model, the tower included, is
compiled the same way with ``fullgraph=True``). ``x(a)`` columns divide by the tower run the same way;
``x eager(a)`` by the eager tower. Targets at ViT-B/16 size: RM <= 1.2x (a) forward, <= 1.3x forward+backward.

Timing runs in interleaved rounds (each round times every model once), so load that drifts on a shared machine
hits all models alike; each cell is the median over rounds, with min-max in brackets.

    python benchmarks/bench_reward_model.py                                   # CPU: tiny and ViT-B/16 sizes
    python benchmarks/bench_reward_model.py --device cuda --dtype bf16 --sizes 224 512 --batches 8 32 \
        --compile_modes eager default max-autotune-no-cudagraphs

Peak memory is `torch.cuda.max_memory_allocated` on CUDA. On CPU it is the growth of the process' resident set size
during one run (sampled every millisecond), after a warm-up: the allocator keeps freed memory, so it under-counts
reuse and often reads 0 -- use the CUDA figures for memory.
"""

from __future__ import annotations

import statistics
import threading
import time
from argparse import RawDescriptionHelpFormatter
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode
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
    repeats: int = field(default=3, metadata={"help": "Interleaved timing rounds per cell (median, min-max)."})
    compile_modes: list[str] = field(
        default_factory=lambda: ["eager"],
        metadata={"help": "eager and/or torch.compile modes (default, max-autotune-no-cudagraphs, ...), in turn."},
    )
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (CPU)."})
    count_flops: bool = field(
        default=False, metadata={"help": "Print each model's forward FLOPs (machine-independent) instead of timing."}
    )
    max_pixels: int | None = field(
        default=None, metadata={"help": "Skip batch*H*W above this (e.g. to keep a CPU run short)."}
    )


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
    with torch.set_grad_enabled(backward):
        with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            if isinstance(getattr(model, "_orig_mod", model), CLIPVisionModel):
                out = model(pixel_values=x, interpolate_pos_encoding=True).pooler_output.float().sum()
            else:
                out = model(x).global_score.float().sum()
        if backward:
            out.backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def timed_rounds(models: dict, pixel_values, backward: bool, autocast_dtype, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per model over ``repeats`` interleaved rounds, after two warm-up calls each (compilation)."""
    for model in models.values():
        for _ in range(2):
            run_once(model, pixel_values, backward, autocast_dtype)
            model.zero_grad(set_to_none=True)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            run_once(model, pixel_values, backward, autocast_dtype)
            times[name].append((time.perf_counter() - start) * 1000)
            model.zero_grad(set_to_none=True)
    return times


def peak_memory_mib(model, pixel_values, backward: bool, autocast_dtype) -> float:
    """Peak memory of one (warm) run: CUDA allocator peak, or resident-set growth on CPU."""
    if pixel_values.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_once(model, pixel_values, backward, autocast_dtype)
        memory = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        with PeakRSS() as rss:
            run_once(model, pixel_values, backward, autocast_dtype)
        memory = rss.peak_mib
    model.zero_grad(set_to_none=True)
    return memory


def build_models(size: str, device: torch.device) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    vision = CLIPVisionConfig(**MODEL_SIZES[size], image_size=224)
    models: dict[str, torch.nn.Module] = {"CLIP tower": CLIPVisionModel(vision)}
    for name, kwargs in STAGES.items():
        models[name] = FinPercepRewardModel(FinPercepConfig(vision_config=vision.to_dict(), **kwargs))
    return {name: model.to(device).eval() for name, model in models.items()}


def compiled(models: dict[str, torch.nn.Module], mode: str) -> dict[str, torch.nn.Module]:
    """The models as run under ``mode``: ``"eager"`` or a `torch.compile` mode (whole graphs, static shapes)."""
    if mode == "eager":
        return models
    torch._dynamo.reset()
    return {name: torch.compile(model, mode=mode, fullgraph=True, dynamic=False) for name, model in models.items()}


def forward_gflop(model: torch.nn.Module, pixel_values: torch.Tensor) -> float:
    """FLOPs of one no-grad forward, counted by `torch.utils.flop_counter` (matmuls, convolutions, attention)."""
    counter = FlopCounterMode(display=False)
    with counter:
        run_once(model, pixel_values, False, None)
    return counter.get_total_flops() / 1e9


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} [{min(values):.0f}-{max(values):.0f}]"


def main() -> None:
    (args,) = parse_arguments((BenchRMArguments,), description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    print(f"device={device} dtype={args.dtype} torch={torch.__version__} threads={torch.get_num_threads()}")
    header = (
        f"{'model':8} {'size':>4} {'batch':>5} {'mode':26} {'variant':10} {'fwd ms [min-max]':>24} "
        f"{'fwd+bwd ms [min-max]':>26} {'fwd MiB':>8} {'f+b MiB':>8} {'fwd x(a)':>8} {'f+b x(a)':>8} "
        f"{'fwd x eager(a)':>14}"
    )
    print(header)
    print("-" * len(header))
    for model_size in args.model_sizes:
        eager_models = build_models(model_size, device)
        for size in args.sizes:
            for batch in args.batches:
                if args.max_pixels and batch * size * size > args.max_pixels:
                    continue
                pixel_values = torch.rand(batch, 3, size, size, device=device)
                if args.count_flops:
                    flops = {name: forward_gflop(model, pixel_values) for name, model in eager_models.items()}
                    for name, gflop in flops.items():
                        print(
                            f"{model_size:8} {size:4d} {batch:5d} {name:10} {gflop:9.2f} GFLOP forward, "
                            f"{gflop / flops['CLIP tower']:.3f}x (a)",
                            flush=True,
                        )
                    continue
                eager_tower_ms = None
                for mode in args.compile_modes:
                    models = compiled(eager_models, mode)
                    forward = timed_rounds(models, pixel_values, False, autocast_dtype, args.repeats)
                    backward = timed_rounds(models, pixel_values, True, autocast_dtype, args.repeats)
                    tower_fwd = statistics.median(forward["CLIP tower"])
                    tower_bwd = statistics.median(backward["CLIP tower"])
                    if mode == "eager":
                        eager_tower_ms = tower_fwd
                    for name, model in models.items():
                        fwd, bwd = statistics.median(forward[name]), statistics.median(backward[name])
                        fwd_mib = peak_memory_mib(model, pixel_values, False, autocast_dtype)
                        bwd_mib = peak_memory_mib(model, pixel_values, True, autocast_dtype)
                        vs_eager = f"{fwd / eager_tower_ms:14.2f}" if eager_tower_ms else f"{'-':>14}"
                        print(
                            f"{model_size:8} {size:4d} {batch:5d} {mode:26} {name:10} "
                            f"{spread(forward[name]):>24} {spread(backward[name]):>26} {fwd_mib:8.1f} {bwd_mib:8.1f} "
                            f"{fwd / tower_fwd:8.2f} {bwd / tower_bwd:8.2f} {vs_eager}",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
