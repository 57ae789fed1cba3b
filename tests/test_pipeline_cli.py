import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from finpercep_hf import FinPercepImageProcessor, FinPercepPipeline, FinPercepRewardModel
from finpercep_hf.cli import main


def test_pipeline_matches_the_model(tiny_rm1_dir, skimage_photos, tmp_path):
    pipe = pipeline("fine-grained-iqa", model=str(tiny_rm1_dir))
    assert isinstance(pipe, FinPercepPipeline)
    photo_path = tmp_path / "astronaut.png"
    skimage_photos["astronaut"].save(photo_path)
    coffee = skimage_photos["coffee"].crop((0, 0, 131, 97))
    results = pipe([str(photo_path), coffee])
    assert len(results) == 2
    model = FinPercepRewardModel.from_pretrained(tiny_rm1_dir).eval()
    for result, image in zip(results, (skimage_photos["astronaut"], coffee)):
        assert set(result) == {"score", "base_score", "pdm"}
        assert isinstance(result["score"], float) and 0 <= result["score"] <= 1
        assert result["pdm"].dtype == np.float32 and result["pdm"].shape == (image.height, image.width)
        with torch.no_grad():
            out = model(FinPercepImageProcessor()(image)["pixel_values"])
        assert result["score"] == pytest.approx(out.global_score.item(), abs=1e-6)
        assert abs(result["score"] - result["base_score"]) > 1e-3  # the fixture's head is perturbed
        np.testing.assert_allclose(result["pdm"], out.pdm[0, 0].numpy(), atol=1e-6)


def test_cli_score_writes_json_overlays_and_reports_bad_inputs(tiny_rm1_dir, skimage_photos, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("chelsea", "rocket"):
        skimage_photos[name].save(images / f"{name}.png")
    skimage_photos["coffee"].save(images / "coffee.png")
    (images / "broken.png").write_bytes((images / "coffee.png").read_bytes()[:200])
    (images / "zero.jpg").write_bytes(b"")
    out = tmp_path / "out"
    code = main(
        ["score", "--images", str(images), "--model", str(tiny_rm1_dir), "--out", str(out), "--batch_size", "2"]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "broken.png" in captured.err and "zero.jpg" in captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(json.loads(line)["path"].split("/")[-1] for line in captured.out.splitlines()) == [
        "chelsea.png",
        "coffee.png",
        "rocket.png",
    ]
    for line in lines:
        assert 0 <= line["pdm_mean"] <= line["pdm_max"] <= 1 and 0 <= line["score"] <= 1
    saved = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [s["score"] for s in saved] == [line["score"] for line in lines]
    for record in saved:
        with Image.open(out / record["overlay"]) as overlay:
            assert overlay.format == "PNG" and overlay.width > 200


def test_cli_missing_model_exits_1(tmp_path, capsys):
    assert main(["score", "--model", str(tmp_path / "nope")]) == 1
    assert "nope" in capsys.readouterr().err


def test_cli_init_tiny_then_score_demo_photos(tmp_path, capsys):
    assert main(["init", "--tiny-clip", "--stage", "1", "--out", str(tmp_path / "rm")]) == 0
    card = (tmp_path / "rm" / "README.md").read_text()
    assert "stage 1" in card and "untrained" in card
    capsys.readouterr()
    assert main(["score", "--model", str(tmp_path / "rm")]) == 0
    paths = [json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()]
    assert sorted(paths) == ["skimage:astronaut", "skimage:chelsea", "skimage:coffee", "skimage:rocket"]
