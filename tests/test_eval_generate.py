"""``finpercep evaluate --generator``: a tiny random SD-x4 upscaler (pipeline and LoRA training run) super-resolves
real skimage photos, and the outputs are evaluated against their ground-truth images."""

import csv

import numpy as np
import pytest
import torch

from finpercep_hf.cli import main
from finpercep_hf.evaluation.generate import generate_sr_directory, load_generator
from finpercep_hf.generators import SDUpscalerGenerator, save_tiny_sd_upscaler
from finpercep_hf.images import load_image, pil_to_tensor, tensor_to_pil

STEPS = 2


@pytest.fixture(scope="module")
def tiny_upscaler(tmp_path_factory):
    return save_tiny_sd_upscaler(tmp_path_factory.mktemp("tiny-sd-x4"))


@pytest.fixture
def lr_gt_dirs(skimage_photos, tmp_path):
    for name in ("astronaut", "coffee"):
        hr = skimage_photos[name].crop((0, 0, 64, 48))
        (tmp_path / "gt").mkdir(exist_ok=True)
        (tmp_path / "lr").mkdir(exist_ok=True)
        hr.save(tmp_path / "gt" / f"{name}.png")
        hr.resize((16, 12)).save(tmp_path / "lr" / f"{name}.png")
    return tmp_path


def direct_sr(generator, lr_path) -> np.ndarray:
    """SR of one LR image whose sides are multiples of 4 (so evaluate --pad-multiple 4 does not pad it)."""
    image_lr = pil_to_tensor(load_image(lr_path)).unsqueeze(0)
    sample = generator.sample(image_lr, generator=torch.Generator().manual_seed(0))
    return np.asarray(tensor_to_pil(sample.images[0]))


def evaluate_generator_args(generator: str, lr_gt_dirs, out) -> list[str]:
    """``finpercep evaluate`` arguments: super-resolve ``lr/`` with ``generator``, score PSNR against ``hr/``."""
    return ["evaluate", "--generator", generator, "--lr", str(lr_gt_dirs / "lr"), "--gt", str(lr_gt_dirs / "gt"),
            "--metrics", "psnr", "--num-inference-steps", str(STEPS), "--pad-multiple", "4",
            "--out", str(out)]  # fmt: skip


def test_generator_outputs_are_written_and_evaluated(tiny_upscaler, lr_gt_dirs):
    out = lr_gt_dirs / "out"
    args = evaluate_generator_args(f"x4={tiny_upscaler}", lr_gt_dirs, out)
    assert main(args) == 0
    generator = SDUpscalerGenerator.from_pretrained(str(tiny_upscaler), num_inference_steps=STEPS)
    with (out / "per_image.csv").open() as handle:
        rows = {row["image"]: row for row in csv.DictReader(handle)}
    for name in ("astronaut", "coffee"):
        written = np.asarray(load_image(out / "sr" / "x4" / f"{name}.png"))
        assert written.shape == (48, 64, 3)
        np.testing.assert_array_equal(written, direct_sr(generator, lr_gt_dirs / "lr" / f"{name}.png"))
        gt = np.asarray(load_image(lr_gt_dirs / "gt" / f"{name}.png"), dtype=np.float64) / 255
        expected = 10 * np.log10(1 / np.mean((written / 255 - gt) ** 2))
        assert float(rows[name]["psnr"]) == pytest.approx(expected, abs=1e-3)
    assert (out / "table.md").read_text().splitlines()[0] == "| Datasets | Metrics | x4 |"


def test_lora_run_needs_its_base_model_and_changes_the_outputs(tiny_upscaler, lr_gt_dirs, capsys):
    torch.manual_seed(0)
    trained = SDUpscalerGenerator.from_pretrained(str(tiny_upscaler), num_inference_steps=STEPS)
    trained.add_lora(rank=2)
    for parameter in trained.trainable_parameters():
        parameter.data.normal_(std=0.5)
    run_dir = lr_gt_dirs / "run"
    trained.save_lora_weights(run_dir)

    out = lr_gt_dirs / "out"
    common = evaluate_generator_args(str(run_dir), lr_gt_dirs, out)
    assert main(common) == 1
    assert "names no base pipeline: pass --base-model" in capsys.readouterr().err
    assert main([*common, "--base-model", str(tiny_upscaler)]) == 0
    written = np.asarray(load_image(out / "sr" / "run" / "coffee.png"))
    np.testing.assert_array_equal(written, direct_sr(trained, lr_gt_dirs / "lr" / "coffee.png"))
    base = load_generator(tiny_upscaler, num_inference_steps=STEPS)
    assert not np.array_equal(written, direct_sr(base, lr_gt_dirs / "lr" / "coffee.png"))


def test_odd_sized_lr_images_are_padded_and_cropped_back(tiny_upscaler, skimage_photos, tmp_path):
    (tmp_path / "lr").mkdir()
    skimage_photos["rocket"].crop((0, 0, 60, 44)).resize((15, 11)).save(tmp_path / "lr" / "rocket.png")
    generator = load_generator(tiny_upscaler, num_inference_steps=STEPS)
    generate_sr_directory(generator, tmp_path / "lr", tmp_path / "sr", pad_multiple=8, progress=False)
    image_sr = load_image(tmp_path / "sr" / "rocket.png")
    assert image_sr.size == (60, 44)
    padded = torch.nn.functional.pad(
        pil_to_tensor(load_image(tmp_path / "lr" / "rocket.png"))[None], (0, 1, 0, 5), mode="replicate"
    )
    full = generator.sample(padded, generator=torch.Generator().manual_seed(0)).images[0]
    np.testing.assert_array_equal(np.asarray(image_sr), np.asarray(tensor_to_pil(full[:, :44, :60])))


def test_generator_mode_needs_lr(tiny_upscaler, lr_gt_dirs, capsys):
    assert main(["evaluate", "--generator", str(tiny_upscaler), "--out", str(lr_gt_dirs / "out")]) == 2
    assert "--generator needs --lr DIR" in capsys.readouterr().err
    assert main(["evaluate", "--out", str(lr_gt_dirs / "out")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
