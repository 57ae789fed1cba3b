"""Curriculum path 2 of the offline quickstart: a small SR generator RL-tuned three ways from the same start.

Given the RM stage directories RM_0 ... RM_N that path 1 exported (`run_path2`):

1. Build a small feed-forward x4 SR network (Real-ESRGAN's compact ``SRVGGNetCompact``, through spandrel's class,
   so the saved weights load back with `FeedForwardSRGenerator.from_pretrained`) and pre-train it briefly with L1
   to GT on bicubic-downsampled crops of the training photos: RL starts from a sensible policy.
2. Run REFL (`trainers.REFLTrainer`, the direct reward gradient of a `DirectSRGenerator`) three times from that
   start with the same seed, data order, learning rate, steps and fidelity weight:
   (a) RM_0 only (the paper's "w/ IQA"), (b) RM_N only (no curriculum), (c) the CCL schedule RM_0 -> ... -> RM_N
   (`CCLRewardCallback`, stages of equal length).
3. At every validation step, on held-out photos: the training reward (the RM in force), RM_0's score, RM_N's
   score and mean PDM, PSNR and SSIM to GT and ``hacking_gap`` (`trainers.monitor`, with RM_0's score as the
   held-out IQA of every run, so the three gaps are comparable). Written: ``path2.md`` (tables, panels
   LR | reference | (a) | (b) | (c) | GT with RM_N's PDM, reward and fidelity curves in the shape of the paper's
   Fig. 1b) and ``path2_metrics.json``. The verdict lines are computed from the numbers, never assumed.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from torch import nn
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from .curriculum import CCLRewardCallback
from .data.lr_hr import LRHRDataset
from .data.photos import load_bundled_photo
from .generators.feed_forward import WEIGHTS_NAME, FeedForwardSRGenerator
from .generators.fidelity import FidelityConfig
from .images import tensor_to_pil
from .models import FinPercepRewardModel
from .rewards import BaseIQAReward, load_reward_model
from .trainers import REFLConfig, REFLTrainer
from .trainers.monitor import RewardHackingMonitor
from .visualization import save_curve_panels, save_image_grid

SCALE = 4
RUNS = (("a", "RM_0 only (w/ IQA)"), ("b", "RM_N only (no curriculum)"), ("c", "CCL RM_0 -> RM_N"))
BUDGETS = ("fast", "full")
FULL_BUDGET = dict(
    hr_size=80, num_feat=32, num_conv=6, pretrain_steps=600, rl_steps=120, validation_steps=20, heldout_tiles=4,
    num_panels=4,
)  # fmt: skip
VALIDATION_COLUMNS = (
    ("step", "step"),
    ("stage", "rewarding RM"),
    ("reward", "training reward"),
    ("rm0_score", "RM_0 score"),
    ("rmn_score", "RM_N score"),
    ("rmn_pdm", "RM_N mean PDM"),
    ("psnr", "PSNR (dB)"),
    ("ssim", "SSIM"),
    ("hacking_gap", "hacking_gap"),
)


@dataclass
class Path2Config:
    """Sizes of path 2. Defaults are the ``fast`` budget (about a minute on 2 idle CPU cores);
    `Path2Config.for_budget("full")` is sized for about 5 minutes."""

    # Data: random crops of the training photos; held-out tiles from a grid over each held-out photo.
    hr_size: int = 64  # GT crop; LR = hr_size / 4, bicubic
    heldout_tiles: int = 2  # per held-out photo
    # Generator: SRVGGNetCompact (Real-ESRGAN's compact x4 network).
    num_feat: int = 24
    num_conv: int = 4
    pretrain_steps: int = 200
    pretrain_learning_rate: float = 2e-3
    batch_size: int = 8
    # REFL, the same for the three runs.
    rl_steps: int = 60
    learning_rate: float = 3e-5
    rl_batch_size: int = 4
    reward_offset: float = 1.0  # rewards lie in [0, 1]: relu(1 - r) = 1 - r, a live gradient everywhere
    fidelity_reference_l1: float = 2.0  # L1 to the pre-trained start, relative to the reward hinge
    validation_steps: int = 10
    seed: int = 0
    num_panels: int = 2

    def __post_init__(self):
        if self.hr_size % (SCALE * 4):
            raise ValueError(f"hr_size must be a multiple of {SCALE * 4}, got {self.hr_size}.")
        for name in ("heldout_tiles", "num_feat", "num_conv", "batch_size", "rl_steps", "rl_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.pretrain_steps < 0 or self.validation_steps < 1 or self.validation_steps > self.rl_steps:
            raise ValueError("pretrain_steps must be >= 0 and validation_steps in [1, rl_steps].")

    @classmethod
    def for_budget(cls, budget: str, **overrides) -> Path2Config:
        """The ``fast`` (defaults) or ``full`` budget, with ``overrides`` on top."""
        if budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}.")
        return cls(**({**FULL_BUDGET, **overrides} if budget == "full" else overrides))


def heldout_tiles(photos: list[Image.Image], size: int, per_photo: int) -> list[Image.Image]:
    """``per_photo`` square ``size`` tiles per photo, evenly spaced along its diagonal (deterministic)."""
    tiles = []
    for photo in photos:
        width, height = photo.size
        for fraction in np.linspace(0.2, 0.8, per_photo) if per_photo > 1 else [0.5]:
            left = int((width - size) * fraction) // SCALE * SCALE
            top = int((height - size) * fraction) // SCALE * SCALE
            tiles.append(photo.crop((left, top, left + size, top + size)))
    return tiles


def build_generator_network(config: Path2Config) -> nn.Module:
    """A random ``SRVGGNetCompact`` x4 network (LR (B, 3, h, w) in [0, 1] -> (B, 3, 4h, 4w)), seeded."""
    torch.manual_seed(config.seed)
    return Compact(num_feat=config.num_feat, num_conv=config.num_conv, upscale=SCALE, act_type="prelu")


def pretrain_generator(network: nn.Module, dataset: LRHRDataset, config: Path2Config) -> list[float]:
    """L1 to GT for ``pretrain_steps`` Adam steps on seeded random crops; returns the loss per step."""
    network.train().requires_grad_(True)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.pretrain_learning_rate)
    order = torch.Generator().manual_seed(config.seed)
    losses, epoch = [], 0
    while len(losses) < config.pretrain_steps:
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=order)
        for batch in loader:
            loss = F.l1_loss(network(batch["image_lr"]).clamp(0, 1), batch["image_gt"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == config.pretrain_steps:
                break
        epoch += 1
    network.eval().requires_grad_(False)
    return losses


class RMNProbe(TrainerCallback):
    """At every validation, RM_N's ``global_score`` and mean ``pdm`` of the policy's held-out outputs; the outputs
    of the last validation are kept (``images``) for the panels."""

    def __init__(self, rm_n: FinPercepRewardModel, image_lr: torch.Tensor):
        self.rm_n, self.image_lr = rm_n, image_lr
        self.history: list[dict[str, float]] = []
        self.images: torch.Tensor | None = None

    @torch.no_grad()
    def on_evaluate(self, args, state, control, trainer=None, **kwargs):
        self.images = trainer.generator.sample(self.image_lr).images.cpu()
        output = self.rm_n(self.images)
        self.history.append({"rmn_score": output.global_score.mean().item(), "rmn_pdm": output.pdm.mean().item()})


def stage_name(checkpoint: str | Path) -> str:
    """``"RM_k"``, k the stage recorded in the checkpoint's config."""
    return f"RM_{FinPercepRewardModel.config_class.from_pretrained(checkpoint).stage}"


