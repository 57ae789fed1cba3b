"""Curriculum path 2 end to end on tiny random RMs (RM_0, RM_1): three REFL runs, tables, figures, moved policies."""

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from finpercep_hf.data.photos import load_bundled_photo
from finpercep_hf.generators.feed_forward import WEIGHTS_NAME, FeedForwardSRGenerator
from finpercep_hf.quickstart_rl import Path2Config, append_path2_to_report, heldout_tiles


@pytest.fixture
def stage_dirs(make_rm, tiny_rm1_dir, tmp_path):
    rm0 = tmp_path / "finpercep-rm-stage0"
    make_rm(stage=0).save_pretrained(rm0)
    return [rm0, tiny_rm1_dir]


def test_path2_tables_finite_for_all_runs_and_every_policy_moved(stage_dirs, tmp_path):
    sizes = dict(
        hr_size=48, heldout_tiles=1, num_feat=8, num_conv=2, pretrain_steps=10, batch_size=2, rl_steps=4,
        rl_batch_size=2, validation_steps=2, num_panels=1,
    )  # fmt: skip
    config = Path2Config(**sizes)
    report = tmp_path / "report.md"
    report.write_text("# path 1\n")
    train, heldout = ("skimage:coffee", "skimage:camera"), ("skimage:chelsea", "sklearn:china")
    result = append_path2_to_report(report, stage_dirs, train, heldout, log=lambda message: None, **sizes)
    out = tmp_path / "path2"

    metrics = json.loads((out / "path2_metrics.json").read_text())
    assert set(metrics["runs"]) == {"a", "b", "c"}
    for name, run in metrics["runs"].items():
        assert [row["step"] for row in run["validation"]] == [0, 2, 4]
        for row in run["validation"]:
            for key in ("reward", "rm0_score", "rmn_score", "rmn_pdm", "psnr", "ssim", "hacking_gap"):
                assert math.isfinite(row[key]), (name, key)
        assert run["validation"][0]["hacking_gap"] == pytest.approx(0.0, abs=1e-6)  # the start is the reference
        assert run["output_change"] > 1e-4, name
        assert len(run["train_reward"]) == config.rl_steps
        # The saved policy differs from the saved pre-trained start.
        start, trained = load_file(out / WEIGHTS_NAME), load_file(out / f"run_{name}" / WEIGHTS_NAME)
        assert any(not torch.equal(start[key], trained[key]) for key in start)
    assert metrics["runs"]["a"]["schedule"].count(":") == 1 and metrics["runs"]["c"]["schedule"].count(":") == 2
    stages = {name: [row["stage"] for row in run["validation"]] for name, run in metrics["runs"].items()}
    assert stages == {"a": ["RM_0"] * 3, "b": ["RM_1"] * 3, "c": ["RM_0", "RM_0", "RM_1"]}
    # The training reward is the score of the rewarding RM: RM_0 for (a) and (c) up to the switch, RM_1 after it.
    for row in metrics["runs"]["a"]["validation"] + metrics["runs"]["c"]["validation"][:2]:
        assert row["reward"] == pytest.approx(row["rm0_score"], abs=1e-6)
    for row in metrics["runs"]["b"]["validation"] + metrics["runs"]["c"]["validation"][2:]:
        assert row["reward"] == pytest.approx(row["rmn_score"], abs=1e-6)

    text = (out / "path2.md").read_text()
    assert result["markdown"] == text
    # The quickstart's report gets the section after its own text, figure links relative to the report.
    report_text = report.read_text()
    assert report_text.startswith("# path 1\n") and "](path2/figures/path2_curves.png)" in report_text
    assert "2 held-out photos" in text and "on 2 training photos" in text
    for heading in ("### Last validation step", "### Run (a)", "### Run (b)", "### Run (c)"):
        assert heading in text
    assert "(a) RM_0 only" in text and "(c) CCL" in text and "nan" not in text
    for image in ("figures/path2_curves.png", "figures/panel_0.png"):
        assert f"]({image})" in text
        with Image.open(out / image) as png:
            assert png.format == "PNG" and png.width > png.height

    # The pre-trained start loads back through spandrel and maps LR 12 px -> 48 px.
    generator = FeedForwardSRGenerator.from_pretrained(out)
    assert generator.sample(torch.rand(1, 3, 12, 12)).images.shape == (1, 3, 48, 48)


def test_load_photo_names_and_heldout_tiles_are_deterministic_squares(skimage_photos):
    camera = load_bundled_photo("skimage:camera")
    assert camera.mode == "RGB" and camera.size == (512, 512)  # grey -> RGB
    assert load_bundled_photo("sklearn:china").size == (640, 427)
    assert load_bundled_photo("skimage:stereo_motorcycle").size == (741, 500)  # (left, right, disparity): left
    with pytest.raises(ValueError, match="unknown bundled photo"):
        load_bundled_photo("matplotlib:grace_hopper")
    tiles = heldout_tiles([skimage_photos["chelsea"]], 64, 3)
    assert [tile.size for tile in tiles] == [(64, 64)] * 3
    again = heldout_tiles([skimage_photos["chelsea"]], 64, 3)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(tiles, again))
    assert tiles[0].tobytes() != tiles[2].tobytes()


def test_budgets_and_validation():
    assert Path2Config.for_budget("full").rl_steps > Path2Config.for_budget("fast").rl_steps
    assert Path2Config.for_budget("fast", rl_steps=7, validation_steps=7).rl_steps == 7
    with pytest.raises(ValueError, match="budget"):
        Path2Config.for_budget("huge")
    with pytest.raises(ValueError, match="hr_size"):
        Path2Config(hr_size=50)
    with pytest.raises(ValueError, match="validation_steps"):
        Path2Config(rl_steps=5, validation_steps=10)
