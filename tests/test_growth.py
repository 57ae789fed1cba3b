"""Unit tests of the curriculum's progressive expansion (curriculum/growth.py), fast enough for mutation testing."""

import warnings

import pytest
import torch

from finpercep_hf.curriculum.growth import (
    active_parameter_names,
    adapter_name,
    build_curriculum_model,
    drop_inactive_gradients,
    export_stage_model,
    loss_weight_scale,
    stage_parameter_names,
)


@pytest.fixture
def grown(make_rm):
    """The final-size curriculum model of stages 1..3 (ranks 2 and 4), grown from a tiny RM_0."""
    torch.manual_seed(0)
    return build_curriculum_model(make_rm(stage=0), 3, [2, 4])


def lora_names(model, stage):
    return {name for name, _ in model.named_parameters() if "lora_" in name and f".stage{stage}." in name}


def test_adapter_names_and_loss_weight_ramp():
    assert adapter_name(3) == "stage3"
    assert loss_weight_scale(2, 1, 4, "weight") == pytest.approx(2 / 4)
    assert loss_weight_scale(1, 1, 4, "weight") == pytest.approx(1 / 4)
    assert loss_weight_scale(4, 1, 4, "weight") == 1.0
    assert loss_weight_scale(1, 1, 4, "param") == 1.0
    assert loss_weight_scale(1, 1, 4, "none") == 1.0
    assert loss_weight_scale(2, 2, 2, "weight") == 1.0  # a single stage: no ramp


def test_build_rejects_bad_stages_ranks_and_grown_inputs(make_rm, grown):
    rm0 = make_rm(stage=0)
    with pytest.raises(ValueError, match="final_stage must be >= 1"):
        build_curriculum_model(rm0, 0, [])
    with pytest.raises(ValueError, match="one positive LoRA rank"):
        build_curriculum_model(rm0, 3, [2])
    with pytest.raises(ValueError, match="one positive LoRA rank"):
        build_curriculum_model(rm0, 3, [2, 0])
    with pytest.raises(ValueError, match="RM_0 or RM_1"):
        build_curriculum_model(grown, 3, [2, 4])
    assert build_curriculum_model(rm0, 1, []).config.stage == 1
    assert build_curriculum_model(rm0, 2, [1]).config.decoder_refine_blocks == 1


def test_built_model_has_one_identity_adapter_per_stage_and_a_frozen_encoder(make_rm, grown):
    rm0 = make_rm(stage=0)
    assert grown.config.stage == 3 and grown.config.decoder_refine_blocks == 2
    assert rm0.config.stage == 0  # the input model is not modified
    q_proj = grown.encoder.vision_model.encoder.layers[0].self_attn.q_proj
    assert q_proj.r == {"stage2": 2, "stage3": 4}
    assert q_proj.lora_dropout["stage2"].__class__.__name__ == "Identity"
    assert sorted(q_proj.active_adapters) == ["stage2", "stage3"]
    trainable_encoder = {name for name, p in grown.encoder.named_parameters() if p.requires_grad}
    assert trainable_encoder and all("lora_" in name for name in trainable_encoder)
    assert all(not p.requires_grad for name, p in grown.encoder.named_parameters() if "lora_" not in name)
    grown_state = {name.replace(".base_layer", ""): value for name, value in grown.state_dict().items()}
    for name, value in rm0.state_dict().items():  # RM_0's weights are carried over, not re-initialised
        torch.testing.assert_close(grown_state[name], value, rtol=0, atol=0)
    with_dropout = build_curriculum_model(rm0, 2, [2], lora_dropout=0.25)
    assert with_dropout.encoder.vision_model.encoder.layers[0].self_attn.q_proj.lora_dropout["stage2"].p == 0.25


def test_stage_parameter_sets_grow_by_one_adapter_and_one_refine_block(grown):
    names = {name for name, _ in grown.named_parameters()}
    base = {n for n in names if n.startswith("score_head.") or (n.startswith("decoder.") and ".refine." not in n)}
    refine = [{n for n in names if n.startswith(f"decoder.refine.{k}.")} for k in (0, 1)]
    assert base and all(refine)
    assert stage_parameter_names(grown, 1) == base
    assert stage_parameter_names(grown, 2) == base | refine[0] | lora_names(grown, 2)
    assert stage_parameter_names(grown, 3) == base | refine[0] | refine[1] | lora_names(grown, 2) | lora_names(
        grown, 3
    )
    assert lora_names(grown, 2) and lora_names(grown, 3)
    assert active_parameter_names(grown, 1, "param") == base
    assert active_parameter_names(grown, 1, "weight") == stage_parameter_names(grown, 3)
    assert active_parameter_names(grown, 1, "none") == stage_parameter_names(grown, 3)
    with pytest.raises(ValueError, match="ccl must be one of"):
        active_parameter_names(grown, 1, "params")


