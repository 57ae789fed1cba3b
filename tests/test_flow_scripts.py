"""The three training scripts on the tiny flow generator under ``accelerate launch --num_processes 2 --cpu``: a CCL
stage switch, a checkpoint, a resume from ``latest``, and a LoRA that the SD3 pipeline loads."""

import pytest
import torch
from diffusers import StableDiffusion3Pipeline
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from finpercep_hf.generators.flow_random_init import TEXT_COMPONENTS, save_tiny_flow_sr
from finpercep_hf.generators.flow_sd3 import PROMPT_EMBEDS_FILE
from finpercep_hf.generators.prompt_embeds import load_prompt_embeddings
from finpercep_hf.generators.sd3_lr_stream import SD3LRStreamTransformer2DModel
from rl_helpers import launch

SCRIPT_OPTIONS = {
    "train_refl.py": ["--min_stop_step", "1"],
    "train_dpo.py": ["--num_samples_per_image", "2"],
    "train_grpo.py": ["--num_samples_per_image", "2", "--eta", "0.7", "--timestep_fraction", "0.5"],
}


def scalars(log_dir) -> dict[str, list]:
    found = {}
    for events in log_dir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return found


@pytest.mark.parametrize(
    "script",
    [
        "train_refl.py",
        pytest.param("train_dpo.py", marks=pytest.mark.slow),
        pytest.param("train_grpo.py", marks=pytest.mark.slow),
    ],
)
def test_flow_script_switches_stage_checkpoints_resumes_and_saves_sd3_lora(
    script, make_rm, tiny_rm1_dir, skimage_photos, tmp_path
):
    checkpoint = save_tiny_flow_sr(tmp_path / "tiny-flow")
    rm0 = tmp_path / "rm-stage0"
    make_rm(stage=0).save_pretrained(rm0)
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    for name in ("astronaut", "coffee"):
        skimage_photos[name].save(hr_dir / f"{name}.png")
    output_dir = tmp_path / "run"
    common = ["--pretrained_model_name_or_path", str(checkpoint),
              "--train_data_dir", str(hr_dir), "--resolution", "32", "--reward_schedule", f"0:{rm0},3:{tiny_rm1_dir}",
              "--use_lora", "--rank", "4", "--output_dir", str(output_dir), "--checkpointing_steps", "2",
              "--validation_steps", "4", "--num_validation_images", "1", "--validation_inference_steps", "2",
              "--num_inference_steps", "2", "--train_batch_size", "1", "--learning_rate", "1e-3",
              "--report_to", "tensorboard", *SCRIPT_OPTIONS[script]]  # fmt: skip
    launch(script, [*common, "--max_train_steps", "2"], cwd=tmp_path)
    assert (output_dir / "checkpoint-2" / "pytorch_lora_weights.safetensors").is_file()
    resumed = launch(script, [*common, "--max_train_steps", "4", "--resume_from_checkpoint", "latest"], cwd=tmp_path)
    assert "checkpoint-2 at step 2" in resumed.stdout + resumed.stderr

    logged = scalars(output_dir / "logs")
    assert sorted(step for step, _ in logged["train/loss"]) == [1, 2, 3, 4]
    assert [(step, value) for step, value in logged["curriculum/stage"] if value == 1.0] == [(3, 1.0)]
    assert [step for step, _ in logged["validation/hacking_gap"]] == [4]
    assert any((output_dir / "validation" / "step-4").iterdir())
    saved = load_file(output_dir / "pytorch_lora_weights.safetensors")
    lora_b = [tensor for key, tensor in saved.items() if key.startswith("transformer.") and "lora_B" in key]
    assert lora_b and any(tensor.abs().sum() > 0 for tensor in lora_b)
    # the stock SD3 pipeline loads the LoRA (diffusers' format) into the LR-stream transformer
    transformer = SD3LRStreamTransformer2DModel.from_pretrained(checkpoint, subfolder="transformer")
    pipeline = StableDiffusion3Pipeline.from_pretrained(
        checkpoint, transformer=transformer, **dict.fromkeys(TEXT_COMPONENTS)
    )
    prompt_embeds, pooled = load_prompt_embeddings(checkpoint / PROMPT_EMBEDS_FILE)
    call = dict(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, height=32, width=32, guidance_scale=1.0)
    call.update(num_inference_steps=2, output_type="latent")
    before = pipeline(**call, generator=torch.Generator().manual_seed(0)).images
    pipeline.load_lora_weights(str(output_dir))
    after = pipeline(**call, generator=torch.Generator().manual_seed(0)).images
    assert (after - before).abs().max() > 0
