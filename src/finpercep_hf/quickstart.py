"""The embedded default, end to end and offline: FGR-mini -> RM_0..RM_N -> held-out report.

1. Build FGR-mini from the scikit-image photos (training photos) and a held-out FGR set from *other* photos.
2. Build RM_0 from a small random CLIP built locally (no pre-training is available offline, so everything the
   model knows about artifacts it learns from FGR-mini: the decoder and head from stage 1, encoder adapters from
   stage 2), and train stages 1..N with the co-evolutionary curriculum (``ccl="param"``).
3. Evaluate every stage checkpoint on the held-out photos (overall and per artifact kind) and write
   ``report.md`` with the tables, PDM overlays of held-out SYN images (swap mask outlined) and the loss curves.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch

from .curriculum import RewardModelGrowthCallback, build_curriculum_model, stage_dir_name
from .data.fgr import FGRBuildConfig, build_fgr
from .evaluation.reward_model_eval import evaluate_reward_model
from .models import FinPercepRewardModel
from .pipelines import output_to_records
from .quickstart_rl import append_path2_to_report
from .tiny_clip import save_tiny_clip
from .trainers.reward_model import FinPercepTrainingArguments, RewardModelTrainer
from .visualization import save_line_plot, save_pdm_overlay

REPORT_METRICS = (
    ("ordering_accuracy", "ordering acc. (SR<SYN<GT)"),
    ("acc_sr_syn", "acc SR<SYN"),
    ("acc_syn_gt", "acc SYN<GT"),
    ("pdm_auroc", "PDM AUROC"),
    ("pdm_iou", "PDM IoU@0.5"),
    ("pdm_l1", "PDM L1"),
    ("score_drift", "drift vs RM_0"),
)


@dataclass
class QuickstartConfig:
    """Sizes of the offline quickstart; the defaults fit in under 15 minutes on 2 CPU cores."""

    train_photos: tuple[str, ...] = (
        "astronaut", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "camera", "coins", "grass",
        "gravel", "brick", "clock", "page", "text",
    )  # fmt: skip
    heldout_photos: tuple[str, ...] = ("chelsea", "rocket", "moon")
    train_samples: int = 320
    heldout_samples: int = 48
    crop_size: int = 96  # FGR-mini rows
    train_crop_size: int = 64  # training: random crops at several scales; held-out evaluation: the full rows
    # The small CLIP-shaped encoder (random init) and decoder.
    hidden_size: int = 64
    num_hidden_layers: int = 4
    patch_size: int = 8
    decoder_channels: int = 32
    # Curriculum and optimisation.
    ccl_schedule: str = "0:0,0:1,200:2,350:3"  # START:STAGE, see `CCLSchedule`
    max_steps: int = 500
    lora_ranks: str = "8,16"
    batch_size: int = 8
    learning_rate: float = 2e-3
    seed: int = 0
    num_overlays: int = 6
    with_rl: bool = False  # path 2 (`quickstart_rl`): REFL with RM_0 / RM_N / CCL after the RM stages
    rl_budget: str = "fast"  # path 2's budget: fast | full
    extra_training_args: dict = field(default_factory=dict)


def _markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[key]:.3f}" if isinstance(row.get(key), float) else str(row.get(key, "")) for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _build_datasets(config: QuickstartConfig, out: Path, log) -> tuple[datasets.Dataset, datasets.Dataset]:
    common = dict(crop_size=config.crop_size, seed=config.seed, samples_per_shard=64)
    train_dir = build_fgr(
        FGRBuildConfig.mini(num_samples=config.train_samples, skimage_photos=config.train_photos, **common),
        out / "fgr-mini",
    )
    heldout_dir = build_fgr(
        FGRBuildConfig.mini(
            num_samples=config.heldout_samples, skimage_photos=config.heldout_photos, pretty_name="FGR-mini held-out",
            **{**common, "seed": config.seed + 1},
        ),
        out / "fgr-mini-heldout",
    )  # fmt: skip
    log(f"FGR-mini: {train_dir} (train photos), {heldout_dir} (held-out photos)")
    return datasets.load_dataset(str(train_dir))["train"], datasets.load_dataset(str(heldout_dir))["train"]


def _train(config: QuickstartConfig, out: Path, train, heldout) -> RewardModelTrainer:
    clip_dir = save_tiny_clip(
        out / "small-clip", hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=4, patch_size=config.patch_size, image_size=config.train_crop_size, seed=config.seed,
    )  # fmt: skip
    rm0 = FinPercepRewardModel.from_clip(str(clip_dir), decoder_channels=config.decoder_channels)
    rm0.config.clip_name_or_path = "small random CLIP built by finpercep_hf.tiny_clip (no pre-training)"
    args = FinPercepTrainingArguments(
        output_dir=str(out / "rm"), ccl_schedule=config.ccl_schedule, max_steps=config.max_steps,
        lora_ranks=config.lora_ranks, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=16, learning_rate=config.learning_rate, lr_scheduler_type="constant_with_warmup",
        warmup_steps=10, crop_size=config.train_crop_size, logging_steps=10, save_strategy="no", report_to=[],
        use_cpu=not torch.cuda.is_available(), seed=config.seed, disable_tqdm=False,
        **config.extra_training_args,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = build_curriculum_model(rm0, args.final_stage, args.lora_rank_list)
    growth = RewardModelGrowthCallback(args.schedule, training_data="FGR-mini (offline quickstart)")
    trainer = RewardModelTrainer(
        model, args=args, train_dataset=train, eval_dataset=heldout, anchor_model=rm0, callbacks=[growth]
    )
    trainer.train()
    return trainer


def _stage_rows(
    trainer: RewardModelTrainer, heldout, stages: list[int]
) -> tuple[list[dict], list[dict], FinPercepRewardModel]:
    """Held-out metrics per stage checkpoint, per artifact kind for the last stage, and the last stage's model."""
    rows, crop = [], None  # full held-out rows
    final_model = None
    for stage in stages:
        model = FinPercepRewardModel.from_pretrained(Path(trainer.args.output_dir) / stage_dir_name(stage))
        metrics = evaluate_reward_model(model, heldout, trainer.anchor_model, 16, crop, progress=False)
        rows.append({"stage": f"RM_{stage}", **metrics})
        final_model = model
    kinds = sorted(set(heldout["artifact_kind"]))
    kind_rows = []
    for kind in kinds:
        subset = heldout.filter(lambda row, k=kind: row["artifact_kind"] == k)
        metrics = evaluate_reward_model(final_model, subset, trainer.anchor_model, 16, crop, progress=False)
        kind_rows.append({"artifact kind": kind, "samples": len(subset), **metrics})
    return rows, kind_rows, final_model


