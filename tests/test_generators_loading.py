"""load_generator: the family from model_index.json, a spandrel weights file or ``module.py:Name``."""

import json

import pytest
import torch

from finpercep_hf.evaluation.generate import load_generator as load_for_evaluation
from finpercep_hf.generators import (
    GENERATOR_LOADERS,
    ControlNetSRGenerator,
    FeedForwardSRGenerator,
    OneStepSRGenerator,
    detect_generator_type,
    load_generator,
    register_generator_type,
)
from finpercep_hf.generators.random_families import (
    build_controlnet_sr_pipeline,
    build_feed_forward_network,
    build_sd_pipeline,
)
from rl_helpers import perturb_lora


def pipeline_stub(directory, class_name):
    directory.mkdir()
    (directory / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    return str(directory)


@pytest.mark.parametrize(
    "class_name,family",
    [
        ("StableDiffusionUpscalePipeline", "sd_upscaler"),
        ("StableDiffusionControlNetPipeline", "controlnet_sr"),
        ("StableDiffusionPipeline", "one_step"),
    ],
)
def test_pipeline_class_selects_the_family(class_name, family, tmp_path):
    assert detect_generator_type(pipeline_stub(tmp_path / "pipe", class_name)) == family


def test_weights_files_and_errors(tmp_path):
    weights = tmp_path / "net.pth"
    torch.save(build_feed_forward_network("ESRGAN").state_dict(), weights)
    assert detect_generator_type(str(weights)) == "feed_forward"
    assert load_generator(str(weights)).scale == 4
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(b"")
    assert detect_generator_type(str(tmp_path / "run")) == "feed_forward"
    with pytest.raises(ValueError, match="no model_index.json"):
        detect_generator_type(str(tmp_path))
    with pytest.raises(ValueError, match="FluxPipeline has no SR generator"):
        detect_generator_type(pipeline_stub(tmp_path / "flux", "FluxPipeline"))
    with pytest.raises(ValueError, match="generator_type must be one of"):
        load_generator(str(weights), generator_type="gan")


def test_a_saved_controlnet_pipeline_loads_with_family_options(tmp_path):
    build_controlnet_sr_pipeline().save_pretrained(tmp_path)
    generator = load_generator(str(tmp_path), trainable="controlnet", num_inference_steps=2)
    assert isinstance(generator, ControlNetSRGenerator)
    assert generator.trainable == "controlnet" and generator.num_inference_steps == 2


def test_module_reference_builds_a_network_or_returns_a_generator(tmp_path):
    module = tmp_path / "my_sr.py"
    module.write_text(
        "import torch\n"
        "def network():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4))\n"
        "class Wrapped:\n"
        "    scale = 4\n"
    )
    generator = load_generator(f"{module}:network")
    assert isinstance(generator, FeedForwardSRGenerator)
    assert generator.sample(torch.rand(1, 3, 4, 4)).images.shape == (1, 3, 16, 16)
    assert type(load_generator(f"{module}:Wrapped")).__name__ == "Wrapped"
    with pytest.raises(ValueError, match="no attribute 'missing'"):
        load_generator(f"{module}:missing")


def test_register_generator_type(tmp_path, monkeypatch):
    monkeypatch.setattr("finpercep_hf.generators.loading.GENERATOR_LOADERS", dict(GENERATOR_LOADERS))
    monkeypatch.setattr("finpercep_hf.generators.loading.PIPELINE_CLASS_TYPES", {})
    register_generator_type("toy", lambda name_or_path, **kwargs: ("toy", name_or_path, kwargs), ("ToyPipeline",))
    path = pipeline_stub(tmp_path / "toy", "ToyPipeline")
    assert load_generator(path, prompt="x") == ("toy", path, {"prompt": "x"})


def test_evaluate_loads_runs_of_every_family(tmp_path):

    image_lr = torch.rand(1, 3, 8, 8)
    build_sd_pipeline().save_pretrained(tmp_path / "sd")
    one_step = OneStepSRGenerator.from_pretrained(str(tmp_path / "sd"))
    one_step.add_lora(rank=2)
    perturb_lora(one_step.unet)
    one_step.save_lora_weights(tmp_path / "one-step-run")
    loaded = load_for_evaluation(tmp_path / "one-step-run", base_model=str(tmp_path / "sd"))
    assert isinstance(loaded, OneStepSRGenerator)
    torch.testing.assert_close(loaded.sample(image_lr).images, one_step.sample(image_lr).images)

    network = FeedForwardSRGenerator(build_feed_forward_network("ESRGAN"))
    network.add_lora(rank=2)
    perturb_lora(network.trainable_model)
    network.save_lora_weights(tmp_path / "esrgan-lora-run")
    network.save_trained_model(tmp_path / "esrgan-full-run")
    torch.save(build_feed_forward_network("ESRGAN").state_dict(), tmp_path / "esrgan.pth")
    expected = network.sample(image_lr).images
    from_lora = load_for_evaluation(tmp_path / "esrgan-lora-run", base_model=str(tmp_path / "esrgan.pth"))
    torch.testing.assert_close(from_lora.sample(image_lr).images, expected)
    from_full = load_for_evaluation(tmp_path / "esrgan-full-run")
    torch.testing.assert_close(from_full.sample(image_lr).images, expected, atol=1e-5, rtol=1e-5)
