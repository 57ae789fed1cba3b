"""The embedded default, end to end and offline: FGR-mini -> RM_0..RM_N -> held-out report.

1. Build FGR-mini from every bundled photo (scikit-image's and scikit-learn's, `data.photos`) except the held-out
   ones, and held-out FGR sets from the held-out photos: at 96 px, at 256 px, and one per artifact family.
2. Build RM_0 from a small randomly initialised encoder (a ResNet `AutoBackbone` by default, or a CLIP-shaped
   ViT) and pre-train it as a global quality model on the training photos (`trainers.global_iqa`): no
   pre-trained weights are available offline. Then train stages 1..N with the co-evolutionary curriculum
   (``ccl="param"``): the decoder and head from stage 1, encoder adapters from stage 2, on native-scale crops of
   the FGR-mini rows (resampling a crop changes the blur/noise statistics the map has to read).
3. Leave-kinds-out proxies: for each artifact family, a shorter run of the same recipe without that family,
   evaluated on held-out samples of it.
4. Evaluate every stage checkpoint on the held-out photos (overall, per artifact kind, at 96 and 256 px), run the
   reward-hacking probe on RM_0 and RM_N, and write ``report.md`` (tables, PDM overlays, loss curves) and
   ``metrics.json``.
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
from .data.artifacts import ARTIFACT_FAMILIES, kinds_without
from .data.fgr import MINI_SR_MODELS, FGRBuildConfig, build_fgr
from .data.photos import available_photos, export_photos, load_bundled_photo
from .evaluation.probe import FinPercepProbeConfig, probe_summary_markdown, run_probe, summarize_probe
from .evaluation.reward_model_eval import evaluate_reward_model
from .evaluation.rm_metrics import pdm_iou
from .images import pil_to_tensor
from .models import FinPercepConfig, FinPercepRewardModel
from .models.backbone_encoder import small_convnext_config, small_resnet_config
from .pipelines import output_to_records
from .quickstart_rl import append_path2_to_report
from .tiny_clip import save_tiny_clip
from .trainers.global_iqa import GlobalIQAPretrainingConfig, global_ranking_accuracy, pretrain_global_iqa
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


BUDGETS = ("fast", "full")
BACKBONES = {"resnet": small_resnet_config, "convnext": small_convnext_config}


@dataclass
class QuickstartConfig:
    """Sizes of the offline quickstart. Defaults are the ``fast`` budget (a few minutes on 2 CPU cores);
    `QuickstartConfig.for_budget("full")` uses up to 15 minutes. Budgets are step and sample counts."""

    # Photos: empty train_photos = every bundled photo (`data.photos.available_photos`) except the held-out ones.
    train_photos: tuple[str, ...] = ()
    heldout_photos: tuple[str, ...] = ("skimage:chelsea", "skimage:rocket", "skimage:moon")
    train_samples: int = 320
    heldout_samples: int = 48
    heldout_large_samples: int = 24  # held-out rows at heldout_large_crop_size px
    family_samples: int = 12  # held-out rows per artifact family (leave-kinds-out evaluation)
    crop_size: int = 96  # FGR-mini rows
    heldout_large_crop_size: int = 256
    # Training crops: train_crop_size px at the rows' own scale (rescale_crops=False), flips and colour jitter;
    # held-out evaluation: the full rows. Native-scale 96 px crops beat rescaled 64 px ones by measurement (see
    # `FinPercepTripletCollator`).
    train_crop_size: int = 96
    rescale_crops: bool = False
    train_area_range: tuple[float, float] = (0.05, 0.5)  # swap-mask areas of the training rows
    # PDM target scale: this percentile of all raw-map pixels of a set (FGR's `scale_percentile`). 99 leaves half of
    # the swapped pixels below 0.5, so even the targets reached only IoU@0.5 0.46 on the held-out rows; 90 gives 0.61.
    scale_percentile: float = 90.0
    # Encoder (random init): "backbone" (a small ResNet or ConvNeXt AutoBackbone) or "clip" (a small CLIP-shaped
    # ViT); decoder. ResNet is the default by measurement (see `small_resnet_config`).
    encoder_type: str = "backbone"
    backbone_type: str = "resnet"
    backbone_hidden_sizes: tuple[int, ...] = (24, 48, 96, 192)
    backbone_depths: tuple[int, ...] = (1, 1, 2, 1)
    hidden_size: int = 64  # clip encoder
    num_hidden_layers: int = 4  # clip encoder
    patch_size: int = 8  # clip encoder
    projection_dim: int = 64
    logit_scale_init: float = 20.0  # the anchor logit spans +-20: room for the ranking margins
    decoder_channels: int = 32
    # The decoder's full-resolution pixel branch (0: none). Off by measurement: with 16 channels it gave +0.016
    # held-out PDM AUROC at equal steps but cost 2.2x per step at 96 px (0.48 s against 0.21 s for a triplet batch of
    # 8), and twice the steps without it bought more (AUROC 0.78 -> 0.81 from 1000 to 3000 steps).
    decoder_pixel_channels: int = 0
    # RM_0: global-quality pre-training on the training photos (0 steps: a random RM_0).
    pretrain_steps: int = 300
    pretrain_batch_size: int = 16
    pretrain_learning_rate: float = 2e-3
    # Curriculum and optimisation.
    ccl_schedule: str = "0:0,0:1,150:2,250:3"  # START:STAGE, see `CCLSchedule`
    max_steps: int = 350
    lora_ranks: str = "8,16"
    batch_size: int = 8
    learning_rate: float = 2e-3
    # Leave-kinds-out proxies: one shorter run (stages 0..2) without each family, evaluated on that family.
    leave_out_families: tuple[str, ...] = tuple(ARTIFACT_FAMILIES)
    proxy_ccl_schedule: str = "0:0,0:1,30:2"
    proxy_max_steps: int = 50
    seed: int = 0
    num_overlays: int = 6
    probe_max_side: int = 256
    with_rl: bool = True  # path 2 (`quickstart_rl`): REFL with RM_0 / RM_N / CCL after the RM stages
    rl_budget: str = "fast"  # path 2's budget: fast | full
    extra_training_args: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.encoder_type not in ("backbone", "clip"):
            raise ValueError(f"encoder_type must be 'backbone' or 'clip', got {self.encoder_type!r}.")
        if self.backbone_type not in BACKBONES:
            raise ValueError(f"backbone_type must be one of {sorted(BACKBONES)}, got {self.backbone_type!r}.")
        unknown = set(self.leave_out_families) - set(ARTIFACT_FAMILIES)
        if unknown:
            raise ValueError(f"unknown artifact families {sorted(unknown)}; known: {sorted(ARTIFACT_FAMILIES)}.")
        if self.rl_budget not in BUDGETS:
            raise ValueError(f"rl_budget must be one of {BUDGETS}, got {self.rl_budget!r}.")
        if not self.train_photos:
            self.train_photos = available_photos(exclude=self.heldout_photos)
        overlap = set(self.train_photos) & set(self.heldout_photos)
        if overlap:
            raise ValueError(f"photos {sorted(overlap)} are both training and held-out photos.")

    @classmethod
    def for_budget(cls, budget: str, **overrides) -> QuickstartConfig:
        """The ``fast`` (defaults) or ``full`` budget, with ``overrides`` on top."""
        if budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}.")
        full = dict(
            train_samples=640, heldout_samples=96, heldout_large_samples=48, family_samples=24, pretrain_steps=800,
            ccl_schedule="0:0,0:1,450:2,900:3", max_steps=1300, proxy_ccl_schedule="0:0,0:1,100:2",
            proxy_max_steps=180, rl_budget="full",
        )  # fmt: skip
        return cls(**({**full, **overrides} if budget == "full" else overrides))


def _markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[key]:.3f}" if isinstance(row.get(key), float) else str(row.get(key, "")) for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _build(out: Path, name: str, images: Path, **values) -> datasets.Dataset:
    directory = build_fgr(FGRBuildConfig.mini(images=[str(images)], samples_per_shard=64, **values), out / name)
    return datasets.load_dataset(str(directory))["train"]


def _build_datasets(config: QuickstartConfig, out: Path, log) -> dict[str, datasets.Dataset]:
    """``train`` (training photos), ``heldout`` (96 px), ``heldout_large`` (256 px) and ``family:<name>`` sets
    (one artifact family each), all but ``train`` from the held-out photos."""
    export_photos(config.train_photos, out / "photos" / "train")
    export_photos(config.heldout_photos, out / "photos" / "heldout")
    train_dir, heldout_dir = out / "photos" / "train", out / "photos" / "heldout"
    seed, percentile = config.seed, config.scale_percentile
    sets = {
        "train": _build(
            out, "fgr-mini", train_dir, num_samples=config.train_samples, crop_size=config.crop_size, seed=seed,
            area_range=config.train_area_range, scale_percentile=percentile,
        ),
        "heldout": _build(
            out, "fgr-mini-heldout", heldout_dir, num_samples=config.heldout_samples, crop_size=config.crop_size,
            seed=seed + 1, pretty_name="FGR-mini held-out", scale_percentile=percentile,
        ),
        "heldout_large": _build(
            out, f"fgr-mini-heldout-{config.heldout_large_crop_size}px", heldout_dir,
            num_samples=config.heldout_large_samples, crop_size=config.heldout_large_crop_size, seed=seed + 2,
            pretty_name="FGR-mini held-out (large)", scale_percentile=percentile,
        ),
    }  # fmt: skip
    for index, family in enumerate(config.leave_out_families):
        sets[f"family:{family}"] = _build(
            out, f"fgr-mini-heldout-{family}", heldout_dir, num_samples=config.family_samples,
            crop_size=config.crop_size, seed=seed + 10 + index, pretty_name=f"FGR-mini held-out ({family})",
            sr_models=[f"artifact:{kind}" for kind in ARTIFACT_FAMILIES[family]], scale_percentile=percentile,
        )  # fmt: skip
    log(f"FGR-mini: {len(sets['train'])} training rows from {len(config.train_photos)} photos; held-out sets: "
        + ", ".join(f"{name} ({len(rows)})" for name, rows in sets.items() if name != "train"))  # fmt: skip
    return sets


def _photos(names: tuple[str, ...]) -> list[torch.Tensor]:
    return [pil_to_tensor(load_bundled_photo(name)) for name in names]


def _build_rm0(config: QuickstartConfig, out: Path, log) -> tuple[FinPercepRewardModel, list[dict]]:
    """RM_0: a random encoder, pre-trained as a global quality model on the training photos."""
    torch.manual_seed(config.seed)
    if config.encoder_type == "backbone":
        rm0 = FinPercepRewardModel(
            FinPercepConfig(
                encoder_type="backbone",
                backbone_config=BACKBONES[config.backbone_type](config.backbone_hidden_sizes, config.backbone_depths),
                projection_dim=config.projection_dim, logit_scale_init=config.logit_scale_init,
                decoder_channels=config.decoder_channels, decoder_pixel_channels=config.decoder_pixel_channels,
            )
        )  # fmt: skip
        rm0.config.clip_name_or_path = (
            f"small random {config.backbone_type} (AutoBackbone), pre-trained by the quickstart"
        )
    else:
        clip_dir = save_tiny_clip(
            out / "small-clip", hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=4, patch_size=config.patch_size, image_size=config.train_crop_size, seed=config.seed,
        )  # fmt: skip
        rm0 = FinPercepRewardModel.from_clip(
            str(clip_dir),
            decoder_channels=config.decoder_channels,
            decoder_pixel_channels=config.decoder_pixel_channels,
        )
        rm0.config.clip_name_or_path = (
            "small random CLIP built by finpercep_hf.tiny_clip, pre-trained by the quickstart"
        )
    pretraining = GlobalIQAPretrainingConfig(
        steps=config.pretrain_steps, batch_size=config.pretrain_batch_size,
        learning_rate=config.pretrain_learning_rate, seed=config.seed,
    )  # fmt: skip
    history = pretrain_global_iqa(rm0, _photos(config.train_photos), pretraining, log=log)
    rm0.save_pretrained(out / "rm0-pretrained")
    return rm0.eval(), history


def _train(
    config: QuickstartConfig,
    output_dir: Path,
    rm0: FinPercepRewardModel,
    train,
    heldout,
    ccl_schedule: str,
    max_steps: int,
) -> RewardModelTrainer:
    final_stage = max(int(entry.split(":")[1]) for entry in ccl_schedule.split(","))
    args = FinPercepTrainingArguments(
        output_dir=str(output_dir), ccl_schedule=ccl_schedule, max_steps=max_steps,
        lora_ranks=",".join(config.lora_ranks.split(",")[: final_stage - 1]),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=16, learning_rate=config.learning_rate, lr_scheduler_type="constant_with_warmup",
        warmup_steps=10, crop_size=config.train_crop_size, rescale_crops=config.rescale_crops, logging_steps=10,
        save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(), seed=config.seed, disable_tqdm=True,
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


def _evaluate(model, rows, anchor) -> dict:
    return evaluate_reward_model(model, rows, anchor, 16, None, progress=False)


def _stage_rows(trainer: RewardModelTrainer, sets: dict, stages: list[int]) -> tuple[list[dict], list[dict], list]:
    """Held-out metrics per stage checkpoint (96 px and 256 px), per artifact kind for the last stage, and the
    stage models."""
    rows, models = [], []
    for stage in stages:
        model = FinPercepRewardModel.from_pretrained(Path(trainer.args.output_dir) / stage_dir_name(stage)).eval()
        for name, resolution in (("heldout", "96 px"), ("heldout_large", "256 px")):
            metrics = _evaluate(model, sets[name], trainer.anchor_model)
            rows.append({"stage": f"RM_{stage}", "resolution": resolution, **metrics})
        models.append(model)
    heldout = sets["heldout"]
    kind_rows = []
    for kind in sorted(set(heldout["artifact_kind"])):
        subset = heldout.filter(lambda row, k=kind: row["artifact_kind"] == k)
        kind_rows.append({"artifact kind": kind, "samples": len(subset), **_evaluate(models[-1], subset, None)})
    return rows, kind_rows, models


def _leave_kinds_out(config: QuickstartConfig, out: Path, rm0, sets: dict, final_model, log) -> list[dict]:
    """For each family: a proxy run without it, and the main RM_N, both evaluated on held-out rows of it."""
    rows = []
    for family in config.leave_out_families:
        kept = {"artifact:" + kind for kind in kinds_without((family,))} | {
            spec for spec in MINI_SR_MODELS if not spec.startswith("artifact:")
        }
        train = sets["train"].filter(lambda row, k=kept: row["sr_model"] in k)
        trainer = _train(
            config,
            out / "leave-kinds-out" / family,
            rm0,
            train,
            sets[f"family:{family}"],
            config.proxy_ccl_schedule,
            config.proxy_max_steps,
        )
        proxy = FinPercepRewardModel.from_pretrained(
            Path(trainer.args.output_dir) / stage_dir_name(trainer.args.final_stage)
        ).eval()
        unseen = _evaluate(proxy, sets[f"family:{family}"], None)
        seen = _evaluate(final_model, sets[f"family:{family}"], None)
        rows.append({
            "family": family, "kinds": ", ".join(ARTIFACT_FAMILIES[family]), "train rows": len(train),
            "ordering_unseen": unseen["ordering_accuracy"], "pdm_auroc_unseen": unseen["pdm_auroc"],
            "pdm_iou_unseen": unseen["pdm_iou"], "ordering_seen": seen["ordering_accuracy"],
            "pdm_auroc_seen": seen["pdm_auroc"],
        })  # fmt: skip
        log(
            f"leave-kinds-out {family}: unseen AUROC {unseen['pdm_auroc']:.3f} (seen by RM_N: {seen['pdm_auroc']:.3f})"
        )
    return rows


def _target_iou(rows) -> float:
    """IoU@0.5 of the FGR targets themselves (``pdm_target > 0.5`` against the swap mask): the ceiling of a map
    that fits its targets exactly (the targets are below 0.5 in much of each swapped region)."""
    targets = torch.from_numpy(np.stack([np.asarray(row["pdm_target"], dtype=np.float32) for row in rows]))
    masks = torch.from_numpy(np.stack([np.asarray(row["mask"], dtype=np.float32) / 255 for row in rows]))
    return float(pdm_iou(targets[:, None], masks[:, None]))


def _probe(config: QuickstartConfig, models: dict, out: Path) -> tuple[list[dict], dict]:
    """The reward-hacking probe on the held-out photos; also RM_0's clean > globally distorted rate there."""
    images = {name: load_bundled_photo(name) for name in config.heldout_photos}
    rows = run_probe(models, images, out / "probe", FinPercepProbeConfig(max_side=config.probe_max_side))
    global_wins = {}
    for row in rows:
        global_wins.setdefault(row["model"], {})[(row["image"], row["artifact"])] = row["score_drop_global"] > 0
    rates = {model: sum(wins.values()) / len(wins) for model, wins in global_wins.items()}
    return summarize_probe(rows), rates