def _overlays(model: FinPercepRewardModel, heldout, out: Path, count: int) -> list[Path]:
    paths = []
    picks = np.linspace(0, len(heldout) - 1, num=min(count, len(heldout))).astype(int)
    for index in picks:
        row = heldout[int(index)]
        pixel_values = torch.from_numpy(np.asarray(row["image_syn"], dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            record = output_to_records(model(pixel_values))[0]
        title = f"held-out {row['source_id']} / {row['artifact_kind']}  score {record['score']:.3f}"
        mask = np.asarray(row["mask"]) > 127
        paths.append(save_pdm_overlay(row["image_syn"], record["pdm"], out / f"overlay_{index:03d}.png", title, mask))
    return paths


def _loss_plot(trainer: RewardModelTrainer, path: Path) -> Path:
    history = [entry for entry in trainer.state.log_history if "loss_map" in entry]
    series = {
        name: ([entry["step"] for entry in history], [entry[name] for entry in history])
        for name in ("loss_map", "loss_rank", "loss_align")
    }
    return save_line_plot(series, path, xlabel="step", ylabel="loss", title="FinPercep-RM training (FGR-mini)")


def run_quickstart(out: str | Path, config: QuickstartConfig | None = None, log=print) -> Path:
    """Run the whole quickstart into ``out``; returns the path of ``report.md``."""
    config = config or QuickstartConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    train, heldout = _build_datasets(config, out, log)
    timings["build FGR-mini + held-out"] = time.perf_counter() - start
    start = time.perf_counter()
    trainer = _train(config, out, train, heldout)
    timings["train RM stages"] = time.perf_counter() - start
    start = time.perf_counter()
    stages = trainer.args.stage_list
    rows, kind_rows, final = _stage_rows(trainer, heldout, stages)
    figures = out / "figures"
    overlays = _overlays(final, heldout, figures, config.num_overlays)
    loss_plot = _loss_plot(trainer, figures / "losses.png")
    timings["evaluate + figures"] = time.perf_counter() - start

    metric_columns = [("stage", "stage")] + list(REPORT_METRICS)
    kind_columns = [("artifact kind", "artifact kind"), ("samples", "samples")] + list(REPORT_METRICS[:1]) + [
        REPORT_METRICS[3], REPORT_METRICS[5]
    ]  # fmt: skip
    report = out / "report.md"
    report.write_text(
        "# FinPercep-RM quickstart report\n\n"
        "Offline embedded default: a small CLIP-shaped encoder with **random initialisation** (no pre-training is "
        "available offline) grown RM_0 -> RM_N with the co-evolutionary curriculum on FGR-mini built from the "
        f"scikit-image photos {', '.join(config.train_photos)}. Evaluation uses FGR samples built from photos never "
        f"seen in training: {', '.join(config.heldout_photos)} ({len(heldout)} samples, full "
        f"{config.crop_size} px rows).\n\n"
        "RM_0 is the untrained CLIP-IQA baseline: its ordering accuracy is chance and it has no map (PDM columns "
        "empty).\n\n"
        "## Held-out metrics per stage\n\n" + _markdown_table(rows, metric_columns) + "\n\n"
        f"## Held-out metrics of RM_{stages[-1]} per artifact kind\n\n" + _markdown_table(kind_rows, kind_columns)
        + "\n\n## PDM overlays (held-out SYN images, swap mask outlined in cyan)\n\n"
        + "\n".join(f"![overlay]({path.relative_to(out)})" for path in overlays)
        + f"\n\n## Training losses\n\n![losses]({loss_plot.relative_to(out)})\n\n"
        "## Wall time\n\n" + "\n".join(f"- {name}: {seconds:.0f} s" for name, seconds in timings.items())
        + f"\n\n## Configuration\n\n```json\n{json.dumps(asdict(config), indent=2)}\n```\n"
    )  # fmt: skip
    (out / "metrics.json").write_text(json.dumps({"stages": rows, "artifact_kinds": kind_rows}, indent=2))
    if config.with_rl:
        stage_dirs = [Path(trainer.args.output_dir) / stage_dir_name(stage) for stage in stages]
        append_path2_to_report(report, stage_dirs, config.train_photos, config.heldout_photos, config.rl_budget, log)
    log(f"report: {report}")
    log(f"stage checkpoints: {', '.join(str(Path(trainer.args.output_dir) / stage_dir_name(s)) for s in stages)}")
    log(f"figures: {figures}")
    return report


__all__ = ["QuickstartConfig", "run_quickstart"]
