"""FinPercep-RM as a transformers model: export, compile, device maps, missing-weight init, tuple outputs."""

import pytest
import safetensors.torch
import torch
from torch.export import Dim
from transformers.integrations.accelerate import infer_auto_device_map

from finpercep_hf import FinPercepConfig, FinPercepRewardModel

PATCH = 8


def tiny_rm(stage: int = 2, **kwargs) -> FinPercepRewardModel:
    """A random RM (ViT hidden 32, 4 layers, patch 8); stage 2 has a refine block, so every decoder part runs."""
    vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, patch_size=PATCH)
    kwargs.setdefault("decoder_channels", 8)
    kwargs.setdefault("decoder_refine_blocks", 1 if stage >= 2 else 0)
    torch.manual_seed(0)
    model = FinPercepRewardModel(
        FinPercepConfig(vision_config=dict(vision, image_size=32), projection_dim=16, stage=stage, **kwargs)
    )
    with torch.no_grad():  # non-trivial prompts and score MLP, so every output depends on the weights
        model.encoder.prompt_embeds.normal_()
        if model.score_head is not None:
            model.score_head.mlp[-1].weight.normal_(std=0.1)
    return model.eval()


def assert_outputs_equal(actual, expected, atol: float = 0.0) -> None:
    for name in ("global_score", "base_score", "pdm"):
        torch.testing.assert_close(getattr(actual, name), getattr(expected, name), atol=atol, rtol=0)


def test_export_static_shape_matches_eager():
    model = tiny_rm()
    torch.manual_seed(1)
    pixel_values = torch.rand(2, 3, 37, 45)  # not a patch multiple
    program = torch.export.export(model, (pixel_values,))
    with torch.no_grad():
        assert_outputs_equal(program.module()(pixel_values), model(pixel_values))


def test_export_dynamic_batch_and_size_matches_eager():
    model = tiny_rm()
    torch.manual_seed(2)
    dims = {0: Dim("batch", min=1, max=64), 2: Dim("height", min=3 * PATCH), 3: Dim("width", min=3 * PATCH)}
    program = torch.export.export(model, (torch.rand(2, 3, 37, 45),), dynamic_shapes={"pixel_values": dims})
    exported = program.module()
    for shape in [(1, 3, 24, 24), (3, 3, 97, 131), (2, 3, 64, 40)]:
        pixel_values = torch.rand(shape)
        with torch.no_grad():
            # bicubic position-embedding interpolation at the checkpoint's own grid: ulp-level differences
            assert_outputs_equal(exported(pixel_values), model(pixel_values), atol=1e-6)


@pytest.mark.parametrize("stage", [0, 2])
def test_compile_fullgraph_matches_eager_with_gradients(stage):
    torch._dynamo.reset()
    model = tiny_rm(stage=stage)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # a graph break raises
    torch.manual_seed(3)
    pixel_values = torch.rand(2, 3, 41, 35)
    outputs, grads = [], []
    for module in (compiled, model):  # compiled first: a model that never ran eagerly must compile too
        x = pixel_values.clone().requires_grad_(True)
        out = module(x)
        out.global_score.sum().backward()
        outputs.append(out)
        grads.append(x.grad)
    assert_outputs_equal(outputs[0], outputs[1], atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
    assert grads[1].abs().sum() > 0


def test_range_check_is_eager_only():
    model = tiny_rm(stage=1)
    pixel_values = torch.rand(1, 3, 32, 32) * 255
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        model(pixel_values)
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True, backend="eager")(pixel_values)
    assert out.global_score.shape == (1,)
    with pytest.raises(ValueError, match="at least 8x8"):
        model(torch.rand(1, 3, 7, 32))


def test_pdm_extends_over_the_edge_rows_and_columns():
    model = tiny_rm(stage=1)
    torch.manual_seed(4)
    pixel_values = torch.rand(1, 3, 37, 45)  # 5 edge rows and columns past the 32x40 patch multiple
    with torch.no_grad():
        pdm = model(pixel_values).pdm[0, 0]
        cropped = model(pixel_values[..., :32, :40]).pdm[0, 0]
    torch.testing.assert_close(pdm[:32, :40], cropped, atol=0, rtol=0)
    torch.testing.assert_close(pdm[32:, :40], cropped[-1:].expand(5, -1), atol=0, rtol=0)
    torch.testing.assert_close(pdm[:32, 40:], cropped[:, -1:].expand(-1, 5), atol=0, rtol=0)


