"""``finpercep evaluate``: the Table-1 metric suite over SR outputs (given, or generated from LR images by an SR
generator first), written as metrics.csv + table.md.

Exit codes: 0 done; 1 a metric or generator could not be built (missing weights, reward model, pyiqa); 2 bad input
(options, directories, unpaired, unreadable or oversized images, unknown metric names); 3 ``--out`` cannot be
written.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation.generate import generate_sr_directory, load_generator
from ..evaluation.metrics import PAPER_METRICS, FinPercepMissingWeightsError, build_metric, get_metric_spec
from ..evaluation.rm_metrics import RM_METRICS_LOWER_BETTER
from ..evaluation.suite import evaluate_pairs, pair_images, summarize
from ..evaluation.table import FinPercepResult, read_results_csv, results_to_markdown, write_results_csv
from ..images import FinPercepImageError
from ..models import FinPercepCheckpointError
from ..scripting import EXIT_BAD_INPUT, EXIT_LOAD_ERROR, EXIT_OK
from .outputs import DEFAULT_MAX_PIXELS, check_output_dir, output_errors_exit

NAME = "evaluate"
HELP = "Evaluate SR outputs with LPIPS, MUSIQ, MANIQA, CLIP-IQA, LIQE, PSNR, SSIM and FinPercep-RM."
DESCRIPTION = (
    "Scores every SR image (paired with the ground-truth image of the same name in --gt), writes per_image.csv, "
    "metrics.csv (datasets x metrics, one column per run) and table.md (the paper's Table-1 layout, best in bold). "
    "Several --sr runs are evaluated side by side; --include merges tables of earlier calls (e.g. other datasets). "
    "pyiqa weights are never downloaded: a missing file is reported with where to put it."
)


@dataclass
class EvaluateArguments:
    out: Path = field(metadata={"help": "Output directory."})
    sr: list[str] = field(
        default_factory=list,
        metadata={
            "action": "extend",
            "help": "Directories of SR outputs, [NAME=]DIR each, evaluated side by side (NAME: the column).",
        },
    )
    generator: list[str] = field(
        default_factory=list,
        metadata={
            "action": "extend",
            "help": "[NAME=]PATH SR generators run on --lr first (a generator training run directory with LoRA "
            "weights or unet/, or an SD-x4-upscaler pipeline); outputs go to OUT/sr/NAME and are evaluated as runs.",
        },
    )
    lr: Path | None = field(default=None, metadata={"help": "Directory of LR inputs for --generator."})
    base_model: str | None = field(
        default=None, metadata={"help": "Base pipeline of a --generator run (default: its model card's)."}
    )
    num_inference_steps: int | None = field(default=None, metadata={"help": "Sampling steps of --generator."})
    seed: int = field(default=0, metadata={"help": "Seed of --generator sampling (per image)."})
    pad_multiple: int = field(
        default=8,
        metadata={"help": "LR sides are padded to this multiple for --generator; outputs are cropped back."},
    )
    gt: Path | None = field(
        default=None, metadata={"help": "Directory of ground-truth images (needed by LPIPS/PSNR/SSIM)."}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "Dataset name for the table rows (default: the --gt dir name)."}
    )
    metrics: str | None = field(
        default=None,
        metadata={
            "help": f"Comma-separated metric names (default: {','.join(PAPER_METRICS)}, plus finpercep with --rm; "
            "reference metrics are left out of the default when there is no --gt)."
        },
    )
    rm: list[str] = field(
        default_factory=list,
        metadata={
            "action": "extend",
            "help": "FinPercep-RM checkpoints, [NAME=]PATH: the model of the 'finpercep' metric (one), or with --fgr "
            "the reward models to evaluate (one column each).",
        },
    )
    fgr: str | None = field(
        default=None,
        metadata={
            "help": "RM evaluation instead of SR evaluation: an FGR dataset (directory or Hub id) whose --split is "
            "scored by each --rm (ordering accuracy, PDM L1/AUROC/IoU, score drift with --anchor_rm)."
        },
    )
    split: str = field(default="train", metadata={"help": "FGR split for --fgr (FGR builds write 'train')."})
    anchor_rm: str | None = field(default=None, metadata={"help": "RM_0 checkpoint for score_drift with --fgr."})
    batch_size: int = field(default=4, metadata={"help": "FGR rows per forward with --fgr."})
    crop_size: int | None = field(default=None, metadata={"help": "Centre-crop FGR rows to this side (--fgr)."})
    weights_dir: Path | None = field(
        default=None,
        metadata={
            "help": "Directory with IQA weights laid out like the torch hub cache (pyiqa/, clip/, checkpoints/); "
            "default: the torch hub cache (~/.cache/torch/hub)."
        },
    )
    include: list[Path] = field(
        default_factory=list, metadata={"action": "extend", "help": "metrics.csv files of earlier calls."}
    )
    precision: int = field(default=3, metadata={"help": "Decimals shown in table.md."})
    crop_border: int = field(
        default=0,
        metadata={"help": "Pixels shaved off each side before PSNR/SSIM (BasicSR's crop_border; 4 for x4 SR)."},
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={
            "help": "Largest image (width x height) evaluated; a larger SR or GT image is refused as bad input "
            "(metrics compare pixels, so nothing is downscaled). 0 = no limit."
        },
    )
    device: str = field(default="cpu", metadata={"help": "Torch device for the metrics, e.g. cpu or cuda."})

    def __post_init__(self):
        if self.max_pixels < 0:
            raise ValueError(f"--max_pixels must be >= 0 (0 = no limit), got {self.max_pixels}.")


ARGUMENTS = (EvaluateArguments,)


def parse_named_path(value: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` -> (name, path), the name defaulting to the path's last part; an existing path
    containing '=' is taken as a path."""
    if "=" in value and not Path(value).exists():
        name, directory = value.split("=", 1)
        if name:
            return name, Path(directory)
    return Path(value).name, Path(value)