def curriculum_schedule(stage_dirs: list[Path], steps: int) -> str:
    """``"0:RM_0,s1:RM_1,..."``: the stages in order, each for an equal share of ``steps`` updates."""
    starts = [index * steps // len(stage_dirs) for index in range(len(stage_dirs))]
    return ",".join(f"{start}:{path}" for start, path in zip(starts, stage_dirs))


def run_refl(
    name: str,
    schedule: str,
    network: nn.Module,
    train: LRHRDataset,
    heldout: LRHRDataset,
    rm0: FinPercepRewardModel,
    rm_n: FinPercepRewardModel,
    config: Path2Config,
    out: Path,
) -> dict:
    """One REFL run from a copy of ``network`` under the RM ``schedule``; returns its per-validation rows."""
    generator = FeedForwardSRGenerator(
        copy.deepcopy(network),
        scale=SCALE,
        fidelity=FidelityConfig(fidelity_reference_l1=config.fidelity_reference_l1),
    )
    args = REFLConfig(
        output_dir=str(out / f"run_{name}"), learning_rate=config.learning_rate, adam_weight_decay=0.0,
        train_batch_size=config.rl_batch_size, gradient_accumulation_steps=1, max_train_steps=config.rl_steps,
        use_lora=False, reward_offset=config.reward_offset, grad_scale=1.0, validation_steps=config.validation_steps,
        num_validation_images=len(heldout), validation_inference_steps=1, checkpointing_steps=config.rl_steps + 1,
        report_to="none", seed=config.seed,
    )  # fmt: skip
    image_lr = torch.stack([heldout[index]["image_lr"] for index in range(len(heldout))])
    probe = RMNProbe(rm_n, image_lr)
    curriculum = CCLRewardCallback(schedule)
    trainer = REFLTrainer(
        generator, reward=curriculum.schedule.stages[0].checkpoint, args=args, train_dataset=train,
        eval_dataset=heldout, callbacks=[curriculum, probe], monitor=RewardHackingMonitor(iqa=BaseIQAReward(rm0)),
    )  # fmt: skip
    trainer.validate()  # step 0: the pre-trained start, cached by the monitor as the reference policy
    trainer.train()
    # The RM that rewarded the updates up to a validation (the switch comes at the start of the next update) and
    # that gives its training reward.
    stages = [
        stage_name(curriculum.schedule.stage_at(max(row["step"] - 1, 0)).checkpoint)
        for row in trainer.validation_history
    ]
    rows = [
        {"stage": stage, **row, "rm0_score": row["base_iqa"], **probed}
        for stage, row, probed in zip(stages, trainer.validation_history, probe.history)
    ]
    training_reward = [
        (entry["step"], entry["train/reward"]) for entry in trainer.state.log_history if "train/reward" in entry
    ]
    change = (probe.images - trainer.monitor.reference["image"].cpu()).abs().max().item()
    return {
        "schedule": schedule,
        "validation": rows,
        "train_reward": training_reward,
        "output_change": change,
        "images": probe.images,
        "reference": trainer.monitor.reference["image"].cpu(),
    }


def _table(rows: list[dict], columns) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[key]:.3f}" if isinstance(row.get(key), float) else str(row.get(key, "")) for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results: dict[str, dict], stage_n: str) -> list[str]:
    """Sentences read off the measured numbers: did (a) hack RM_0, and did (c) beat (b) on RM_N, PDM and fidelity."""
    start = {key: results["a"]["validation"][0][key] for key in ("rm0_score", "ssim", "psnr", "rmn_pdm")}
    end = {name: run["validation"][-1] for name, run in results.items()}
    a = end["a"]
    losses = [
        name
        for name, lost in (
            ("SSIM fell", a["ssim"] < start["ssim"]),
            ("PSNR fell", a["psnr"] < start["psnr"]),
            (f"{stage_n}'s mean PDM grew", a["rmn_pdm"] > start["rmn_pdm"]),
        )
        if lost
    ]
    hacked = a["rm0_score"] > start["rm0_score"] and bool(losses)
    lines = [
        f"(a) RM_0 only: RM_0 score {start['rm0_score']:.3f} -> {a['rm0_score']:.3f}, SSIM {start['ssim']:.3f} -> "
        f"{a['ssim']:.3f}, PSNR {start['psnr']:.2f} -> {a['psnr']:.2f} dB, {stage_n} mean PDM {start['rmn_pdm']:.3f} "
        f"-> {a['rmn_pdm']:.3f}: "
        + (
            f"**reward hacking measured**: the global reward rose while {', '.join(losses)}."
            if hacked
            else "**no reward hacking measured at this scale**: the global reward did not rise at the cost of "
            "fidelity or of the defect map."
        )
    ]
    b, c = end["b"], end["c"]
    wins = {
        f"{stage_n} score": c["rmn_score"] > b["rmn_score"],
        f"{stage_n} mean PDM (lower)": c["rmn_pdm"] < b["rmn_pdm"],
        "PSNR": c["psnr"] > b["psnr"],
        "SSIM": c["ssim"] > b["ssim"],
        "hacking_gap (lower)": c["hacking_gap"] < b["hacking_gap"],
    }
    better = [name for name, won in wins.items() if won]
    worse = [name for name, won in wins.items() if not won]
    lines.append(
        f"(c) CCL vs (b) {stage_n} only, at the last step: (c) is better on {', '.join(better) or 'nothing'}"
        f" and not better on {', '.join(worse) or 'nothing'}; "
        + ("**(c) beats (b)** on most figures." if len(better) > len(worse) else "**(c) does not beat (b)** here.")
    )
    return lines


