"""RM metrics on an FGR split (``finpercep evaluate --fgr``): a tiny FGR-format dataset from real skimage photos,
an ideal noise detector (perfect ordering, high AUROC), and tiny stage-0 / stage-1 reward models."""

import csv

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, load_dataset
from kornia.filters import gaussian_blur2d
from PIL import Image as PILImage

from finpercep_hf.cli import main
from finpercep_hf.evaluation.reward_model_eval import evaluate_reward_model
from finpercep_hf.evaluation.rm_metrics import RM_METRICS_LOWER_BETTER
from finpercep_hf.images import pil_to_tensor, tensor_to_pil
from finpercep_hf.models import FinPercepOutput, FinPercepRewardModel

COLUMNS = ("image_gt", "image_sr", "image_syn", "mask", "pdm_target")


@pytest.fixture
def fgr_dir(skimage_photos, tmp_path):
    """Three FGR rows (48x48): SR = GT + noise, SYN = SR inside a rectangle; written as a Parquet shard."""
    generator = torch.Generator().manual_seed(0)
    rows = {column: [] for column in COLUMNS}
    for index, name in enumerate(("astronaut", "coffee", "chelsea")):
        image_gt = pil_to_tensor(skimage_photos[name].crop((40, 40, 88, 88)))
        image_sr = (image_gt + 0.15 * torch.randn(image_gt.shape, generator=generator)).clamp(0, 1)
        mask = torch.zeros(1, 48, 48)
        mask[:, 8 + 4 * index : 30 + 4 * index, 10:34] = 1
        rows["image_gt"].append(tensor_to_pil(image_gt))
        rows["image_sr"].append(tensor_to_pil(image_sr))
        rows["image_syn"].append(tensor_to_pil(mask * image_sr + (1 - mask) * image_gt))
        rows["mask"].append(PILImage.fromarray((mask[0].numpy() * 255).astype(np.uint8), mode="L"))
        rows["pdm_target"].append(PILImage.fromarray(mask[0].numpy() * 0.8, mode="F"))
    dataset = Dataset.from_dict(rows, features=Features({column: Image() for column in COLUMNS}))
    (tmp_path / "fgr" / "data").mkdir(parents=True)
    dataset.to_parquet(tmp_path / "fgr" / "data" / "train-00000-of-00001.parquet")
    return tmp_path / "fgr"


class NoiseDetector(torch.nn.Module):
    """pdm = local high-frequency energy; global_score = 1 - mean(pdm); no map when ``with_map`` is False."""

    def __init__(self, with_map: bool = True):
        super().__init__()
        self.with_map = with_map

    def forward(self, pixel_values):
        residual = (pixel_values - gaussian_blur2d(pixel_values, (5, 5), (1.0, 1.0))).abs().mean(1, keepdim=True)
        pdm = gaussian_blur2d(residual, (7, 7), (2.0, 2.0)).mul(12).clamp(0, 1)
        score = 1 - pdm.flatten(1).mean(1)
        return FinPercepOutput(global_score=score, base_score=score, pdm=pdm if self.with_map else None)


def test_ideal_noise_detector_orders_every_triplet_and_localises(fgr_dir):
    dataset = load_dataset(str(fgr_dir), split="train")
    metrics = evaluate_reward_model(NoiseDetector(), dataset, batch_size=2, progress=False)
    assert set(metrics) == set(RM_METRICS_LOWER_BETTER) - {"score_drift"}
    assert metrics["ordering_accuracy"] == 1.0
    assert metrics["pdm_auroc"] > 0.85
    assert 0 <= metrics["pdm_iou"] <= 1 and 0 <= metrics["pdm_l1"] <= 1
    without_map = evaluate_reward_model(
        NoiseDetector(with_map=False), dataset, anchor_model=NoiseDetector(), progress=False
    )
    assert set(without_map) == set(RM_METRICS_LOWER_BETTER) - {"pdm_l1", "pdm_auroc", "pdm_iou"}
    assert without_map["score_drift"] == 0.0  # same scores as the anchor's base_score


def test_evaluate_fgr_writes_one_column_per_reward_model(fgr_dir, make_rm, tiny_rm1_dir, tmp_path):
    stage0_dir = tmp_path / "rm0"
    make_rm(stage=0).save_pretrained(stage0_dir)
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--fgr",
        str(fgr_dir),
        "--rm",
        f"stage0={stage0_dir}",
        "--rm",
        f"stage1={tiny_rm1_dir}",
        "--anchor-rm",
        str(stage0_dir),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    with (out / "metrics.csv").open() as handle:
        table = {row["metric"]: row for row in csv.DictReader(handle)}
    assert set(table) == set(RM_METRICS_LOWER_BETTER)
    assert table["pdm_auroc"]["stage0"] == "" and 0 <= float(table["pdm_auroc"]["stage1"]) <= 1
    assert float(table["score_drift"]["stage0"]) == 0.0  # RM_0's global score is its base score
    expected = evaluate_reward_model(
        FinPercepRewardModel.from_pretrained(tiny_rm1_dir).eval(),
        load_dataset(str(fgr_dir), split="train"),
        progress=False,
    )
    for name in ("ordering_accuracy", "acc_sr_gt", "pdm_l1", "pdm_auroc"):
        assert float(table[name]["stage1"]) == pytest.approx(expected[name], abs=1e-9)
    markdown = (out / "table.md").read_text()
    assert "| FGR train | ordering_accuracy ↑ |" in markdown and "|  | pdm_l1 ↓ |" in markdown


def test_evaluate_fgr_needs_reward_models(fgr_dir, tmp_path, capsys):
    assert main(["evaluate", "--fgr", str(fgr_dir), "--out", str(tmp_path / "out")]) == 2
    assert "--fgr evaluates reward models: pass --rm" in capsys.readouterr().err