def _overlays(model: FinPercepRewardModel, heldout, out: Path, count: int, prefix: str = "overlay") -> list[Path]:
    paths = []
    picks = np.linspace(0, len(heldout) - 1, num=min(count, len(heldout))).astype(int)
    for index in picks:
        row = heldout[int(index)]
        pixel_values = torch.from_numpy(np.asarray(row["image_syn"], dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            record = output_to_records(model(pixel_values))[0]
        title = f"held-out {Path(row['source_id']).stem} / {row['artifact_kind']}  score {record['score']:.3f}"
        mask = np.asarray(row["mask"]) > 127
        path = out / f"{prefix}_{index:03d}.png"
        paths.append(save_pdm_overlay(row["image_syn"], record["pdm"], path, title, mask))
    return paths


def _loss_plot(trainer: RewardModelTrainer, pretraining: list[dict], path: Path) -> Path:
    history = [entry for entry in trainer.state.log_history if "loss_map" in entry]
    series = {
        name: ([entry["step"] for entry in history], [entry[name] for entry in history])
        for name in ("loss_map", "loss_rank", "loss_align")
    }
    if pretraining:
        series["RM_0 pre-training (ranking)"] = (
            [entry["step"] - pretraining[-1]["step"] for entry in pretraining],
            [entry["loss"] for entry in pretraining],
        )
    return save_line_plot(series, path, xlabel="step (pre-training: negative)", ylabel="loss",
                          title="FinPercep-RM training (FGR-mini)")  # fmt: skip


def _short(name: str) -> str:
    return name.split(":", 1)[-1]


def run_quickstart(out: str | Path, config: QuickstartConfig | None = None, log=print) -> Path:
    """Run the whole quickstart into ``out``; returns the path of ``report.md``."""
    config = config or QuickstartConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    sets = _build_datasets(config, out, log)
    timings["build FGR-mini + held-out sets"] = time.perf_counter() - start
    start = time.perf_counter()
    rm0, pretraining = _build_rm0(config, out, log)
    heldout_photos = _photos(config.heldout_photos)
    rm0_ranking = global_ranking_accuracy(rm0, heldout_photos, seed=config.seed + 99)
    timings["pre-train RM_0 (global quality)"] = time.perf_counter() - start
    start = time.perf_counter()
    trainer = _train(config, out / "rm", rm0, sets["train"], sets["heldout"], config.ccl_schedule, config.max_steps)
    timings["train RM stages"] = time.perf_counter() - start
    start = time.perf_counter()
    stages = trainer.args.stage_list
    rows, kind_rows, models = _stage_rows(trainer, sets, stages)
    final = models[-1]
    final_ranking = global_ranking_accuracy(final, heldout_photos, seed=config.seed + 99)
    probe_summary, probe_global = _probe(config, {"RM_0": models[0], f"RM_{stages[-1]}": final}, out)
    figures = out / "figures"
    overlays = _overlays(final, sets["heldout"], figures, config.num_overlays)
    overlays += _overlays(final, sets["heldout_large"], figures, 2, prefix="overlay_256px")
    loss_plot = _loss_plot(trainer, pretraining, figures / "losses.png")
    timings["evaluate + probe + figures"] = time.perf_counter() - start
    start = time.perf_counter()
    lko_rows = _leave_kinds_out(config, out, rm0, sets, final, log)
    timings["leave-kinds-out proxies"] = time.perf_counter() - start

    by_resolution = {
        resolution: [row for row in rows if row["resolution"] == resolution] for resolution in ("96 px", "256 px")
    }
    final_96, final_256 = by_resolution["96 px"][-1], by_resolution["256 px"][-1]
    lko_auroc = [row["pdm_auroc_unseen"] for row in lko_rows]
    summary = {
        "rm0_global_ranking": rm0_ranking["global_ranking"],
        "rm0_probe_clean_gt_global": probe_global["RM_0"],
        "rmN_ordering_accuracy": final_96["ordering_accuracy"],
        "rmN_pdm_auroc": final_96["pdm_auroc"],
        "rmN_pdm_iou": final_96["pdm_iou"],
        "pdm_target_iou": _target_iou(sets["heldout"]),
        "rmN_leave_kinds_out_pdm_auroc_mean": sum(lko_auroc) / len(lko_auroc) if lko_auroc else float("nan"),
        "rmN_pdm_auroc_256px": final_256["pdm_auroc"],
        "rmN_pdm_auroc_256px_minus_96px": final_256["pdm_auroc"] - final_96["pdm_auroc"],
    }
    targets = [
        ("RM_0 global ranking on held-out photos (clean > globally degraded)", "rm0_global_ranking", ">= 0.9"),
        ("RM_0 clean > global probe artifact (held-out photos)", "rm0_probe_clean_gt_global", "(unseen kinds)"),
        (f"RM_{stages[-1]} ordering SR < SYN < GT (96 px)", "rmN_ordering_accuracy", ">= 0.9"),
        (f"RM_{stages[-1]} PDM AUROC (96 px)", "rmN_pdm_auroc", ">= 0.9"),
        (f"RM_{stages[-1]} PDM IoU@0.5 (96 px)", "rmN_pdm_iou", ">= 0.5"),
        ("IoU@0.5 of the FGR targets themselves (ceiling of a map that fits them)", "pdm_target_iou", "(reference)"),
        ("PDM AUROC on left-out families (mean, proxies)", "rmN_leave_kinds_out_pdm_auroc_mean", ">= 0.8"),
        (f"RM_{stages[-1]} PDM AUROC 256 px minus 96 px", "rmN_pdm_auroc_256px_minus_96px", "within +-0.05"),
    ]
    metric_columns = [("stage", "stage"), ("resolution", "held-out rows")] + list(REPORT_METRICS)
    kind_columns = [("artifact kind", "artifact kind"), ("samples", "samples")] + list(REPORT_METRICS[:1]) + [
        REPORT_METRICS[3], REPORT_METRICS[4], REPORT_METRICS[5]
    ]  # fmt: skip
    lko_columns = [
        ("family", "left-out family"), ("kinds", "kinds"), ("train rows", "proxy train rows"),
        ("ordering_unseen", "ordering (unseen)"), ("pdm_auroc_unseen", "PDM AUROC (unseen)"),
        ("pdm_iou_unseen", "IoU@0.5 (unseen)"), ("ordering_seen", f"ordering (RM_{stages[-1]}, seen)"),
        ("pdm_auroc_seen", f"PDM AUROC (RM_{stages[-1]}, seen)"),
    ]  # fmt: skip
    ranking_rows = [
        {"model": "RM_0", **rm0_ranking},
        {"model": f"RM_{stages[-1]}", **final_ranking},
    ]
    ranking_columns = [("model", "model")] + [
        (key, key.replace("global_ranking", "all").replace("all_", "")) for key in rm0_ranking
    ]
    encoder = "CLIP-shaped ViT"
    if config.encoder_type == "backbone":
        encoder = f"{config.backbone_type} (transformers AutoBackbone)"
    train_names = ", ".join(_short(name) for name in config.train_photos)
    heldout_names = ", ".join(_short(name) for name in config.heldout_photos)
    report = out / "report.md"
    report.write_text(
        "# FinPercep-RM quickstart report\n\n"
        f"Offline embedded default ({config.encoder_type} encoder). **Everything was trained from scratch here**, "
        "from random initialisation (no pre-trained weights are available offline):\n\n"
        f"1. RM_0: a small {encoder} "
        f"pre-trained for {config.pretrain_steps} steps as a *global* quality model (CLIP-IQA-style good/bad anchors, "
        "hinge ranking of clean > mildly > strongly degraded crops; blur, noise, JPEG, resolution loss, contrast "
        f"loss) on random crops of the training photos: {train_names}.\n"
        f"2. RM_1..RM_{stages[-1]}: grown with the co-evolutionary curriculum (schedule {config.ccl_schedule}, "
        f"{config.max_steps} steps) on "
        "FGR-mini "
        f"({len(sets['train'])} rows built from the same training photos, {config.crop_size} px, artifact kinds: "
        f"{', '.join(_short(spec) for spec in MINI_SR_MODELS)}), in random {config.train_crop_size} px crops "
        + ("resized from 0.6-1.0 of each row" if config.rescale_crops else "at the rows' own scale (no resampling)")
        + f" with flips and colour jitter; PDM targets divided by the {config.scale_percentile:g}th percentile of "
        "each set's raw maps.\n\n"
        f"Every figure below is measured on photos **never seen in training**: {heldout_names}.\n\n"
        "## Targets\n\n" + _markdown_table(
            [{"measure": title, "value": summary[key], "target": target} for title, key, target in targets],
            [("measure", "measure"), ("value", "value"), ("target", "target")],
        )
        + "\n\n## RM_0 and RM_N: global ranking on held-out photos (clean > globally degraded)\n\n"
        "Fraction of (clean, degraded) crop pairs ranked correctly, per degradation kind (the pre-training kinds, "
        "applied to held-out photos).\n\n" + _markdown_table(ranking_rows, ranking_columns)
        + "\n\n## Held-out FGR metrics per stage, at 96 px and 256 px\n\n" + _markdown_table(rows, metric_columns)
        + f"\n\n## Held-out metrics of RM_{stages[-1]} per artifact kind (96 px)\n\n"
        + _markdown_table(kind_rows, kind_columns)
        + "\n\n## Leave-kinds-out (unseen artifact families)\n\n"
        f"For each family, a proxy run of the same recipe (from the same RM_0, schedule "
        f"{config.proxy_ccl_schedule}, {config.proxy_max_steps} steps) "
        "trained on FGR-mini *without* that family's rows, evaluated on held-out samples of that family only "
        f"({config.family_samples} per family); next to it, RM_{stages[-1]} (which saw the family) on the same rows. "
        "Note: every offline SR stand-in also upsamples a degraded LR image, so part of each swapped region's "
        "signal (blur, noise) is shared by all families.\n\n" + _markdown_table(lko_rows, lko_columns)
        + "\n\n## Reward-hacking probe on held-out photos (`finpercep probe`, paper Fig. 1a)\n\n"
        "Six artifacts that the FGR builder does not make (`evaluation/artifacts.py`), implanted locally on 2-25% "
        "of the image and globally. A global IQA (RM_0) should barely move for small local defects; "
        f"RM_{stages[-1]}'s map should find them.\n\n"
        + probe_summary_markdown(probe_summary, FinPercepProbeConfig().area_fractions)
        + "\n## PDM overlays (held-out SYN images, swap mask outlined in cyan)\n\n"
        + "\n".join(f"![overlay]({path.relative_to(out)})" for path in overlays)
        + f"\n\n## Training losses\n\n![losses]({loss_plot.relative_to(out)})\n\n"
        "## Wall time\n\n" + "\n".join(f"- {name}: {seconds:.0f} s" for name, seconds in timings.items())
        + f"\n\n## Configuration\n\n```json\n{json.dumps(asdict(config), indent=2)}\n```\n"
    )  # fmt: skip
    metrics = {
        "summary": summary, "stages": rows, "artifact_kinds": kind_rows, "leave_kinds_out": lko_rows,
        "global_ranking": ranking_rows, "probe": probe_summary, "timings_s": timings, "config": asdict(config),
    }  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if config.with_rl:
        stage_dirs = [Path(trainer.args.output_dir) / stage_dir_name(stage) for stage in stages]
        append_path2_to_report(report, stage_dirs, config.train_photos, config.heldout_photos, config.rl_budget, log)
    log(f"report: {report}")
    log(f"stage checkpoints: {', '.join(str(Path(trainer.args.output_dir) / stage_dir_name(s)) for s in stages)}")
    log(f"figures: {figures}")
    return report


__all__ = ["BUDGETS", "QuickstartConfig", "run_quickstart"]
