"""``finpercep evaluate``: the Table-1 metric suite over SR outputs (given, or generated from LR images by an SR
generator first), written as metrics.csv + table.md.

Exit codes: 0 done, 1 a metric or generator could not be built (missing weights, reward model, pyiqa), 2 bad input
(directories, unpaired or unreadable images, unknown metric names).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..evaluation.generate import generate_sr_directory, load_generator
from ..evaluation.metrics import PAPER_METRICS, FinPercepMissingWeightsError, build_metric, get_metric_spec
from ..evaluation.rm_metrics import RM_METRICS_LOWER_BETTER
from ..evaluation.suite import evaluate_pairs, pair_images, summarize
from ..evaluation.table import FinPercepResult, read_results_csv, results_to_markdown, write_results_csv
from ..images import FinPercepImageError
from ..models import FinPercepCheckpointError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Evaluate SR outputs with LPIPS, MUSIQ, MANIQA, CLIP-IQA, LIQE, PSNR, SSIM and FinPercep-RM.",
        description="Scores every SR image (paired with the HR image of the same name), writes per_image.csv, "
        "metrics.csv (datasets x metrics, one column per run) and table.md (the paper's Table-1 layout, best in "
        "bold). Several --sr runs are evaluated side by side; --include merges tables of earlier calls (e.g. other "
        "datasets). pyiqa weights are never downloaded: a missing file is reported with where to put it.",
    )
    parser.add_argument(
        "--sr",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="Directory of SR outputs; repeat for runs side by side. NAME is the run's column (default: DIR's name).",
    )
    parser.add_argument(
        "--generator",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="Run this SR generator on --lr first (a generator training run directory with LoRA weights or unet/, "
        "or an SD-x4-upscaler pipeline); its outputs go to OUT/sr/NAME and are evaluated as a run. Repeatable.",
    )
    parser.add_argument("--lr", type=Path, default=None, help="Directory of LR inputs for --generator.")
    parser.add_argument(
        "--base-model", default=None, help="Base pipeline of a --generator run (default: its model card's)."
    )
    parser.add_argument("--num-inference-steps", type=int, default=None, help="Sampling steps of --generator.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of --generator sampling (per image).")
    parser.add_argument(
        "--pad-multiple",
        type=int,
        default=8,
        help="LR sides are padded to this multiple for --generator (its downsampling); outputs are cropped back.",
    )
    parser.add_argument(
        "--hr", type=Path, default=None, help="Directory of HR references (needed by LPIPS/PSNR/SSIM)."
    )
    parser.add_argument("--dataset", default=None, help="Dataset name for the table rows (default: the HR dir name).")
    parser.add_argument(
        "--metrics",
        default=None,
        help=f"Comma-separated metric names (default: {','.join(PAPER_METRICS)}, plus finpercep with --rm; "
        "reference metrics are left out of the default when there is no --hr).",
    )
    parser.add_argument(
        "--rm",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="FinPercep-RM checkpoint: the model of the 'finpercep' metric (once), or with --fgr the reward models "
        "to evaluate (repeatable, one column each).",
    )
    parser.add_argument(
        "--fgr",
        default=None,
        help="RM evaluation instead of SR evaluation: an FGR dataset (directory or Hub id) whose --split is scored "
        "by each --rm (ordering accuracy, PDM L1/AUROC/IoU, score drift with --anchor-rm).",
    )
    parser.add_argument("--split", default="train", help="FGR split for --fgr (FGR builds write 'train').")
    parser.add_argument("--anchor-rm", default=None, help="RM_0 checkpoint for score_drift with --fgr.")
    parser.add_argument("--batch-size", type=int, default=4, help="FGR rows per forward with --fgr.")
    parser.add_argument("--crop-size", type=int, default=None, help="Centre-crop FGR rows to this side (--fgr).")
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="Directory with IQA weights laid out like the torch hub cache (pyiqa/, clip/, checkpoints/); "
        "default: the torch hub cache (~/.cache/torch/hub).",
    )
    parser.add_argument("--include", action="append", type=Path, default=[], help="metrics.csv of an earlier call.")
    parser.add_argument("--precision", type=int, default=3, help="Decimals shown in table.md.")
    parser.add_argument(
        "--crop-border",
        type=int,
        default=0,
        help="Pixels shaved off each side before PSNR/SSIM (BasicSR's crop_border; 4 for x4 SR). Default 0.",
    )
    parser.add_argument("--device", default="cpu", help="Torch device for the metrics, e.g. cpu or cuda.")
    parser.add_argument("--out", type=Path, required=True, help="Output directory.")
    parser.set_defaults(func=run)


def parse_named_path(value: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` -> (name, path), the name defaulting to the path's last part; an existing path
    containing '=' is taken as a path."""
    if "=" in value and not Path(value).exists():
        name, directory = value.split("=", 1)
        if name:
            return name, Path(directory)
    return Path(value).name, Path(value)


