"""Every bad config value is a ValueError naming the field and the allowed range, raised at construction."""

import pytest

from finpercep_hf.data import FinPercepTripletCollator
from finpercep_hf.models import FinPercepConfig
from finpercep_hf.trainers import DiffusionDPOConfig, DiffusionGRPOConfig, FinPercepTrainingArguments, REFLConfig

TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(stage=99), r"stage must be in \[0, decoder_refine_blocks \+ 1 = 1\].*got 99"),
        (dict(stage=3, decoder_refine_blocks=1), r"stage must be in \[0, decoder_refine_blocks \+ 1 = 2\]"),
        (dict(stage=-1), r"stage must be in \[0"),
        (dict(stage="1"), r"stage must be an integer, got '1' \(str\)"),
        (dict(projection_dim=-1), r"projection_dim must be >= 1, got -1"),
        (dict(initializer_range=-1), r"initializer_range must be a finite number > 0, got -1"),
        (dict(decoder_refine_blocks=-2), r"decoder_refine_blocks must be >= 0"),
    ],
)
def test_finpercep_config_rejects_bad_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        FinPercepConfig(vision_config=TINY_VISION, **overrides)


def test_finpercep_config_accepts_each_stage_with_its_refinement_blocks():
    for stage in range(4):
        config = FinPercepConfig(vision_config=TINY_VISION, stage=stage, decoder_refine_blocks=max(stage - 1, 0))
        assert config.stage == stage


def test_from_clip_rejects_a_stage_without_its_blocks(tiny_clip_dir):
    from finpercep_hf import FinPercepRewardModel

    with pytest.raises(ValueError, match=r"stage must be in \[0, decoder_refine_blocks \+ 1 = 1\].*got 7"):
        FinPercepRewardModel.from_clip(str(tiny_clip_dir), stage=7)


def rm_args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path), ccl_schedule="0:0,0:1,2:2", max_steps=4, report_to=[], use_cpu=True)
    return FinPercepTrainingArguments(**{**values, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(crop_size=0), r"crop_size must be an integer >= 16 \(pixels\), got 0"),
        (dict(crop_size=-64), r"crop_size must be an integer >= 16"),
        (dict(lambda_map=-1.0), r"lambda_map must be a finite number >= 0, got -1"),
        (dict(margin_sr=-1.0), r"margin_sr must be a finite number >= 0, got -1"),
        (dict(lora_ranks="0"), r"lora_ranks must all be >= 1, got \[0\]"),
        (dict(lora_ranks="-4"), r"lora_ranks must all be >= 1, got \[-4\]"),
        (dict(ccl_schedule="0:0,5:1,2:2"), r"ccl_schedule '0:0,5:1,2:2': stage start steps must not decrease"),
        (dict(max_steps=1), r"max_steps must be >= 1 and >= the last ccl_schedule start, got 1"),
        (dict(ccl_schedule="0:0,0:2"), r"ccl_schedule stages must be consecutive, start at 0 or 1 and reach 1"),
        (dict(ccl_schedule="0:0,3:1,5:2"), r"ccl_schedule: stage 0 \(CLIP-IQA\) takes no training steps"),
        (dict(learning_rate=-1.0), r"learning_rate must be a finite number > 0, got -1"),
        (dict(ccl_schedule="0:0,0:a,2:2"), r"ccl_schedule '0:0,0:a,2:2': bad schedule entry '0:a': expected START"),
    ],
)
def test_rm_training_arguments_reject_bad_fields(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        rm_args(tmp_path, **overrides)


@pytest.mark.parametrize("config_class", [REFLConfig, DiffusionDPOConfig, DiffusionGRPOConfig])
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(learning_rate=-1), r"learning_rate must be a finite number > 0, got -1"),
        (dict(learning_rate=float("nan")), r"learning_rate must be a finite number > 0"),
        (dict(adam_beta1=1.0), r"adam_beta1 must be in \[0, 1\)"),
        (dict(max_grad_norm=0), r"max_grad_norm must be > 0"),
        (dict(lr_warmup_steps=-1), r"lr_warmup_steps must be >= 0"),
        (dict(lora_alpha=0), r"lora_alpha must be > 0 or None"),
        (dict(rank=0), r"rank must be >= 1"),
        (dict(num_inference_steps=0), r"num_inference_steps must be >= 1"),
    ],
)
def test_generator_configs_reject_bad_fields(config_class, overrides, message):
    with pytest.raises(ValueError, match=message):
        config_class(**overrides)


def test_triplet_collator_rejects_bad_fields():
    with pytest.raises(ValueError, match=r"crop_size must be >= 1 or None, got 0"):
        FinPercepTripletCollator(crop_size=0)
    with pytest.raises(ValueError, match=r"scale_range must satisfy 0 < low <= high <= 1"):
        FinPercepTripletCollator(scale_range=(0.9, 0.5))
