"""The convolutional encoder backend: FinPercepConfig(encoder_type="backbone") with tiny random ConvNeXt/ResNet."""

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

from finpercep_hf import FinPercepImageProcessor, FinPercepPipeline, FinPercepRewardModel
from finpercep_hf.cli import main
from finpercep_hf.curriculum import build_curriculum_model
from finpercep_hf.curriculum.growth import export_stage_model, stage_parameter_names
from finpercep_hf.models import FinPercepConfig
from finpercep_hf.models.backbone_encoder import (
    FinPercepBackboneIQAEncoder,
    small_convnext_config,
    small_resnet_config,
)

FAMILIES = {"convnext": small_convnext_config, "resnet": small_resnet_config}
# The module names the stage adapters (LoRA) wrap in each family.
ADAPTED = {"convnext": (".pwconv1.", ".pwconv2."), "resnet": (".convolution.",)}


def make_backbone_rm(
    stage: int = 0, family: str = "convnext", logit_scale_init: float = 4.0, **kwargs
) -> FinPercepRewardModel:
    torch.manual_seed(0)
    config = FinPercepConfig(
        encoder_type="backbone",
        backbone_config=FAMILIES[family]((8, 16, 24, 32), (1, 1, 1, 1)),
        projection_dim=16,
        decoder_channels=8,
        score_head_hidden=16,
        logit_scale_init=logit_scale_init,
        stage=stage,
        **kwargs,
    )
    return FinPercepRewardModel(config).eval()


def test_backbone_rm_shapes_ranges_and_pyramid():
    model = make_backbone_rm(stage=1)
    assert isinstance(model.encoder, FinPercepBackboneIQAEncoder) and model.encoder.patch_size == 32
    assert model.config.encoder_feature_channels == (8, 16, 24, 32)
    assert model(torch.rand(2, 3, 70, 90)).pdm.shape == (2, 1, 70, 90)
    out = model(torch.rand(2, 3, 96, 96), output_feature_maps=True)
    assert out.global_score.shape == (2,) and out.pdm.shape == (2, 1, 96, 96)
    assert 0 < out.global_score.min() and out.global_score.max() < 1 and 0 <= out.pdm.min() and out.pdm.max() <= 1
    # A pyramid at 1/4 .. 1/32 of the input with the configured channels.
    assert [tuple(grid.shape[1:]) for grid in out.feature_maps] == [(8, 24, 24), (16, 12, 12), (24, 6, 6), (32, 3, 3)]
    # The coupled head starts as the identity on the score (zero-initialised last layer).
    torch.testing.assert_close(out.global_score, out.base_score, atol=1e-6, rtol=0)


