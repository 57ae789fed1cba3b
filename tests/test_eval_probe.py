"""The reward-hacking probe: artifact implants on real skimage photos, the probe's rows and files with tiny RMs,
and its logic checked with an ideal artifact detector."""

import csv
import math

import numpy as np
import pytest
import torch

from finpercep_hf.cli import main
from finpercep_hf.evaluation.artifacts import ARTIFACTS, implant_artifact, region_mask
from finpercep_hf.evaluation.probe import FinPercepProbeConfig, make_variants, run_probe
from finpercep_hf.evaluation.rm_metrics import pdm_auroc_per_image
from finpercep_hf.images import pil_to_tensor, tensor_to_pil
from finpercep_hf.models import FinPercepOutput

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def high_frequency_energy(image: torch.Tensor) -> float:
    """Mean squared 4-neighbour Laplacian of the grey image (3, H, W)."""
    grey = image.mean(dim=0)
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return laplacian.pow(2).mean().item()


class IdealDetector(torch.nn.Module):
    """Knows the clean image: pdm = 1 where a pixel changed, global_score = 1 - mean |change|."""

    def __init__(self, clean: torch.Tensor):
        super().__init__()
        self.clean = clean

    def forward(self, pixel_values):
        change = (pixel_values - self.clean).abs().mean(dim=1, keepdim=True)
        return FinPercepOutput(global_score=1 - change.flatten(1).mean(dim=1), pdm=(change > 0).float())


@pytest.fixture
def photo(skimage_photos):
    return pil_to_tensor(skimage_photos["coffee"])


def test_region_mask_covers_the_requested_area():
    generator = torch.Generator().manual_seed(0)
    for area in (0.02, 0.1, 0.25, 0.6):
        mask = region_mask(120, 160, area, generator)
        assert mask.shape == (1, 120, 160) and set(mask.unique().tolist()) <= {0.0, 1.0}
        assert mask.mean().item() == pytest.approx(area, rel=0.1)
        rows, cols = mask[0].nonzero(as_tuple=True)
        assert mask[0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one rectangle
    assert region_mask(8, 8, 1.0, generator).eq(1).all()
    with pytest.raises(ValueError, match="area_fraction must be in"):
        region_mask(8, 8, 0.0, generator)


def test_each_artifact_changes_only_its_region_and_has_its_signature(photo):
    changes = {}
    for kind in ARTIFACTS:
        distorted, mask = implant_artifact(photo, kind, 0.25, torch.Generator().manual_seed(1))
        again, _ = implant_artifact(photo, kind, 0.25, torch.Generator().manual_seed(1))
        assert torch.equal(distorted, again)  # seeded
        assert torch.equal(distorted * (1 - mask), photo * (1 - mask))  # nothing outside the region
        assert (distorted - photo).abs().mul(mask).sum() / mask.sum() / 3 > 0.01  # visible inside
        region = mask[0].nonzero()
        top, left = region.min(dim=0).values.tolist()
        bottom, right = (region.max(dim=0).values + 1).tolist()
        changes[kind] = (photo[:, top:bottom, left:right], distorted[:, top:bottom, left:right])
    energy = {kind: (high_frequency_energy(a), high_frequency_energy(b)) for kind, (a, b) in changes.items()}
    assert energy["blur"][1] < 0.3 * energy["blur"][0]
    for kind in ("noise", "oversharpen", "texture"):
        assert energy[kind][1] > 2 * energy[kind][0], kind
    clean, shifted = changes["color_shift"]
    assert shifted[0].mean() > clean[0].mean() and shifted[2].mean() < clean[2].mean()
    clean, compressed = changes["jpeg"]
    assert not torch.equal(clean, compressed)
    with pytest.raises(KeyError, match="unknown artifact 'rain'"):
        implant_artifact(photo, "rain", 0.1, torch.Generator())


def test_probe_with_an_ideal_detector_is_ordered_and_localised(photo, tmp_path):
    config = FinPercepProbeConfig(area_fractions=(0.05, 0.2), max_side=200, overlay_images=0)
    rows = run_probe({"ideal": IdealDetector(photo)}, {"coffee": tensor_to_pil(photo)}, tmp_path, config)
    assert len(rows) == len(ARTIFACTS) * 2
    for row in rows:
        assert row["score_drop"] > 0 and row["score_drop_global"] > row["score_drop"]
        assert row["ordered"] is True
        assert row["pdm_auroc"] > 0.9, row["artifact"]
    larger = {row["artifact"]: row["score_drop"] for row in rows if row["area_fraction"] == 0.2}
    smaller = {row["artifact"]: row["score_drop"] for row in rows if row["area_fraction"] == 0.05}
    assert all(larger[kind] > smaller[kind] for kind in ARTIFACTS)


def test_probe_with_tiny_rms_writes_rows_summary_plots_and_overlays(make_rm, skimage_photos, tmp_path):
    models = {"stage0": make_rm(stage=0), "stage1": make_rm(stage=1)}
    images = {name: skimage_photos[name] for name in ("astronaut", "chelsea")}
    kinds = ("blur", "noise", "texture")
    config = FinPercepProbeConfig(artifacts=kinds, area_fractions=(0.05, 0.25), max_side=64, overlay_images=1)
    rows = run_probe(models, images, tmp_path, config)

    with (tmp_path / "probe.csv").open() as handle:
        written = list(csv.DictReader(handle))
    expected_keys = [
        (model, image, kind, area) for image in images for model in models for kind in kinds for area in (0.05, 0.25)
    ]
    assert [(r["model"], r["image"], r["artifact"], float(r["area_fraction"])) for r in written] == expected_keys
    for row in rows:
        assert row["score_drop"] == pytest.approx(row["score_clean"] - row["score_local"])
        assert row["ordered"] == (row["score_clean"] > row["score_local"] > row["score_global"])
        assert math.isnan(row["pdm_auroc"]) == (row["model"] == "stage0")
    # The stage-1 AUROC of one row, recomputed from the model's own map on the same implant.
    variants = make_variants(pil_to_tensor(images["chelsea"].resize((64, 51))), config, seed=config.seed + 1)
    index = next(i for i, v in enumerate(variants) if v.artifact == "noise" and v.area_fraction == 0.25)
    with torch.no_grad():
        pdm = models["stage1"](variants[index].pixel_values[None]).pdm
    expected = pdm_auroc_per_image(pdm, variants[index].mask[None]).item()
    row = next(
        r
        for r in rows
        if (r["model"], r["image"], r["artifact"], r["area_fraction"]) == ("stage1", "chelsea", "noise", 0.25)
    )
    assert row["pdm_auroc"] == pytest.approx(expected, abs=1e-6)

    summary = (tmp_path / "summary.md").read_text().splitlines()
    assert summary[0].startswith("| Model | Artifact | drop 5% | drop 25% | drop global | clean > local > global |")
    assert [line.split(" | ")[1] for line in summary[2:]] == [*kinds, "all"] * 2
    assert all(line.endswith("| – |") for line in summary[2:6])  # stage 0 has no map
    assert not any(line.endswith("| – |") for line in summary[6:])
    plots = ["score_drop_vs_area.png", "score_drop_stage0.png", "score_drop_stage1.png"]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(plots)
    overlays = sorted(p.name for p in (tmp_path / "overlays").rglob("*.png"))
    assert overlays == sorted(f"astronaut_{kind}.png" for kind in kinds)
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in (tmp_path / "overlays").rglob("*.png"))


