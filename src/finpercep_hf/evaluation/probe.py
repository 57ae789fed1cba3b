"""The reward-hacking probe (paper Fig. 1a as a tool): does a reward model notice *local* artifacts?

For every image, every artifact kind of `artifacts.ARTIFACTS` is implanted locally at several area fractions
and globally (the whole image). For every reward model the probe records the score drop
(``score_clean - score_local``), whether the model ranks clean > locally distorted > globally distorted, and, for
models with a PDM, the localisation AUROC of the map against the implant mask (`rm_metrics.pdm_auroc_per_image`).

Outputs of [`run_probe`] in ``out_dir``: ``probe.csv`` (one row per model, image, artifact and area),
``summary.csv`` / ``summary.md`` (per model and artifact), ``plots/score_drop_vs_area.png`` (one line per
model), ``plots/score_drop_<model>.png`` (one line per artifact) and ``overlays/<model>/*.png`` (the PDM over
locally distorted images, the implant outlined).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..images import pil_to_tensor, tensor_to_pil
from ..visualization import save_line_plot, save_pdm_overlay
from .artifacts import ARTIFACTS, implant_artifact
from .rm_metrics import pdm_auroc_per_image

PROBE_COLUMNS = (
    "model",
    "image",
    "artifact",
    "area_fraction",
    "mask_fraction",
    "score_clean",
    "score_local",
    "score_global",
    "score_drop",
    "score_drop_global",
    "ordered",
    "pdm_auroc",
)


@dataclass
class FinPercepProbeConfig:
    """What the probe implants and how it runs."""

    # Artifacts
    artifacts: tuple[str, ...] = field(
        default=tuple(ARTIFACTS), metadata={"help": f"Artifact kinds to implant, from: {', '.join(ARTIFACTS)}."}
    )
    area_fractions: tuple[float, ...] = field(
        default=(0.02, 0.05, 0.1, 0.25),
        metadata={
            "help": "Fractions of the image covered by a local implant, each in (0, 1); the global "
            "distortion (fraction 1) is always added."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the implant regions and of the random artifacts."})
    # Running
    max_side: int = field(
        default=256, metadata={"help": "Images are downscaled (bicubic) so that their longer side is at most this."}
    )
    batch_size: int = field(default=8, metadata={"help": "Images per reward-model forward."})
    device: str = field(default="cpu", metadata={"help": "Torch device of the reward models."})
    # Figures
    overlay_images: int = field(
        default=1, metadata={"help": "Write PDM overlays for this many images (each artifact, largest local area)."}
    )

    def __post_init__(self):
        self.artifacts = tuple(self.artifacts)
        self.area_fractions = tuple(sorted(float(area) for area in self.area_fractions))
        unknown = [kind for kind in self.artifacts if kind not in ARTIFACTS]
        if unknown or not self.artifacts:
            raise ValueError(f"artifacts must be a non-empty subset of {', '.join(ARTIFACTS)}; got {unknown or '()'}.")
        if not self.area_fractions or not all(0 < area < 1 for area in self.area_fractions):
            raise ValueError(f"area_fractions must be non-empty and in (0, 1), got {self.area_fractions}.")
        if self.max_side < 32 or self.batch_size < 1 or self.overlay_images < 0:
            raise ValueError("max_side must be >= 32, batch_size >= 1 and overlay_images >= 0.")


@dataclass
class FinPercepProbeVariant:
    """One probed image: clean (``artifact`` None), local or global (``area_fraction`` 1)."""

    artifact: str | None
    area_fraction: float
    pixel_values: torch.Tensor  # (3, H, W) in [0, 1]
    mask: torch.Tensor  # (1, H, W) in {0, 1}


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def make_variants(image: torch.Tensor, config: FinPercepProbeConfig, seed: int) -> list[FinPercepProbeVariant]:
    """The clean image, then for each artifact its local implants (ascending area) and its global version."""
    generator = torch.Generator().manual_seed(seed)
    variants = [FinPercepProbeVariant(None, 0.0, image, torch.zeros_like(image[:1]))]
    for kind in config.artifacts:
        for area in (*config.area_fractions, 1.0):
            distorted, mask = implant_artifact(image, kind, area, generator)
            variants.append(FinPercepProbeVariant(kind, area, distorted, mask))
    return variants


@torch.no_grad()
def _score(model: Any, variants: list[FinPercepProbeVariant], config: FinPercepProbeConfig):
    """Global scores (N,) and PDMs (N, 1, H, W) or None for the variants, in batches."""
    scores, maps = [], []
    for start in range(0, len(variants), config.batch_size):
        batch = torch.stack([variant.pixel_values for variant in variants[start : start + config.batch_size]])
        output = model(batch.to(config.device))
        scores.append(output.global_score.float().cpu())
        maps.append(None if output.pdm is None else output.pdm.float().cpu())
    return torch.cat(scores), (None if maps[0] is None else torch.cat(maps))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _mean(values: list[float]) -> float:
    values = [value for value in values if not math.isnan(value)]
    return sum(values) / len(values) if values else math.nan


def run_probe(
    models: Mapping[str, Any],
    images: Mapping[str, Image.Image],
    out_dir: str | Path,
    config: FinPercepProbeConfig | None = None,
) -> list[dict[str, Any]]:
    """Probe each reward model with artifact implants on each image and write the outputs listed above.

    Args:
        models: name -> reward model; called on (B, 3, H, W) in [0, 1], returning ``global_score`` (B,) and
            ``pdm`` (B, 1, H, W) or None (e.g. `FinPercepRewardModel` at any stage).
        images: name -> RGB image.
        out_dir: output directory (created).
        config: [`FinPercepProbeConfig`]; defaults when None.

    Returns:
        The rows of ``probe.csv`` as dicts (keys `PROBE_COLUMNS`).
    """
    config = config or FinPercepProbeConfig()
    if not models or not images:
        raise ValueError("run_probe needs at least one model and one image.")
    out_dir = Path(out_dir)
    rows = []
    for image_index, (image_name, image) in enumerate(images.items()):
        clean = pil_to_tensor(_fit(image.convert("RGB"), config.max_side))
        variants = make_variants(clean, config, seed=config.seed + image_index)
        for model_name, model in models.items():
            scores, pdm = _score(model, variants, config)
            masks = torch.stack([variant.mask for variant in variants])
            auroc = pdm_auroc_per_image(pdm, masks) if pdm is not None else torch.full((len(variants),), math.nan)
            global_index = {v.artifact: i for i, v in enumerate(variants) if v.area_fraction == 1.0}
            for index, variant in enumerate(variants):
                if variant.artifact is None or variant.area_fraction == 1.0:
                    continue
                score_clean, score_local = scores[0].item(), scores[index].item()
                score_global = scores[global_index[variant.artifact]].item()
                rows.append(
                    {
                        "model": model_name,
                        "image": image_name,
                        "artifact": variant.artifact,
                        "area_fraction": variant.area_fraction,
                        "mask_fraction": variant.mask.mean().item(),
                        "score_clean": score_clean,
                        "score_local": score_local,
                        "score_global": score_global,
                        "score_drop": score_clean - score_local,
                        "score_drop_global": score_clean - score_global,
                        "ordered": score_clean > score_local > score_global,
                        "pdm_auroc": auroc[index].item(),
                    }
                )
            if image_index < config.overlay_images and pdm is not None:
                _write_overlays(variants, pdm, scores, out_dir / "overlays" / _safe_name(model_name), image_name)
    _write_rows(rows, out_dir / "probe.csv", PROBE_COLUMNS)
    summary = summarize_probe(rows)
    _write_rows(summary, out_dir / "summary.csv", tuple(summary[0]))
    (out_dir / "summary.md").write_text(probe_summary_markdown(summary, config.area_fractions))
    _write_plots(rows, config, out_dir / "plots")
    return rows


def _write_overlays(variants, pdm, scores, directory: Path, image_name: str) -> None:
    largest = max(variant.area_fraction for variant in variants if variant.area_fraction < 1.0)
    for index, variant in enumerate(variants):
        if variant.area_fraction != largest:
            continue
        title = f"{image_name} + {variant.artifact} on {largest:.0%}: {scores[index]:.3f} (clean {scores[0]:.3f})"
        save_pdm_overlay(
            tensor_to_pil(variant.pixel_values),
            pdm[index, 0].numpy(),
            directory / f"{_safe_name(image_name)}_{variant.artifact}.png",
            title=title,
            mask=variant.mask[0].numpy(),
        )


def _write_rows(rows: list[dict[str, Any]], path: Path, columns: tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def summarize_probe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and artifact (plus an ``all`` row per model): mean score drop at each area, mean global drop,
    the fraction of (image, area) cases ranked clean > local > global, and the mean localisation AUROC."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["artifact"]), []).append(row)
        groups.setdefault((row["model"], "all"), []).append(row)
    areas = sorted({row["area_fraction"] for row in rows})
    summary = []
    for (model, artifact), group in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] == "all")):
        entry = {"model": model, "artifact": artifact}
        for area in areas:
            entry[f"drop@{area:g}"] = _mean([row["score_drop"] for row in group if row["area_fraction"] == area])
        entry["drop@global"] = _mean([row["score_drop_global"] for row in group])
        entry["ordered_rate"] = _mean([float(row["ordered"]) for row in group])
        entry["pdm_auroc"] = _mean([row["pdm_auroc"] for row in group])
        summary.append(entry)
    return summary


def probe_summary_markdown(summary: list[dict[str, Any]], area_fractions: tuple[float, ...]) -> str:
    """Markdown table of `summarize_probe` (``–`` where a model has no PDM)."""
    drops = [f"drop@{area:g}" for area in area_fractions]
    header = [
        "Model",
        "Artifact",
        *(f"drop {area:.0%}" for area in area_fractions),
        "drop global",
        "clean > local > global",
        "PDM AUROC",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for entry in summary:
        cells = [f"{entry[key]:.4f}" for key in (*drops, "drop@global")]
        cells.append(f"{entry['ordered_rate']:.0%}")
        cells.append("–" if math.isnan(entry["pdm_auroc"]) else f"{entry['pdm_auroc']:.3f}")
        lines.append(f"| {entry['model']} | {entry['artifact']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_plots(rows: list[dict[str, Any]], config: FinPercepProbeConfig, directory: Path) -> None:
    areas = [*config.area_fractions, 1.0]
    models = list(dict.fromkeys(row["model"] for row in rows))

    def drops(selected: list[dict[str, Any]]) -> list[float]:
        local = [_mean([row["score_drop"] for row in selected if row["area_fraction"] == area]) for area in areas[:-1]]
        return [*local, _mean([row["score_drop_global"] for row in selected])]

    per_model = {model: (areas, drops([row for row in rows if row["model"] == model])) for model in models}
    save_line_plot(
        per_model,
        directory / "score_drop_vs_area.png",
        "artifact area (fraction of the image; 1 = global)",
        "score drop (clean - distorted)",
        "Score drop vs artifact area (mean over artifacts)",
    )
    for model in models:
        per_artifact = {
            kind: (areas, drops([row for row in rows if row["model"] == model and row["artifact"] == kind]))
            for kind in config.artifacts
        }
        save_line_plot(
            per_artifact,
            directory / f"score_drop_{_safe_name(model)}.png",
            "artifact area (fraction; 1 = global)",
            "score drop (clean - distorted)",
            f"{model}: score drop per artifact",
        )


__all__ = [
    "FinPercepProbeConfig",
    "FinPercepProbeVariant",
    "PROBE_COLUMNS",
    "make_variants",
    "probe_summary_markdown",
    "run_probe",
    "summarize_probe",
]
