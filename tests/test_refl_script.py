"""`accelerate launch --num_processes 2 --cpu training_scripts/train_refl.py`: train, checkpoint, resume, load LoRA."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionUpscalePipeline
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import HfArgumentParser

from finpercep_hf.generators import save_tiny_sd_upscaler
from finpercep_hf.scripting.generator_training import SKIMAGE_PHOTOS, GeneratorScriptArguments, build_lr_hr_datasets
from rl_helpers import SCRIPTS, launch


def tensorboard_tags(log_dir: Path) -> dict[str, list]:
    tags = {"scalars": {}, "images": set()}
    for events in log_dir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            tags["scalars"].setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
        tags["images"].update(accumulator.Tags()["images"])
    return tags


def test_two_process_run_checkpoints_resumes_and_writes_loadable_lora(make_rm, tiny_rm1_dir, skimage_photos, tmp_path):
    upscaler = save_tiny_sd_upscaler(tmp_path / "tiny-upscaler")
    rm0 = tmp_path / "rm-stage0"
    make_rm(stage=0).save_pretrained(rm0)
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    for name, photo in skimage_photos.items():
        photo.save(hr_dir / f"{name}.png")
    output_dir = tmp_path / "refl"
    common = [
        "--pretrained_model_name_or_path", str(upscaler), "--train_data_dir", str(hr_dir), "--resolution", "32",
        "--reward_schedule", f"0:{rm0},3:{tiny_rm1_dir}", "--reward", "finpercep", "--use_lora", "--rank", "4",
        "--output_dir", str(output_dir), "--checkpointing_steps", "2", "--checkpoints_total_limit", "1",
        "--validation_steps", "2", "--num_validation_images", "2", "--validation_inference_steps", "2",
        "--num_inference_steps", "2", "--min_stop_step", "1", "--train_batch_size", "1",
        "--gradient_accumulation_steps", "1", "--learning_rate", "1e-2", "--report_to", "tensorboard",
    ]  # fmt: skip

    launch("train_refl.py", [*common, "--max_train_steps", "2"], cwd=tmp_path)
    assert (output_dir / "checkpoint-2" / "pytorch_lora_weights.safetensors").is_file()
    assert not (output_dir / "checkpoint-2" / "model.safetensors").exists()  # LoRA only, not the frozen UNet
    resume = ["--max_train_steps", "4", "--resume_from_checkpoint", "latest"]
    resumed = launch("train_refl.py", [*common, *resume], cwd=tmp_path)
    assert "Resumed from" in resumed.stdout + resumed.stderr and "checkpoint-2 at step 2" in resumed.stdout

    # Checkpoints: atomic (no .tmp left), pruned to the limit, with the trainer and curriculum state.
    assert sorted(p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4"]
    callback_state = json.loads((output_dir / "checkpoint-4" / "callback_state.json").read_text())["CCLRewardCallback"]
    assert [(s["step"], s["stage"]) for s in callback_state["switches"]] == [(0, 0), (3, 1)]

    # Validation image logs: panels at every validation, PDM heatmaps once RM_1 (with a map) rewards.
    assert {p.name for p in (output_dir / "validation" / "step-2").iterdir()} == {"0_panel.png", "1_panel.png"}
    assert {"0_pdm.png", "1_pdm.png"} <= {p.name for p in (output_dir / "validation" / "step-4").iterdir()}
    tags = tensorboard_tags(output_dir / "logs")
    assert {"validation/panels", "validation/pdm"} <= tags["images"]
    assert sorted(step for step, _ in tags["scalars"]["validation/hacking_gap"]) == [2, 4]
    assert sorted(step for step, _ in tags["scalars"]["train/loss"]) == [1, 2, 3, 4]
    assert [(step, value) for step, value in tags["scalars"]["curriculum/stage"] if value == 1.0] == [(3, 1.0)]
    card = (output_dir / "README.md").read_text()
    assert "refl" in card and str(tiny_rm1_dir) in card and "hacking_gap" in card
    assert "- lora" in card and "REFL LoRA" in card and "load_lora_weights" in card

    # The final LoRA loads into the diffusers pipeline and changes its UNet.
    saved = load_file(output_dir / "pytorch_lora_weights.safetensors")
    assert saved and any("lora" in key and tensor.abs().sum() > 0 for key, tensor in saved.items())
    pipeline = StableDiffusionUpscalePipeline.from_pretrained(str(upscaler))
    torch.manual_seed(0)
    sample = torch.randn(1, 7, 8, 8)
    embeds = torch.randn(1, 77, pipeline.unet.config.cross_attention_dim)
    labels = torch.tensor([20])
    with torch.no_grad():
        base = pipeline.unet(sample, 500, encoder_hidden_states=embeds, class_labels=labels).sample
        pipeline.load_lora_weights(str(output_dir))
        tuned = pipeline.unet(sample, 500, encoder_hidden_states=embeds, class_labels=labels).sample
    assert not torch.allclose(base, tuned)


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--dataset", "x", "--train_data_dir", "y"], "--train_data_dir or --dataset, not both"),
        (["--degradation", "sinc"], "--degradation must be one of"),
        (["--resolution", "30"], "--resolution must be a positive multiple of 4"),
    ],
)
def test_script_arguments_reject_bad_data_flags(flag, message):
    parser = HfArgumentParser(GeneratorScriptArguments)
    with pytest.raises(ValueError, match=message):
        parser.parse_args_into_dataclasses(["--pretrained_model_name_or_path", "p", "--reward_schedule", "0:r", *flag])


@pytest.mark.parametrize(
    "script, flags, message",
    [
        ("train_refl.py", ["--reward_schedule", "zero:rm"], "bad schedule entry 'zero:rm'"),
        ("train_refl.py", ["--reward_schedule", "0:rm", "--mixed_precision", "fp8"], "mixed_precision must be"),
        ("train_grpo.py", ["--reward_schedule", "0:rm", "--dataset", "a", "--train_data_dir", "b"], "not both"),
        ("train_dpo.py", ["--reward_schedule", "0:rm", "--dataset", "/nonexistent-fgr", "--preference_source",
                          "offline"], "/nonexistent-fgr"),
    ],
)  # fmt: skip
def test_scripts_answer_bad_values_with_one_line_and_exit_2(script, flags, message, tmp_path):
    """A bad value is one ``error:`` line on stderr and exit code 2, before any model loads (the generator path
    does not exist: loading it would fail differently)."""
    command = [sys.executable, str(SCRIPTS / script), "--pretrained_model_name_or_path", str(tmp_path / "no"), *flags]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr


def test_script_data_sources_dataset_and_skimage_fallback(skimage_photos, tmp_path):
    from datasets import Dataset, Features, Image, Value

    features = Features({"image_gt": Image(), "name": Value("string")})
    table = Dataset.from_dict(
        {"image_gt": list(skimage_photos.values()), "name": list(skimage_photos)}, features=features
    )
    table.save_to_disk(tmp_path / "fgr")
    base = ["--pretrained_model_name_or_path", "p", "--reward_schedule", "0:r", "--resolution", "64"]
    parser = HfArgumentParser(GeneratorScriptArguments)
    (script_args,) = parser.parse_args_into_dataclasses([*base, "--dataset", str(tmp_path / "fgr")])
    train, evaluation = build_lr_hr_datasets(script_args)
    assert len(train) == len(evaluation) == 4 and train.random_crop and not evaluation.random_crop
    assert evaluation[0]["image_gt"].shape == (3, 64, 64) and evaluation[0]["image_lr"].shape == (3, 16, 16)
    (script_args,) = parser.parse_args_into_dataclasses(
        [*base, "--dataset", str(tmp_path / "fgr"), "--image_column", "image_hq"]
    )
    with pytest.raises(ValueError, match="no column 'image_hq'"):
        build_lr_hr_datasets(script_args)
    (script_args,) = parser.parse_args_into_dataclasses(base)
    train, bicubic = build_lr_hr_datasets(script_args)
    assert len(train) == len(SKIMAGE_PHOTOS)
    (script_args,) = parser.parse_args_into_dataclasses([*base, "--degradation", "realesrgan"])
    _, degraded = build_lr_hr_datasets(script_args)
    torch.testing.assert_close(degraded[0]["image_gt"], bicubic[0]["image_gt"])
    assert degraded[0]["image_lr"].shape == (3, 16, 16)
    assert not torch.allclose(degraded[0]["image_lr"], bicubic[0]["image_lr"])
