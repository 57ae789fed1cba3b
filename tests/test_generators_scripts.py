"""`accelerate launch --num_processes 2 --cpu training_scripts/train_refl.py` per generator family (ControlNet SR,
one-step SR, feed-forward SR): family detected from the checkpoint, a CCL stage switch, resume from ``latest``."""

import json

import pytest
import torch
from diffusers import ControlNetModel
from safetensors.torch import load_file

from finpercep_hf.generators import FeedForwardSRGenerator
from finpercep_hf.generators.random_families import (
    build_controlnet_sr_pipeline,
    build_feed_forward_network,
    build_sd_pipeline,
)
from rl_helpers import launch


def save_family(family, directory):
    """A tiny random checkpoint of ``family`` and the flags that train it."""
    if family == "controlnet_sr":
        build_controlnet_sr_pipeline().save_pretrained(directory)
        return str(directory), ["--trainable", "controlnet", "--no_use_lora"]
    if family == "one_step":
        build_sd_pipeline().save_pretrained(directory)
        return str(directory), ["--fidelity_gt_l1", "1.0"]
    directory.mkdir()
    torch.save(build_feed_forward_network("ESRGAN").state_dict(), directory / "esrgan.pth")
    return str(directory / "esrgan.pth"), ["--no_use_lora"]


# About 65-85 s each on 2 loaded cores: the feed-forward run stays in the default suite; the two diffusion families
# are slow-marked (their trainer steps run in benchmarks/bench_refl.py --family and in the in-process tests).
FAMILIES = [
    pytest.param("controlnet_sr", marks=pytest.mark.slow),
    pytest.param("one_step", marks=pytest.mark.slow),
    "feed_forward",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_two_process_refl_per_family_switches_stage_and_resumes(
    family, make_rm, tiny_rm1_dir, skimage_photos, tmp_path
):
    checkpoint, family_flags = save_family(family, tmp_path / family)
    rm0 = tmp_path / "rm-stage0"
    make_rm(stage=0).save_pretrained(rm0)
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    for name, photo in skimage_photos.items():
        photo.save(hr_dir / f"{name}.png")
    output_dir = tmp_path / "refl"
    common = [
        "--pretrained_model_name_or_path", checkpoint, *family_flags, "--train_data_dir", str(hr_dir),
        "--resolution", "32", "--reward_schedule", f"0:{rm0},3:{tiny_rm1_dir}", "--output_dir", str(output_dir),
        "--checkpointing_steps", "2", "--checkpoints_total_limit", "1", "--validation_steps", "4",
        "--num_validation_images", "1", "--validation_inference_steps", "2", "--num_inference_steps", "2",
        "--min_stop_step", "1", "--train_batch_size", "1", "--gradient_accumulation_steps", "1",
        "--learning_rate", "1e-3", "--report_to", "none",
    ]  # fmt: skip
    launch("train_refl.py", [*common, "--max_train_steps", "2"], cwd=tmp_path)
    resumed = launch(
        "train_refl.py", [*common, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"], cwd=tmp_path
    )
    assert "checkpoint-2 at step 2" in resumed.stdout

    assert sorted(p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4"]
    callback_state = json.loads((output_dir / "checkpoint-4" / "callback_state.json").read_text())["CCLRewardCallback"]
    assert [(s["step"], s["stage"]) for s in callback_state["switches"]] == [(0, 0), (3, 1)]
    assert (output_dir / "validation" / "step-4" / "0_panel.png").is_file()
    if family == "controlnet_sr":
        ControlNetModel.from_pretrained(output_dir / "controlnet")
    elif family == "one_step":
        saved = load_file(output_dir / "pytorch_lora_weights.safetensors")
        assert any("lora_B" in key or "lora.up" in key for key in saved)
        assert any(tensor.abs().sum() > 0 for key, tensor in saved.items() if "lora_B" in key or "lora.up" in key)
    else:
        trained = FeedForwardSRGenerator.from_pretrained(output_dir / "model.safetensors")
        untouched = FeedForwardSRGenerator.from_pretrained(checkpoint)
        image_lr = torch.rand(1, 3, 8, 8)
        assert not torch.equal(trained.sample(image_lr).images, untouched.sample(image_lr).images)
