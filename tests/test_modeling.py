import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, CLIPModel, CLIPTokenizer

from finpercep_hf import FinPercepCheckpointError, FinPercepConfig, FinPercepRewardModel


def clip_iqa_reference(clip_dir, pixel_values, prompt_pairs):
    """CLIP-IQA computed directly from CLIPModel: softmax(logit_scale * cos) over each pair, positive, averaged."""
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer = CLIPTokenizer.from_pretrained(clip_dir)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        image = clip.get_image_features((pixel_values - mean) / std, interpolate_pos_encoding=True).pooler_output
        prompts = [p for pair in prompt_pairs for p in pair]
        text = clip.get_text_features(**tokenizer(prompts, padding=True, return_tensors="pt")).pooler_output
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = clip.logit_scale.exp() * image @ text.T  # (B, 2P)
    probs = logits.view(len(image), -1, 2).softmax(-1)[..., 0]
    return probs.mean(-1)


@pytest.mark.parametrize("size", [(48, 64), (97, 131), (15, 9)], ids=["multiple", "odd", "odd-small"])
@pytest.mark.parametrize(
    "prompt_pairs", [None, [["Good photo.", "Bad photo."], ["Sharp photo.", "Blurry photo."]]], ids=["one", "two"]
)
def test_stage0_base_score_is_clip_iqa(make_rm, tiny_clip_dir, prompt_pairs, size):
    rm0 = make_rm(stage=0, prompt_pairs=prompt_pairs)
    torch.manual_seed(1)
    pixel_values = torch.rand(3, 3, *size)
    with torch.no_grad():
        out = rm0(pixel_values)
    expected = clip_iqa_reference(tiny_clip_dir, pixel_values, rm0.config.prompt_pairs)
    torch.testing.assert_close(out.base_score, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.global_score, out.base_score, atol=0, rtol=0)
    assert out.pdm is None
    assert not torch.allclose(out.base_score, out.base_score[0].expand(3))  # scores depend on the image


def test_stage1_scores_like_stage0_when_grown(make_rm):
    rm0, rm1 = make_rm(stage=0), make_rm(stage=1)
    torch.manual_seed(2)
    pixel_values = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        out0, out1 = rm0(pixel_values), rm1(pixel_values)
    torch.testing.assert_close(out1.global_score, out0.base_score, atol=1e-6, rtol=0)
    assert out1.pdm.shape == (2, 1, 40, 56)


@pytest.mark.parametrize("batch", [1, 3])
def test_odd_sizes_shapes_ranges_and_gradients(make_rm, batch):
    rm1 = make_rm(stage=1)
    torch.manual_seed(3)
    pixel_values = torch.rand(batch, 3, 97, 131, requires_grad=True)
    out = rm1(pixel_values)
    assert out.global_score.shape == out.base_score.shape == (batch,)
    assert out.pdm.shape == (batch, 1, 97, 131)
    for tensor in (out.global_score, out.base_score, out.pdm):
        assert tensor.min() >= 0 and tensor.max() <= 1
    (out.global_score.sum() + out.pdm.mean()).backward()
    grad = pixel_values.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_save_load_round_trip_and_automodel(make_rm, tmp_path):
    rm1 = make_rm(stage=1)
    with torch.no_grad():  # make the head non-trivial so a bad load would show
        rm1.score_head.mlp[-1].weight.normal_()
    rm1.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(name.endswith(".bin") for name in files)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "finpercep"
    torch.manual_seed(4)
    pixel_values = torch.rand(2, 3, 33, 45)
    loaded = FinPercepRewardModel.from_pretrained(tmp_path).eval()
    auto = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(auto, FinPercepRewardModel)
    with torch.no_grad():
        expected = rm1(pixel_values)
        for model in (loaded, auto):
            out = model(pixel_values)
            torch.testing.assert_close(out.global_score, expected.global_score, atol=0, rtol=0)
            torch.testing.assert_close(out.pdm, expected.pdm, atol=0, rtol=0)
    torch.testing.assert_close(loaded.encoder.prompt_embeds, rm1.encoder.prompt_embeds, atol=0, rtol=0)


