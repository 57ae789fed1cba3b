"""``finpercep evaluate --generator`` on the tiny flow generator: the checkpoint is detected from its
``model_index.json`` and a LoRA run's weights change the written SR images."""

import numpy as np
import torch

from finpercep_hf.cli import main
from finpercep_hf.evaluation.generate import load_generator
from finpercep_hf.generators.flow_random_init import save_tiny_flow_sr
from finpercep_hf.generators.flow_sd3 import FlowSRGenerator
from finpercep_hf.images import load_image, pil_to_tensor, tensor_to_pil


def direct_sr(generator, lr_path) -> np.ndarray:
    image_lr = pil_to_tensor(load_image(lr_path)).unsqueeze(0)
    sample = generator.sample(image_lr, generator=torch.Generator().manual_seed(0))
    return np.asarray(tensor_to_pil(sample.images[0]))


def test_evaluate_generator_runs_a_flow_checkpoint_and_its_lora_run(skimage_photos, tmp_path):
    checkpoint = save_tiny_flow_sr(tmp_path / "tiny-flow")
    for name in ("astronaut", "coffee"):
        hr = skimage_photos[name].crop((0, 0, 64, 48))
        for kind, image in (("gt", hr), ("lr", hr.resize((16, 12)))):
            (tmp_path / kind).mkdir(exist_ok=True)
            image.save(tmp_path / kind / f"{name}.png")
    torch.manual_seed(0)
    trained = FlowSRGenerator.from_pretrained(str(checkpoint), num_inference_steps=2)
    trained.add_lora(rank=2)
    for parameter in trained.trainable_parameters():
        parameter.data.normal_(std=0.5)
    run_dir = tmp_path / "run"
    trained.save_lora_weights(run_dir)

    out = tmp_path / "out"
    args = ["evaluate", "--generator", f"flow={checkpoint}", str(run_dir), "--base-model",
            str(checkpoint), "--lr", str(tmp_path / "lr"), "--gt", str(tmp_path / "gt"), "--metrics", "psnr",
            "--num-inference-steps", "2", "--pad-multiple", "4", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    base = load_generator(checkpoint, num_inference_steps=2)
    assert isinstance(base, FlowSRGenerator)
    lr_path = tmp_path / "lr" / "coffee.png"
    written_base = np.asarray(load_image(out / "sr" / "flow" / "coffee.png"))
    written_run = np.asarray(load_image(out / "sr" / "run" / "coffee.png"))
    assert written_run.shape == (48, 64, 3)
    np.testing.assert_array_equal(written_base, direct_sr(base, lr_path))
    np.testing.assert_array_equal(written_run, direct_sr(trained, lr_path))
    assert not np.array_equal(written_run, written_base)