def _panels(results: dict[str, dict], heldout: LRHRDataset, rm_n: FinPercepRewardModel, count: int, out: Path):
    """Per held-out tile: LR (bicubic) | reference | (a) | (b) | (c) | GT, and the same with RM_N's PDM over them."""
    paths = []
    for index in range(min(count, len(heldout))):
        item = heldout[index]
        lr_up = F.interpolate(item["image_lr"][None], scale_factor=SCALE, mode="bicubic", align_corners=False)
        images = {
            "LR (bicubic)": lr_up[0].clamp(0, 1),
            "reference": results["a"]["reference"][index],
            **{f"({name})": results[name]["images"][index] for name, _ in RUNS},
            "GT": item["image_gt"],
        }
        with torch.no_grad():
            pdm = rm_n(torch.stack(list(images.values()))).pdm[:, 0].numpy()
        cells = [
            (tensor_to_pil(image), map_, f"{title}\nPDM {map_.mean():.3f}")
            for (title, image), map_ in zip(images.items(), pdm)
        ]
        paths.append(save_image_grid(cells, out / f"panel_{index}.png"))
    return paths


def _curves(results: dict[str, dict], path: Path) -> Path:
    panels = {}
    for key, title in (("reward", "training reward (held-out)"), ("rm0_score", "RM_0 score"),
                       ("psnr", "PSNR to GT (dB)"), ("ssim", "SSIM to GT"), ("rmn_pdm", "RM_N mean PDM"),
                       ("hacking_gap", "hacking_gap")):  # fmt: skip
        panels[title] = {
            f"({name}) {label}": ([row["step"] for row in results[name]["validation"]],
                                  [row[key] for row in results[name]["validation"]])
            for name, label in RUNS
        }  # fmt: skip
    return save_curve_panels(panels, path, xlabel="REFL update", title="Path 2: reward vs fidelity (cf. Fig. 1b)")