def _metric_names(args: argparse.Namespace) -> list[str]:
    if args.metrics is not None:
        names = [name.strip().lower() for name in args.metrics.split(",") if name.strip()]
        for name in names:
            get_metric_spec(name)
        return names
    names = [*PAPER_METRICS, "finpercep"] if args.rm else list(PAPER_METRICS)
    if "finpercep" in names and len(args.rm) != 1:
        raise ValueError(f"the finpercep metric scores with one --rm, got {len(args.rm)}.")
    if args.hr is None:
        skipped = [name for name in names if get_metric_spec(name).needs_reference]
        print(f"note: no --hr, so the reference metrics {', '.join(skipped)} are left out.", file=sys.stderr)
        names = [name for name in names if name not in skipped]
    return names


def _write_per_image(rows_by_run: dict[str, list[dict]], dataset: str, path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = None
        for run, rows in rows_by_run.items():
            for row in rows:
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=["dataset", "run", *row])
                    writer.writeheader()
                writer.writerow({"dataset": dataset, "run": run, **row})


def _write_tables(results: list, out: Path, precision: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_results_csv(results, out / "metrics.csv")
    markdown = results_to_markdown(results, precision=precision, lower_better=RM_METRICS_LOWER_BETTER)
    (out / "table.md").write_text(markdown)
    print(markdown)


def run_fgr(args: argparse.Namespace) -> int:
    """``--fgr``: RM metrics of each --rm on an FGR split."""
    from datasets import load_dataset

    from ..evaluation.reward_model_eval import evaluate_reward_model
    from ..models import FinPercepRewardModel

    if args.sr or args.generator or not args.rm:
        print(
            "error: --fgr evaluates reward models: pass --rm (repeatable), without --sr/--generator.", file=sys.stderr
        )
        return 2
    try:
        named = [parse_named_path(value) for value in args.rm]
        included = [result for path in args.include for result in read_results_csv(path)]
        dataset = load_dataset(args.fgr, split=args.split)
    except (ValueError, OSError) as error:
        print(
            f"error: could not read the FGR dataset {args.fgr} ({args.split}) or an --include: {error}",
            file=sys.stderr,
        )
        return 2
    try:
        load = [("anchor", args.anchor_rm)] if args.anchor_rm else []
        models = {
            name: FinPercepRewardModel.from_pretrained(str(path)).to(args.device).eval() for name, path in named + load
        }
    except FinPercepCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    anchor = models.pop("anchor", None) if args.anchor_rm else None
    results = list(included)
    for name, model in models.items():
        print(f"{name}: {len(dataset)} FGR rows", file=sys.stderr)
        metrics = evaluate_reward_model(model, dataset, anchor, args.batch_size, args.crop_size, args.device)
        results.extend(FinPercepResult(f"FGR {args.split}", metric, name, value) for metric, value in metrics.items())
    _write_tables(results, args.out, args.precision)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.fgr is not None:
        return run_fgr(args)
    try:
        generators = [parse_named_path(value) for value in args.generator]
        runs = [parse_named_path(value) for value in args.sr] + [
            (name, args.out / "sr" / name) for name, _ in generators
        ]
        if not runs:
            raise ValueError("nothing to evaluate: pass --sr DIR and/or --generator PATH --lr DIR.")
        if generators and args.lr is None:
            raise ValueError("--generator needs --lr DIR (the LR inputs to super-resolve).")
        if len({name for name, _ in runs}) != len(runs):
            raise ValueError(f"run names must be unique, got {[name for name, _ in runs]} (use NAME=PATH).")
        names = _metric_names(args)
        included = [result for path in args.include for result in read_results_csv(path)]
    except (KeyError, ValueError, OSError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 2
    rm = parse_named_path(args.rm[0])[1] if args.rm else None
    metrics, failures = {}, []
    for name in names:  # every metric is tried, so one run lists all the missing weight files
        try:
            metrics[name] = build_metric(name, args.weights_dir, rm=rm, device=args.device)
        except (FinPercepMissingWeightsError, FinPercepCheckpointError, ImportError, ValueError) as error:
            failures.append(f"error: {error}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    for name, path in generators:
        try:
            generator = load_generator(path, args.base_model, args.num_inference_steps).to(args.device)
        except (OSError, ValueError) as error:
            print(f"error: could not load the generator {path}: {error}", file=sys.stderr)
            return 1
        print(f"{name}: super-resolving {args.lr}", file=sys.stderr)
        try:
            generate_sr_directory(
                generator, args.lr, args.out / "sr" / name, seed=args.seed, pad_multiple=args.pad_multiple
            )
        except (FinPercepImageError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        pairs_by_run = {name: pair_images(directory, args.hr) for name, directory in runs}
    except FinPercepImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    dataset = args.dataset or (args.hr.name if args.hr is not None else "images")
    rows_by_run, results = {}, list(included)
    try:
        for name, pairs in pairs_by_run.items():
            print(f"{name}: {len(pairs)} images", file=sys.stderr)
            rows_by_run[name] = evaluate_pairs(pairs, metrics, crop_border=args.crop_border)
            results.extend(summarize(rows_by_run[name], dataset, name))
    except (FinPercepImageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    _write_per_image(rows_by_run, dataset, args.out / "per_image.csv")
    _write_tables(results, args.out, args.precision)
    return 0


__all__ = ["parse_named_path", "register", "run"]