def _metric_names(args: EvaluateArguments) -> list[str]:
    if args.metrics is not None:
        names = [name.strip().lower() for name in args.metrics.split(",") if name.strip()]
        for name in names:
            get_metric_spec(name)
        return names
    names = [*PAPER_METRICS, "finpercep"] if args.rm else list(PAPER_METRICS)
    if "finpercep" in names and len(args.rm) != 1:
        raise ValueError(f"the finpercep metric scores with one --rm, got {len(args.rm)}.")
    if args.gt is None:
        skipped = [name for name in names if get_metric_spec(name).needs_reference]
        print(f"note: no --gt, so the reference metrics {', '.join(skipped)} are left out.", file=sys.stderr)
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


def run_fgr(args: EvaluateArguments) -> int:
    """``--fgr``: RM metrics of each --rm on an FGR split."""
    from datasets import load_dataset

    from ..evaluation.reward_model_eval import evaluate_reward_model
    from ..models import FinPercepRewardModel

    if args.sr or args.generator or not args.rm:
        print("error: --fgr evaluates reward models: pass --rm PATH..., without --sr/--generator.", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        named = [parse_named_path(value) for value in args.rm]
        included = [result for path in args.include for result in read_results_csv(path)]
        dataset = load_dataset(args.fgr, split=args.split)
    except (ValueError, OSError) as error:
        print(
            f"error: could not read the FGR dataset {args.fgr} ({args.split}) or an --include: {error}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        load = [("anchor", args.anchor_rm)] if args.anchor_rm else []
        models = {
            name: FinPercepRewardModel.from_pretrained(str(path)).to(args.device).eval() for name, path in named + load
        }
    except FinPercepCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_LOAD_ERROR
    with output_errors_exit(args.out):
        check_output_dir(args.out)
    anchor = models.pop("anchor", None) if args.anchor_rm else None
    results = list(included)
    for name, model in models.items():
        print(f"{name}: {len(dataset)} FGR rows", file=sys.stderr)
        metrics = evaluate_reward_model(model, dataset, anchor, args.batch_size, args.crop_size, args.device)
        results.extend(FinPercepResult(f"FGR {args.split}", metric, name, value) for metric, value in metrics.items())
    with output_errors_exit(args.out):
        _write_tables(results, args.out, args.precision)
    return EXIT_OK


def _runs(args: EvaluateArguments) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(generators, runs): the ``--generator`` (name, path)s and every evaluated (name, SR directory)."""
    generators = [parse_named_path(value) for value in args.generator]
    runs = [parse_named_path(value) for value in args.sr] + [(name, args.out / "sr" / name) for name, _ in generators]
    if not runs:
        raise ValueError("nothing to evaluate: pass --sr DIR and/or --generator PATH --lr DIR.")
    if generators and args.lr is None:
        raise ValueError("--generator needs --lr DIR (the LR inputs to super-resolve).")
    if len({name for name, _ in runs}) != len(runs):
        raise ValueError(f"run names must be unique, got {[name for name, _ in runs]} (use NAME=PATH).")
    return generators, runs


def _build_metrics(args: EvaluateArguments, names: list[str]) -> tuple[dict, list[str]]:
    """Every metric is tried, so one run lists all the missing weight files: (metrics, error lines)."""
    rm = parse_named_path(args.rm[0])[1] if args.rm else None
    metrics, failures = {}, []
    for name in names:
        try:
            metrics[name] = build_metric(name, args.weights_dir, rm=rm, device=args.device)
        except (FinPercepMissingWeightsError, FinPercepCheckpointError, ImportError, ValueError) as error:
            failures.append(f"error: {error}")
    return metrics, failures


def _generate(args: EvaluateArguments, generators: list[tuple[str, Path]]) -> int:
    """Run each ``--generator`` on ``--lr`` into OUT/sr/NAME; an exit code."""
    for name, path in generators:
        try:
            generator = load_generator(path, args.base_model, args.num_inference_steps).to(args.device)
        except (OSError, ValueError) as error:
            print(f"error: could not load the generator {path}: {error}", file=sys.stderr)
            return EXIT_LOAD_ERROR
        print(f"{name}: super-resolving {args.lr}", file=sys.stderr)
        try:
            with output_errors_exit(args.out):
                generate_sr_directory(
                    generator, args.lr, args.out / "sr" / name, seed=args.seed, pad_multiple=args.pad_multiple
                )
        except (FinPercepImageError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return EXIT_OK


def run(args: EvaluateArguments) -> int:
    if args.fgr is not None:
        return run_fgr(args)
    try:
        generators, runs = _runs(args)
        names = _metric_names(args)
        included = [result for path in args.include for result in read_results_csv(path)]
    except (KeyError, ValueError, OSError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with output_errors_exit(args.out):
        check_output_dir(args.out)
    metrics, failures = _build_metrics(args, names)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return EXIT_LOAD_ERROR
    code = _generate(args, generators)
    if code != EXIT_OK:
        return code
    dataset = args.dataset or (args.gt.name if args.gt is not None else "images")
    rows_by_run, results = {}, list(included)
    try:
        pairs_by_run = {name: pair_images(directory, args.gt) for name, directory in runs}
        for name, pairs in pairs_by_run.items():
            print(f"{name}: {len(pairs)} images", file=sys.stderr)
            rows = evaluate_pairs(pairs, metrics, crop_border=args.crop_border, max_pixels=args.max_pixels)
            rows_by_run[name] = rows
            results.extend(summarize(rows, dataset, name))
    except (FinPercepImageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with output_errors_exit(args.out):
        _write_per_image(rows_by_run, dataset, args.out / "per_image.csv")
        _write_tables(results, args.out, args.precision)
    return EXIT_OK


__all__ = ["ARGUMENTS", "DESCRIPTION", "HELP", "NAME", "EvaluateArguments", "parse_named_path", "run"]
