"""``finpercep evaluate`` and its engine on real skimage photos: pairing, per-image and mean scores, the
paper-layout outputs, merged tables and the promised errors."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from finpercep_hf.cli import main
from finpercep_hf.evaluation.suite import pair_images
from finpercep_hf.images import FinPercepImageError, load_image, pil_to_tensor
from finpercep_hf.models import FinPercepRewardModel


@pytest.fixture
def sr_gt_dirs(skimage_photos, tmp_path):
    """gt/<name>.png, blur/<name>.png (Gaussian blur) and noise/<name>.jpg (JPEG quality 30)."""
    for name, photo in list(skimage_photos.items())[:3]:
        photo = photo.crop((0, 0, 64, 48))
        for directory in ("gt", "blur", "noise"):
            (tmp_path / directory).mkdir(exist_ok=True)
        photo.save(tmp_path / "gt" / f"{name}.png")
        photo.filter(ImageFilter.GaussianBlur(2)).save(tmp_path / "blur" / f"{name}.png")
        photo.save(tmp_path / "noise" / f"{name}.jpg", quality=30)
    return tmp_path


def numpy_psnr(path_sr, path_gt):
    sr = np.asarray(load_image(path_sr), dtype=np.float64) / 255
    gt = np.asarray(load_image(path_gt), dtype=np.float64) / 255
    return 10 * np.log10(1 / np.mean((sr - gt) ** 2))


def test_pair_images_matches_by_relative_name_across_extensions(sr_gt_dirs):
    pairs = pair_images(sr_gt_dirs / "noise", sr_gt_dirs / "gt")
    assert [pair.key for pair in pairs] == ["astronaut", "chelsea", "coffee"]
    assert all(pair.image_sr.suffix == ".jpg" and pair.image_gt.suffix == ".png" for pair in pairs)
    assert [pair.image_gt for pair in pair_images(sr_gt_dirs / "blur")] == [None] * 3
    (sr_gt_dirs / "blur" / "extra.png").write_bytes((sr_gt_dirs / "gt" / "coffee.png").read_bytes())
    with pytest.raises(FinPercepImageError, match="SR images with no GT image of the same name .*: extra"):
        pair_images(sr_gt_dirs / "blur", sr_gt_dirs / "gt")
    with pytest.raises(FinPercepImageError, match="GT images with no SR output .*: extra"):
        pair_images(sr_gt_dirs / "gt", sr_gt_dirs / "blur")


def test_evaluate_writes_paper_layout_with_runs_side_by_side(sr_gt_dirs, tiny_rm1_dir, capsys):
    out = sr_gt_dirs / "out"
    code = main(
        ["evaluate", "--sr", f"w/ blur={sr_gt_dirs / 'blur'}", "--sr", str(sr_gt_dirs / "noise"),
         "--gt", str(sr_gt_dirs / "gt"), "--dataset", "skimage", "--metrics", "psnr,ssim,finpercep",
         "--rm", str(tiny_rm1_dir), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    with (out / "per_image.csv").open() as handle:
        per_image = list(csv.DictReader(handle))
    assert [(row["run"], row["image"]) for row in per_image] == [
        (run, name) for run in ("w/ blur", "noise") for name in ("astronaut", "chelsea", "coffee")
    ]
    for row in per_image:
        directory, suffix = ("blur", ".png") if row["run"] == "w/ blur" else ("noise", ".jpg")
        expected = numpy_psnr(
            sr_gt_dirs / directory / f"{row['image']}{suffix}", sr_gt_dirs / "gt" / f"{row['image']}.png"
        )
        assert float(row["psnr"]) == pytest.approx(expected, abs=1e-3)
    torch.manual_seed(0)
    model = FinPercepRewardModel.from_pretrained(tiny_rm1_dir).eval()
    with torch.no_grad():
        expected_rm = model(pil_to_tensor(load_image(sr_gt_dirs / "noise" / "coffee.jpg"))[None]).global_score.item()
    assert float(per_image[-1]["finpercep"]) == pytest.approx(expected_rm, abs=1e-5)

    with (out / "metrics.csv").open() as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["dataset", "metric", "w/ blur", "noise"]
    assert [row[:2] for row in table[1:]] == [["skimage", "psnr"], ["skimage", "ssim"], ["skimage", "finpercep"]]
    psnr_means = [np.mean([float(r["psnr"]) for r in per_image if r["run"] == run]) for run in ("w/ blur", "noise")]
    assert [float(value) for value in table[1][2:]] == pytest.approx(psnr_means)
    markdown = (out / "table.md").read_text().splitlines()
    assert markdown[0] == "| Datasets | Metrics | w/ blur | noise |"
    best = int(np.argmax(psnr_means))
    psnr_cells = markdown[2].split(" | ")[2:]
    assert markdown[2].startswith("| skimage | PSNR ↑ |")
    assert psnr_cells[best].strip(" |").startswith("**") and not psnr_cells[1 - best].startswith("**")
    assert "| Datasets | Metrics |" in capsys.readouterr().out


def test_include_merges_tables_of_earlier_calls(sr_gt_dirs):
    first, second = sr_gt_dirs / "first", sr_gt_dirs / "second"
    common = ["--sr", f"ours={sr_gt_dirs / 'blur'}", "--gt", str(sr_gt_dirs / "gt"), "--metrics", "psnr"]
    assert main(["evaluate", *common, "--dataset", "SetA", "--out", str(first)]) == 0
    args = ["evaluate", *common, "--dataset", "SetB", "--include", str(first / "metrics.csv"), "--out", str(second)]
    assert main(args) == 0
    lines = (second / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| SetA", "| SetB"]


def test_evaluate_reports_bad_input_and_missing_weights(sr_gt_dirs, capsys):
    sr, gt = str(sr_gt_dirs / "blur"), str(sr_gt_dirs / "gt")
    out = str(sr_gt_dirs / "out")
    assert main(["evaluate", "--sr", sr, "--metrics", "psnr", "--out", out]) == 2
    assert "full-reference metrics psnr need GT images" in capsys.readouterr().err
    assert main(["evaluate", "--sr", sr, "--gt", gt, "--metrics", "fid", "--out", out]) == 2
    assert "unknown metric 'fid'" in capsys.readouterr().err
    weights = sr_gt_dirs / "empty-weights"
    assert main(["evaluate", "--sr", sr, "--gt", gt, "--weights_dir", str(weights), "--out", out]) == 1
    missing = capsys.readouterr().err
    assert f"{weights}/pyiqa/LPIPS_v0.1_alex-df73285e.pth" in missing and f"{weights}/clip/ViT-B-32.pt" in missing
    Image.open(sr_gt_dirs / "gt" / "coffee.png").resize((32, 24)).save(sr_gt_dirs / "blur" / "coffee.png")
    assert main(["evaluate", "--sr", sr, "--gt", gt, "--metrics", "ssim", "--out", out]) == 2
    assert "coffee.png is 32x24 but its GT image" in capsys.readouterr().err


def test_crop_border_shaves_psnr_and_ssim_only(sr_gt_dirs, tiny_rm1_dir, capsys):
    """--crop-border 4: PSNR/SSIM on the image without its 4-pixel frame, the RM score on the whole image."""
    common = ["evaluate", "--sr", str(sr_gt_dirs / "noise"), "--gt", str(sr_gt_dirs / "gt"),
              "--metrics", "psnr,ssim,finpercep", "--rm", str(tiny_rm1_dir)]  # fmt: skip
    rows = {}
    for border in (0, 4):
        out = sr_gt_dirs / f"border-{border}"
        assert main([*common, "--crop-border", str(border), "--out", str(out)]) == 0
        with (out / "per_image.csv").open() as handle:
            rows[border] = list(csv.DictReader(handle))
    for whole, cropped in zip(rows[0], rows[4]):
        sr = np.asarray(load_image(sr_gt_dirs / "noise" / f"{whole['image']}.jpg"), dtype=np.float64)[4:-4, 4:-4]
        gt = np.asarray(load_image(sr_gt_dirs / "gt" / f"{whole['image']}.png"), dtype=np.float64)[4:-4, 4:-4]
        expected = 10 * np.log10(1 / np.mean((sr / 255 - gt / 255) ** 2))
        assert float(cropped["psnr"]) == pytest.approx(expected, abs=1e-3)
        assert float(cropped["psnr"]) != pytest.approx(float(whole["psnr"]), abs=1e-3)
        assert float(cropped["ssim"]) != pytest.approx(float(whole["ssim"]), abs=1e-5)
        assert float(cropped["finpercep"]) == pytest.approx(float(whole["finpercep"]), abs=1e-6)
    capsys.readouterr()
    assert main([*common, "--crop-border", "24", "--out", str(sr_gt_dirs / "too-much")]) == 2
    assert "crop_border 24 leaves nothing of" in capsys.readouterr().err