def test_drop_inactive_gradients_keeps_exactly_the_active_ones(grown):
    out = grown(torch.rand(1, 3, 32, 32))
    (out.pdm.mean() + out.global_score.mean()).backward()
    active = stage_parameter_names(grown, 2)
    drop_inactive_gradients(grown, active)
    for name, parameter in grown.named_parameters():
        if name in active:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name


def test_export_keeps_the_pieces_of_its_stage_and_the_function(grown):
    pixel_values = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # give every growable piece non-identity weights
        generator = torch.Generator().manual_seed(0)
        for name, parameter in grown.named_parameters():
            if "lora_B" in name or "decoder.refine." in name:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
        stage2 = export_stage_model(grown, 2)
        exported = stage2(pixel_values)
        for name, parameter in grown.named_parameters():  # switch stage 3's pieces back to the identity
            if ("lora_B" in name and ".stage3." in name) or name.startswith("decoder.refine.1."):
                parameter.zero_()
        with_stage3_off = grown.eval()(pixel_values)
    assert stage2.config.stage == 2 and stage2.config.decoder_refine_blocks == 1
    assert not stage2.training and not any("lora_" in n for n, _ in stage2.named_parameters())
    assert any(n.startswith("decoder.refine.0.") for n, _ in stage2.named_parameters())
    assert not any(n.startswith("decoder.refine.1.") for n, _ in stage2.named_parameters())
    torch.testing.assert_close(exported.global_score, with_stage3_off.global_score, atol=1e-5, rtol=0)
    torch.testing.assert_close(exported.pdm, with_stage3_off.pdm, atol=1e-5, rtol=0)


def test_export_modes_stage_zero_and_dtype(grown):
    everything = export_stage_model(grown, 1, ccl="weight")
    assert everything.config.stage == 1 and everything.config.decoder_refine_blocks == 2
    stage0 = export_stage_model(grown, 0)
    assert stage0.config.stage == 0 and stage0.config.decoder_refine_blocks == 0
    half = export_stage_model(grown.to(torch.bfloat16), 1)
    assert next(half.parameters()).dtype == torch.bfloat16


def test_build_from_rm1_and_refuse_plain_later_stages(make_rm, grown):
    rm1 = make_rm(stage=1, perturb_head=True)
    from_rm1 = build_curriculum_model(rm1, 2, [3])
    pixel_values = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # RM_1's trained head and decoder carry over
        torch.testing.assert_close(from_rm1(pixel_values).global_score, rm1(pixel_values).global_score)
    rm2 = export_stage_model(grown, 2)  # a plain stage-2 model: no LoRA layers left
    with pytest.raises(ValueError, match=r"^build the curriculum from an RM_0 or RM_1 model \(a plain checkpoint"):
        build_curriculum_model(rm2, 3, [2, 4])
    with pytest.raises(ValueError, match=r"^need one positive LoRA rank per stage 2\.\.3 \(2 ranks\), got \[2\]\.$"):
        build_curriculum_model(make_rm(stage=0), 3, [2])


def test_adapters_scale_by_one_and_build_quietly(make_rm):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_curriculum_model(make_rm(stage=0), 3, [2, 4])
    assert not [w for w in caught if "peft_config" in str(w.message)]
    assert model.encoder.vision_model.encoder.layers[0].mlp.fc1.scaling == {"stage2": 1.0, "stage3": 1.0}


def test_state_that_does_not_fit_the_grown_model_is_refused(make_rm):
    rm1_with_refine = make_rm(stage=1, decoder_refine_blocks=1)  # a refinement block RM_1's growth would not have
    with pytest.raises(
        RuntimeError, match=r"^state does not fit the grown model: missing \[\], unexpected \['decoder"
    ):
        build_curriculum_model(rm1_with_refine, 1, [])
