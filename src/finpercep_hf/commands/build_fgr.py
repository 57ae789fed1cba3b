"""``finpercep build-fgr``: build an FGR dataset (Parquet shards + dataset card), optionally push it to the Hub.

Examples::

    finpercep build-fgr --preset mini --out ./fgr-mini          # offline: skimage photos, about a minute on 2 cores
    finpercep build-fgr --images ./photos --sr-model stabilityai/stable-diffusion-x4-upscaler \\
        --sr-model ./my_seesr_adapter.py:SeeSR --dino facebook/dinov3-vitb16-pretrain-lvd1689m \\
        --sam facebook/sam-vit-base --num-samples 30000 --out ./fgr-30k --push-to-hub org/fgr-30k
    accelerate launch --num_processes 4 -m finpercep_hf.cli build-fgr ...   # rank r builds shards r, r+4, ...

Re-running the same command on the same ``--out`` resumes at the first missing shard.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESETS = ("mini", "full")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-fgr",
        help="Build an FGR dataset: degradation -> SR pool -> region swap -> pdm_target, as Parquet + dataset card.",
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="full",
        help="'mini': the offline FGR-mini defaults (skimage photos, 160 px, 320 samples, classical upsamplers and "
        "labelled artifact generators); 'full': the paper-scale defaults (512 px, 30000 samples). Flags override.",
    )
    parser.add_argument("--out", type=Path, required=True, help="Output directory (resumes if it holds a build).")
    # Sources and samples
    parser.add_argument("--images", nargs="+", help="Files or folders of high-quality photos (default: skimage).")
    parser.add_argument("--skimage-photos", nargs="+", help="scikit-image photo names used when --images is unset.")
    parser.add_argument("--num-samples", type=int, help="Number of samples.")
    parser.add_argument("--crop-size", type=int, help="Crop side in pixels (a multiple of 4).")
    parser.add_argument("--seed", type=int, help="Build seed (sample i is reproducible from seed and i).")
    parser.add_argument("--samples-per-shard", type=int, help="Rows per Parquet shard (the unit of resume).")
    # SR pool
    parser.add_argument(
        "--sr-model",
        action="append",
        help="SR model spec, repeatable: bicubic | bilinear | lanczos | artifact:<kind> | module.py:Class | a "
        "diffusers SR pipeline id or path.",
    )
    parser.add_argument("--sr-weight", type=float, action="append", help="Sampling weight per --sr-model.")
    parser.add_argument("--sr-steps", type=int, help="Denoising steps of diffusers SR models (default 20).")
    parser.add_argument("--sr-guidance-scale", type=float, help="Guidance scale of diffusers SR models (default 0).")
    parser.add_argument("--sr-prompt", help="Prompt of StableDiffusionUpscalePipeline members (default empty).")
    # Masks and targets
    parser.add_argument("--mask-types", nargs="+", help="Any of rectangle, stroke, semantic (semantic needs --sam).")
    parser.add_argument("--area-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="Mask area bounds.")
    parser.add_argument("--sam", help="SAM checkpoint for semantic masks (adds 'semantic' to the mask types).")
    parser.add_argument("--dino", help="DINOv3 checkpoint for the feature term (default: the 1 - SSIM fallback).")
    parser.add_argument("--alpha", type=float, help="Pixel-term weight of Eq. 4 (default 0.5).")
    parser.add_argument("--pdm-scale", type=float, help="Fixed normalisation scale (default: estimated).")
    parser.add_argument("--scale-percentile", type=float, help="Percentile of raw maps used as the scale.")
    parser.add_argument("--calibration-samples", type=int, help="Samples used to estimate the scale.")
    # Card, Hub, runtime
    parser.add_argument("--license", help="Licence field of the dataset card.")
    parser.add_argument("--name", dest="pretty_name", help="Dataset name shown in the card.")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="Upload the finished build to this dataset repo.")
    parser.add_argument("--private", action="store_true", help="Create the Hub repo as private.")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads per process (default 1).")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The ``FGRBuildConfig`` of the preset, with every flag that was given overriding it."""
    from ..data import FGRBuildConfig

    overrides = {
        "images": args.images,
        "skimage_photos": tuple(args.skimage_photos) if args.skimage_photos else None,
        "num_samples": args.num_samples,
        "crop_size": args.crop_size,
        "seed": args.seed,
        "samples_per_shard": args.samples_per_shard,
        "sr_models": args.sr_model,
        "sr_weights": args.sr_weight,
        "sr_num_inference_steps": args.sr_steps,
        "sr_guidance_scale": args.sr_guidance_scale,
        "sr_prompt": args.sr_prompt,
        "mask_types": tuple(args.mask_types) if args.mask_types else None,
        "area_range": tuple(args.area_range) if args.area_range else None,
        "sam": args.sam,
        "dino": args.dino,
        "alpha": args.alpha,
        "pdm_scale": args.pdm_scale,
        "scale_percentile": args.scale_percentile,
        "calibration_samples": args.calibration_samples,
        "license": args.license,
        "pretty_name": args.pretty_name,
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.sam and "mask_types" not in overrides:
        overrides["mask_types"] = ("rectangle", "stroke", "semantic")
    return FGRBuildConfig.mini(**overrides) if args.preset == "mini" else FGRBuildConfig(**overrides)


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from ..data import build_fgr, push_fgr_to_hub
    from ..images import FinPercepImageError

    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    state = PartialState()
    try:
        path = build_fgr(
            config,
            args.out,
            process_index=state.process_index,
            num_processes=state.num_processes,
            progress=not args.no_progress,
            num_threads=args.num_threads,
        )
    except (ValueError, FileNotFoundError, FinPercepImageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if state.is_main_process:
        print(f"FGR dataset written to {path} (load it with datasets.load_dataset({str(path)!r}))")
        if args.push_to_hub:
            print(f"pushed to {push_fgr_to_hub(path, args.push_to_hub, private=args.private)}")
    return 0


__all__ = ["config_from_args", "register", "run"]