def test_probe_command_on_default_photos_and_bad_options(tiny_rm1_dir, tmp_path, capsys):
    out = tmp_path / "probe"
    args = [
        "probe",
        "--rm",
        f"rm1={tiny_rm1_dir}",
        "--out",
        str(out),
        "--artifacts",
        "blur",
        "color_shift",
        "--area_fractions",
        "0.1",
        "--max-side",
        "48",
        "--overlay-images",
        "0",
    ]
    assert main(args) == 0
    with (out / "probe.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["image"] for row in rows} == {
        f"skimage:{name}" for name in ("astronaut", "coffee", "chelsea", "rocket")
    }
    assert {(row["model"], row["artifact"]) for row in rows} == {("rm1", "blur"), ("rm1", "color_shift")}
    assert "| rm1 | all |" in capsys.readouterr().out
    assert main(["probe", "--rm", str(tiny_rm1_dir), "--out", str(out), "--artifacts", "rain"]) == 2
    assert "artifacts must be a non-empty subset" in capsys.readouterr().err
    assert main(["probe", "--rm", str(tiny_rm1_dir), "--out", str(out), "--area_fractions", "0.5", "1.5"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["probe", "--rm", str(tiny_rm1_dir), "--out", str(out), "--images", str(tmp_path / "empty")]) == 2
    assert "no readable images" in capsys.readouterr().err
    assert main(["probe", "--rm", str(tmp_path / "missing-rm"), "--out", str(out)]) == 1
    assert "Could not load the FinPercep-RM checkpoint" in capsys.readouterr().err
    assert np.isfinite([float(row["score_drop"]) for row in rows]).all()