def test_hub_copy_loads_without_the_package(make_rm, tmp_path):
    rm1 = make_rm(stage=1)
    rm1.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoModel"].endswith("FinPercepRewardModel")
    torch.manual_seed(5)
    pixel_values = torch.rand(1, 3, 32, 40)
    torch.save(pixel_values, tmp_path / "x.pt")
    with torch.no_grad():
        expected = rm1(pixel_values).global_score.item()
    script = (
        "import sys; sys.modules['finpercep_hf'] = None\n"
        "import torch; from transformers import AutoModel\n"
        f"m = AutoModel.from_pretrained(r'{tmp_path}', trust_remote_code=True).eval()\n"
        "assert not type(m).__module__.startswith('finpercep_hf'), type(m).__module__\n"
        f"print(m(torch.load(r'{tmp_path / 'x.pt'}')).global_score.item())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-6)


def test_score_heads(make_rm):
    torch.manual_seed(6)
    pixel_values = torch.rand(2, 3, 32, 32)
    plain = make_rm(stage=1, score_head="plain")
    with torch.no_grad():
        out = plain(pixel_values)
    torch.testing.assert_close(out.global_score, torch.full((2,), 0.5))  # zero-initialised last layer
    decoupled = make_rm(stage=1, score_head="decoupled", decoupled_weights=[0.3, 0.7])
    with torch.no_grad():
        out = decoupled(pixel_values)
    expected = 0.3 * out.base_score + 0.7 * (1 - out.pdm.amax(dim=(1, 2, 3)))
    torch.testing.assert_close(out.global_score, expected)


def test_pdm_modulates_the_residual_score(make_rm):
    rm1 = make_rm(stage=1)
    with torch.no_grad():
        rm1.score_head.mlp[-1].weight.fill_(0.05)
    torch.manual_seed(7)
    pixel_values = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        before = rm1(pixel_values).global_score
        rm1.decoder.head[-1].bias.fill_(-20.0)  # pdm -> 0: f_N * pdm pools to 0, only the MLP bias path remains
        after = rm1(pixel_values).global_score
        base = rm1(pixel_values).base_score
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, base, atol=1e-5, rtol=0)


def test_gradient_checkpointing_matches(make_rm):
    torch.manual_seed(8)
    pixel_values = torch.rand(1, 3, 32, 32)
    grads = []
    for checkpointing in (False, True):
        rm1 = make_rm(stage=1).train()
        if checkpointing:
            rm1.gradient_checkpointing_enable()
        x = pixel_values.clone().requires_grad_(True)
        rm1(x).global_score.sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_bf16_autocast(make_rm):
    rm1 = make_rm(stage=1)
    torch.manual_seed(9)
    pixel_values = torch.rand(1, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = rm1(pixel_values)
    with torch.no_grad():
        ref = rm1(pixel_values)
    assert out.pdm.shape == ref.pdm.shape
    torch.testing.assert_close(out.global_score.float(), ref.global_score, atol=2e-2, rtol=0)


@pytest.mark.parametrize("bad", ["nan", "range", "shape"])
def test_bad_pixel_values(make_rm, bad):
    rm1 = make_rm(stage=1)
    pixel_values = torch.rand(1, 3, 32, 32)
    if bad == "nan":
        pixel_values[0, 0, 3, 3] = float("nan")
    elif bad == "range":
        pixel_values = pixel_values * 255
    else:
        pixel_values = pixel_values[:, :2]
    with pytest.raises(ValueError, match="pixel_values"):
        rm1(pixel_values)


def test_missing_checkpoint_offline_names_it(tmp_path):
    with pytest.raises(FinPercepCheckpointError, match="openai/clip-vit-base-patch16"):
        FinPercepRewardModel.from_clip("openai/clip-vit-base-patch16")
    missing = tmp_path / "no-such-rm"
    with pytest.raises(FinPercepCheckpointError, match="no-such-rm"):
        FinPercepRewardModel.from_pretrained(str(missing))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(score_head="max"), "score_head"),
        (dict(feature_layers=[1, 2, 3]), "feature_layers"),
        (dict(feature_layers=[4, 3, 2, 1]), "feature_layers"),
        (dict(prompt_pairs=[["Good photo."]]), "prompt_pairs"),
        (dict(stage=-1), "stage"),
        (dict(decoupled_weights=[1.0]), "decoupled_weights"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FinPercepConfig(vision_config=dict(num_hidden_layers=4), **kwargs)


def test_config_defaults_round_trip():
    config = FinPercepConfig()
    assert config.feature_layers == [3, 6, 9, 12] and config.vision_config.patch_size == 16
    again = FinPercepConfig.from_dict(config.to_dict())
    assert again.feature_layers == config.feature_layers and again.prompt_pairs == config.prompt_pairs