def path2_markdown(
    results: dict,
    lines: list[str],
    config: Path2Config,
    stage_dirs: list[Path],
    num_train: int,
    num_heldout: int,
    num_tiles: int,
    out: Path,
    panels: list[Path],
    curves: Path,
    timings: dict[str, float],
) -> str:
    """The path-2 report section: verdicts, tables (last step, then per validation step of each run), curves,
    panels, how the comparison was made fair, and wall times."""
    stage_n = stage_name(stage_dirs[-1])
    summary_columns = [("run", "run")] + list(VALIDATION_COLUMNS[2:]) + [("output_change", "max change vs start")]
    summary = [{"run": "pre-trained start", **results["a"]["validation"][0], "reward": ""}] + [
        {"run": f"({name}) {label}", **run["validation"][-1], "output_change": run["output_change"]}
        for (name, label), run in zip(RUNS, results.values())
    ]
    return (
        "## Path 2: an SR generator RL-tuned with RM_0, RM_N and the curriculum\n\n"
        f"A compact x4 SR network (SRVGGNetCompact, {config.num_feat} features, {config.num_conv} convolutions) "
        f"pre-trained for {config.pretrain_steps} steps (L1 to GT) on {num_train} training photos, then "
        f"REFL for {config.rl_steps} updates from that start, three ways with the same seed: (a) RM_0 only, (b) "
        f"{stage_n} only, (c) the CCL schedule `{' -> '.join(stage_name(path) for path in stage_dirs)}` "
        f"(equal shares of the updates). Evaluated on {num_tiles} {config.hr_size} px tiles of "
        f"{num_heldout} held-out photos. RM_0's score is the held-out IQA of every run's hacking_gap.\n\n"
        + "\n".join(f"- {line}" for line in lines)
        + "\n\n### Last validation step (pre-trained start first)\n\n" + _table(summary, summary_columns)
        + "".join(
            f"\n\n### Run ({name}) {label}, per validation step\n\n"
            + _table(results[name]["validation"], VALIDATION_COLUMNS)
            for name, label in RUNS
        )
        + f"\n\n### Reward and fidelity curves\n\n![path 2 curves]({curves.relative_to(out)})\n\n"
        "### Held-out panels: LR | reference | (a) | (b) | (c) | GT, with " + stage_n + "'s PDM below\n\n"
        + "\n".join(f"![panel]({path.relative_to(out)})" for path in panels)
        + "\n\n### What was done to make the comparison fair\n\n"
        "All three runs start from the same pre-trained weights, with the same seed, crops, learning rate "
        f"({config.learning_rate}, Adam, all weights trained), {config.rl_steps} updates of batch "
        f"{config.rl_batch_size}, reward hinge `relu({config.reward_offset} - R)` (live everywhere, as the "
        "rewards lie in [0, 1]) and the same fidelity term (L1 to the pre-trained start, weight "
        f"{config.fidelity_reference_l1} relative to the hinge). Adam normalises the gradient scale of each RM, so "
        "the runs differ only in the direction each reward pulls. The learning rate and fidelity weight were chosen "
        "by a sweep on the quickstart's RMs (README, 'Curriculum path 2 in the quickstart'): with less fidelity "
        "or a higher rate all three runs collapse within 10 updates into a pattern every RM scores high.\n\n"
        "### Wall time\n\n" + "\n".join(f"- {key}: {seconds:.0f} s" for key, seconds in timings.items()) + "\n"
    )  # fmt: skip


