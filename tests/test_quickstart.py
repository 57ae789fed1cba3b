import json

import pytest
from PIL import Image

from finpercep_hf import FinPercepRewardModel
from finpercep_hf.data.artifacts import ARTIFACT_FAMILIES
from finpercep_hf.quickstart import QuickstartConfig, run_quickstart

# A run has learned when RM_N beats RM_0 on the held-out ordering by ORDERING_MARGIN and its map beats chance
# (AUROC 0.5; RM_0 has no map) by AUROC_MARGIN.
ORDERING_MARGIN = 0.1
AUROC_MARGIN = 0.15


def learned(metrics: dict) -> bool:
    rows = {row["stage"]: row for row in metrics["stages"] if row["resolution"] == "96 px"}
    final = rows[max(rows)]
    return (
        final["ordering_accuracy"] >= rows["RM_0"]["ordering_accuracy"] + ORDERING_MARGIN
        and final["pdm_auroc"] >= 0.5 + AUROC_MARGIN
    )


def small_config(**overrides) -> QuickstartConfig:
    values = dict(
        train_photos=("skimage:astronaut", "skimage:coffee", "skimage:camera"), heldout_photos=("skimage:chelsea",),
        train_samples=16, heldout_samples=6, heldout_large_samples=2, heldout_large_crop_size=128, family_samples=3,
        crop_size=64, train_crop_size=48, backbone_hidden_sizes=(8, 16, 24, 32), backbone_depths=(1, 1, 1, 1),
        projection_dim=16, decoder_channels=8, pretrain_steps=3, pretrain_batch_size=4,
        ccl_schedule="0:0,0:1,2:2,4:3", max_steps=6,
        lora_ranks="2,4", batch_size=4, leave_out_families=("colour",),
        proxy_ccl_schedule="0:0,0:1,2:2", proxy_max_steps=4, num_overlays=2,
        probe_max_side=64, with_rl=False,  # path 2 is tested through its hook in test_quickstart_rl.py
    )  # fmt: skip
    return QuickstartConfig(**{**values, **overrides})


def test_quickstart_end_to_end_small_without_learning_fails_the_learning_check(tmp_path):
    # Learning rate 0 for RM_0's pre-training and 1e-12 for the stages (the trainer rejects 0): every table is
    # written, and the learning check fails.
    config = small_config(learning_rate=1e-12, pretrain_learning_rate=0.0)
    messages = []
    report = run_quickstart(tmp_path, config, log=messages.append)
    text = report.read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for stage in range(4):
        assert f"| RM_{stage} | 96 px |" in text and f"| RM_{stage} | 256 px |" in text
        model = FinPercepRewardModel.from_pretrained(tmp_path / "rm" / f"finpercep-rm-stage{stage}")
        assert model.config.stage == stage and model.config.encoder_type == "backbone"
    assert [row["stage"] for row in metrics["stages"]] == [f"RM_{s}" for s in range(4) for _ in range(2)]
    assert "pdm_auroc" not in metrics["stages"][0] and 0 <= metrics["stages"][-1]["pdm_auroc"] <= 1
    assert sum(row["samples"] for row in metrics["artifact_kinds"]) == 6  # every held-out row in one kind
    [lko] = metrics["leave_kinds_out"]
    assert lko["family"] == "colour" and lko["kinds"] == ", ".join(ARTIFACT_FAMILIES["colour"])
    assert lko["train rows"] < 16 and 0 <= lko["pdm_auroc_unseen"] <= 1
    assert 0 <= metrics["summary"]["rm0_global_ranking"] <= 1 and {row["model"] for row in metrics["probe"]} == {
        "RM_0", "RM_3"
    }  # fmt: skip
    sections = ("## Targets", "## Leave-kinds-out", "## Reward-hacking probe", "trained from scratch", "own scale")
    for section in sections:
        assert section in text
    assert "chelsea" in text and "never seen in training" in text
    overlays = sorted((tmp_path / "figures").glob("overlay_*.png"))
    assert len(overlays) == 4 and all(f"]({p.relative_to(tmp_path)})" in text for p in overlays)
    with Image.open(tmp_path / "figures" / "losses.png") as plot:
        assert plot.format == "PNG"
    assert any(message.startswith("report:") for message in messages)
    assert not learned(metrics)
    # With learning rate 0 nothing moved: RM_3 scores exactly like RM_0 on the held-out ordering.
    assert metrics["stages"][-2]["ordering_accuracy"] == metrics["stages"][0]["ordering_accuracy"]


@pytest.mark.slow
@pytest.mark.xfail(
    reason="issue 11 open: at the fast budget RM_3's map learns (held-out AUROC 0.739, IoU@0.5 0.237) but its"
    " ordering beats RM_0's by less than the margin (0.438 -> 0.500); at the full budget"
    " it passes (0.490 -> 0.750, AUROC 0.777)",
    strict=False,
)
def test_quickstart_fast_budget_learns(tmp_path):
    config = QuickstartConfig.for_budget("fast", leave_out_families=())
    run_quickstart(tmp_path, config)
    assert learned(json.loads((tmp_path / "metrics.json").read_text()))


def test_budgets_and_photo_split():
    fast, full = QuickstartConfig.for_budget("fast"), QuickstartConfig.for_budget("full", seed=3)
    assert full.pretrain_steps > fast.pretrain_steps and full.train_samples > fast.train_samples and full.seed == 3
    assert "skimage:chelsea" in fast.heldout_photos and "skimage:chelsea" not in fast.train_photos
    assert "skimage:cat" not in fast.train_photos  # the same photo as chelsea under another name
    assert fast.encoder_type == "backbone" and fast.backbone_type == "resnet"  # the default chosen by measurement
    with pytest.raises(ValueError, match="backbone_type must be one of"):
        QuickstartConfig(backbone_type="vgg")
    with pytest.raises(ValueError, match="budget must be one of"):
        QuickstartConfig.for_budget("huge")
    assert fast.with_rl and fast.rl_budget == "fast" and full.rl_budget == "full"  # path 2 on by default
    with pytest.raises(ValueError, match="rl_budget must be one of"):
        QuickstartConfig(rl_budget="huge")
    with pytest.raises(ValueError, match="both training and held-out"):
        QuickstartConfig(train_photos=("skimage:moon",), heldout_photos=("skimage:moon",))