def test_return_dict_false_in_config_or_call_gives_a_tuple():
    model = tiny_rm(stage=1)
    pixel_values = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values)
        model.config.return_dict = False
        from_config = model(pixel_values)
        model.config.return_dict = True
        from_call = model(pixel_values, return_dict=False)
        overridden = model(pixel_values, return_dict=True)
    for output in (from_config, from_call):
        assert isinstance(output, tuple) and len(output) == 5  # global, base, pdm, pdm_logits, image_embeds
        torch.testing.assert_close(output[0], expected.global_score, atol=0, rtol=0)
        torch.testing.assert_close(output[2], expected.pdm, atol=0, rtol=0)
    assert not isinstance(overridden, tuple)


def test_get_input_embeddings_is_the_patch_embedding():
    model = tiny_rm(stage=0)
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, torch.nn.Conv2d)
    assert embedding is model.encoder.vision_model.embeddings.patch_embedding
    assert embedding.kernel_size == (PATCH, PATCH) and embedding.stride == (PATCH, PATCH)


def test_missing_weights_initialised_like_init(tmp_path):
    model = tiny_rm(stage=1)
    model.save_pretrained(tmp_path)
    state = safetensors.torch.load_file(tmp_path / "model.safetensors")
    dropped = {key for key in state if key.startswith(("encoder.vision_model.", "encoder.visual_projection."))}
    kept = {key: value for key, value in state.items() if key not in dropped}
    safetensors.torch.save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    torch.manual_seed(5)
    loaded = FinPercepRewardModel.from_pretrained(tmp_path)
    fresh = tiny_rm(stage=1)
    for key in kept:
        torch.testing.assert_close(loaded.state_dict()[key], state[key], atol=0, rtol=0)
    checked = 0
    for key in dropped:
        init_value, loaded_value = fresh.state_dict()[key], loaded.state_dict()[key]
        if init_value.std() == 0:  # LayerNorm ones, zero biases
            torch.testing.assert_close(loaded_value, init_value, atol=0, rtol=0)
            continue
        if init_value.numel() < 256:  # too few values for a std comparison
            continue
        assert not torch.equal(loaded_value, state[key]), key  # re-initialised, not loaded
        # CLIP's scheme: e.g. q_proj std 32**-0.5 * 8**-0.5 = 0.0625 and fc1 std 64**-0.5 = 0.125, not 0.02
        assert loaded_value.std().item() == pytest.approx(init_value.std().item(), rel=0.15), key
        checked += 1
    assert checked >= 4 * 6 + 2  # q/k/v/out/fc1/fc2 of 4 layers, patch embedding, projection


def split_device_map(model: FinPercepRewardModel) -> dict[str, str]:
    """An "auto" map for one small accelerator and the CPU, with the accelerator played by "cpu" and the CPU by
    "disk" (this machine has no GPU): the encoder does not fit on the first device and is split."""
    encoder_bytes = sum(p.numel() * p.element_size() for p in model.encoder.parameters())
    device_map = infer_auto_device_map(
        model, max_memory={0: encoder_bytes // 2, "cpu": 10**9}, no_split_module_classes=model._no_split_modules
    )
    return {name: "cpu" if device == 0 else "disk" for name, device in device_map.items()}


def test_device_map_splitting_the_encoder_loads_and_matches(tmp_path):
    model = tiny_rm(stage=1)
    model.save_pretrained(tmp_path / "rm")
    device_map = split_device_map(model)
    encoder_entries = {name for name in device_map if name.startswith("encoder.")}
    assert "encoder" not in device_map and len(encoder_entries) >= 3  # split
    assert {device_map[name] for name in encoder_entries} == {"cpu", "disk"}
    assert {"encoder.prompt_embeds", "encoder.logit_scale"} <= encoder_entries  # placed with the others
    with pytest.warns(UserWarning, match="do not match any submodules"):  # accelerate's note on parameter entries
        loaded = FinPercepRewardModel.from_pretrained(
            tmp_path / "rm", device_map=device_map, offload_folder=tmp_path / "offload"
        )
    assert loaded.hf_device_map == device_map
    torch.manual_seed(6)
    pixel_values = torch.rand(2, 3, 40, 33)
    with torch.no_grad():
        assert_outputs_equal(loaded(pixel_values), model(pixel_values))