def run_path2(
    stage_dirs: list[Path],
    photos_train: list[Image.Image],
    photos_heldout: list[Image.Image],
    out_dir: str | Path,
    config: Path2Config | None = None,
    log=print,
) -> dict:
    """Curriculum path 2 (see the module docstring) into ``out_dir``; returns the metrics written to
    ``path2_metrics.json`` plus ``"markdown"``, the report section also written to ``path2.md``.

    Args:
        stage_dirs: RM_0 ... RM_N checkpoints (`FinPercepRewardModel.from_pretrained`), at least two.
        photos_train, photos_heldout: RGB photos (each side at least ``hr_size``); held-out ones are only evaluated.
    """
    config = config or Path2Config()
    if len(stage_dirs) < 2:
        raise ValueError(f"path 2 needs RM_0 and at least one later stage, got {len(stage_dirs)} stage dir(s).")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage_dirs = [Path(path) for path in stage_dirs]
    rm0, rm_n = load_reward_model(str(stage_dirs[0])), load_reward_model(str(stage_dirs[-1]))
    stage_n = stage_name(stage_dirs[-1])
    timings = {}

    start = time.perf_counter()
    train = LRHRDataset(list(photos_train), resolution=config.hr_size, scale=SCALE, seed=config.seed)
    heldout = LRHRDataset(
        heldout_tiles(list(photos_heldout), config.hr_size, config.heldout_tiles), resolution=config.hr_size,
        scale=SCALE, random_crop=False,
    )  # fmt: skip
    network = build_generator_network(config)
    pretrain_losses = pretrain_generator(network, train, config)
    save_file({key: value.contiguous() for key, value in network.state_dict().items()}, out / WEIGHTS_NAME)
    timings["pre-train generator"] = time.perf_counter() - start
    log(f"path 2: generator pre-trained ({config.pretrain_steps} steps, L1 {pretrain_losses[-1]:.4f})")

    schedules = {
        "a": curriculum_schedule(stage_dirs[:1], config.rl_steps),
        "b": curriculum_schedule(stage_dirs[-1:], config.rl_steps),
        "c": curriculum_schedule(stage_dirs, config.rl_steps),
    }
    results = {}
    for name, label in RUNS:
        start = time.perf_counter()
        results[name] = run_refl(name, schedules[name], network, train, heldout, rm0, rm_n, config, out)
        timings[f"REFL ({name}) {label}"] = time.perf_counter() - start
        log(f"path 2: run ({name}) {label} done")

    figures = out / "figures"
    panels = _panels(results, heldout, rm_n, config.num_panels, figures)
    curves = _curves(results, figures / "path2_curves.png")
    lines = verdicts(results, stage_n)
    markdown = path2_markdown(results, lines, config, stage_dirs, len(photos_train), len(photos_heldout),
                              len(heldout), out, panels, curves, timings)  # fmt: skip
    metrics = {
        "config": asdict(config),
        "stage_dirs": [str(path) for path in stage_dirs],
        "pretrain_l1": [pretrain_losses[0], pretrain_losses[-1]] if pretrain_losses else [],
        "runs": {
            name: {key: value for key, value in run.items() if key not in ("images", "reference")}
            for name, run in results.items()
        },
        "verdicts": lines,
        "timings_s": timings,
    }
    (out / "path2_metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "path2.md").write_text(markdown)
    return {**metrics, "markdown": markdown}


def append_path2_to_report(
    report: Path,
    stage_dirs: list[Path],
    train_photos: tuple[str, ...],
    heldout_photos: tuple[str, ...],
    budget: str = "fast",
    log=print,
    **overrides,
) -> dict:
    """The quickstart's hook: path 2 (``budget``, `Path2Config` ``overrides`` on top) into ``report.parent / "path2"``
    on the named bundled photos (`load_bundled_photo`), its section appended to ``report``; returns the metrics."""
    config = Path2Config.for_budget(budget, **overrides)
    train = [load_bundled_photo(name) for name in train_photos]
    heldout = [load_bundled_photo(name) for name in heldout_photos]
    result = run_path2(stage_dirs, train, heldout, report.parent / "path2", config, log=log)
    section = result["markdown"].replace("](figures/", "](path2/figures/")
    report.write_text(report.read_text() + "\n" + section)
    log(f"path 2: {report.parent / 'path2' / 'path2_metrics.json'}")
    return result


__all__ = [
    "append_path2_to_report",
    "BUDGETS",
    "Path2Config",
    "RMNProbe",
    "heldout_tiles",
    "pretrain_generator",
    "run_path2",
]