def test_backbone_config_validation():
    with pytest.raises(ValueError, match="four `out_features`"):
        FinPercepConfig(encoder_type="backbone")
    with pytest.raises(ValueError, match="encoder_type must be one of"):
        FinPercepConfig(encoder_type="resnet")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_backbone_rm_save_load_round_trip(tmp_path, family):
    model = make_backbone_rm(stage=1, family=family)
    pixel_values = torch.rand(2, 3, 64, 64)
    expected = model(pixel_values)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["encoder_type"] == "backbone" and saved["backbone_config"]["model_type"] == family
    loaded = FinPercepRewardModel.from_pretrained(tmp_path).eval()
    assert type(loaded.encoder) is FinPercepBackboneIQAEncoder
    got = loaded(pixel_values)
    assert torch.equal(got.global_score, expected.global_score) and torch.equal(got.pdm, expected.pdm)
    torch.testing.assert_close(loaded.encoder.prompt_embeds, model.encoder.prompt_embeds, rtol=0, atol=0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_backbone_rm_gradients_reach_pixels_and_anchors(family):
    model = make_backbone_rm(stage=1, family=family)
    pixel_values = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = model(pixel_values)
    (out.global_score.sum() + out.pdm.mean()).backward()
    assert pixel_values.grad is not None and pixel_values.grad.abs().sum() > 0
    assert model.encoder.prompt_embeds.grad.abs().sum() > 0  # the anchors are learned in RM_0 pre-training


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_backbone_growth_is_function_preserving_at_every_stage(family):
    rm0 = make_backbone_rm(stage=0, family=family)
    pixel_values = torch.rand(2, 3, 64, 96)
    expected = rm0(pixel_values).global_score
    grown = build_curriculum_model(rm0, final_stage=3, lora_ranks=[2, 4]).eval()
    adapted = [name for name in stage_parameter_names(grown, 3) if "lora_" in name]
    assert adapted and all(any(part in name for part in ADAPTED[family]) for name in adapted)
    torch.testing.assert_close(grown(pixel_values).global_score, expected, atol=1e-6, rtol=0)
    for stage in range(4):
        plain = export_stage_model(grown, stage)
        assert plain.config.stage == stage and plain.config.encoder_type == "backbone"
        torch.testing.assert_close(plain(pixel_values).global_score, expected, atol=1e-6, rtol=0)
    # After the adapters change, the exported RM_3 (merged adapters) still equals the curriculum model.
    with torch.no_grad():
        for name, parameter in grown.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    torch.testing.assert_close(
        export_stage_model(grown, 3)(pixel_values).pdm, grown(pixel_values).pdm, atol=1e-5, rtol=0
    )


def test_backbone_rm_in_pipeline_and_cli_score(tmp_path, skimage_photos, capsys):
    model_dir = tmp_path / "rm"
    make_backbone_rm(stage=1).save_pretrained(model_dir)
    FinPercepImageProcessor().save_pretrained(model_dir)
    pipe = pipeline("fine-grained-iqa", model=str(model_dir))
    assert isinstance(pipe, FinPercepPipeline)
    image = skimage_photos["coffee"].crop((0, 0, 131, 97))
    [result] = pipe([image])
    assert 0 <= result["score"] <= 1 and result["pdm"].shape == (97, 131) and result["pdm"].dtype == np.float32
    images = tmp_path / "images"
    images.mkdir()
    skimage_photos["chelsea"].save(images / "chelsea.png")
    code = main(["score", "--images", str(images), "--model", str(model_dir), "--out", str(tmp_path / "out")])
    assert code == 0
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 0 <= line["pdm_mean"] <= line["pdm_max"] <= 1 and 0 <= line["score"] <= 1


def test_frozen_batchnorm_keeps_its_running_statistics_in_train_mode():
    # Stage >= 1 freezes the encoder: a ResNet's BatchNorms must not drift with the batches of later stages.
    grown = build_curriculum_model(make_backbone_rm(stage=0, family="resnet"), final_stage=3, lora_ranks=[2, 4])
    norms = [module for module in grown.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    before = [norm.running_mean.clone() for norm in norms]
    grown.train()
    grown(torch.rand(2, 3, 64, 64))
    assert norms and not any(norm.training for norm in norms)
    assert all(torch.equal(norm.running_mean, mean) for norm, mean in zip(norms, before))
    trainable = make_backbone_rm(stage=0, family="resnet").train()
    assert all(module.training for module in trainable.modules() if isinstance(module, torch.nn.BatchNorm2d))


def test_decoder_pixel_branch_full_resolution_round_trip_gradients_and_growth(tmp_path):
    plain, branched = make_backbone_rm(stage=1), make_backbone_rm(stage=1, decoder_pixel_channels=4)
    pixel_values = torch.rand(2, 3, 64, 96, requires_grad=True)
    features = branched.encoder(pixel_values)[2]
    pixels = branched.encoder.normalize_pixels(pixel_values)
    # The plain decoder stops at 1/4 of the input; the pixel branch brings the logits to the input's size.
    assert plain.decoder(features).shape == (2, 1, 16, 24)
    assert branched.decoder(features, pixels).shape == (2, 1, 64, 96)
    with pytest.raises(ValueError, match="pixel branch"):
        branched.decoder(features)
    out = branched(pixel_values)
    assert out.pdm.shape == (2, 1, 64, 96) and 0 <= out.pdm.min() and out.pdm.max() <= 1
    out.pdm.mean().backward()
    stem = branched.decoder.pixel_fusion.stem[0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0 and pixel_values.grad.abs().sum() > 0
    branched.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["decoder_pixel_channels"] == 4
    loaded = FinPercepRewardModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(pixel_values.detach()).pdm, branched(pixel_values.detach()).pdm)
    # Growth from an RM_0 with the branch keeps RM_0's score at every stage and carries the branch to RM_3.
    rm0 = make_backbone_rm(stage=0, decoder_pixel_channels=4)
    expected = rm0(pixel_values.detach()).global_score
    grown = build_curriculum_model(rm0, final_stage=3, lora_ranks=[2, 4]).eval()
    assert "decoder.pixel_fusion.stem.0.weight" in stage_parameter_names(grown, 1)
    for stage in range(4):
        exported = export_stage_model(grown, stage)
        torch.testing.assert_close(exported(pixel_values.detach()).global_score, expected, atol=1e-6, rtol=0)
    assert export_stage_model(grown, 3).decoder.pixel_fusion is not None


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_decoder_pixel_channels_validation(value):
    with pytest.raises(ValueError, match="decoder_pixel_channels"):
        FinPercepConfig(decoder_pixel_channels=value)
