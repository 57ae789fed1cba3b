"""SDUpscalerGenerator on a tiny random SD-x4-upscaler built and saved locally."""

import pytest
import torch
from diffusers import StableDiffusionUpscalePipeline

from finpercep_hf.generators import (
    SDUpscalerGenerator,
    SRGenerator,
    build_sd_upscaler_pipeline,
    save_tiny_sd_upscaler,
)


@pytest.fixture(scope="module")
def tiny_upscaler_dir(tmp_path_factory):
    return save_tiny_sd_upscaler(tmp_path_factory.mktemp("tiny-sd-x4-upscaler"))


@pytest.fixture
def generator(tiny_upscaler_dir):
    torch.manual_seed(0)
    return SDUpscalerGenerator.from_pretrained(str(tiny_upscaler_dir))


def perturb_lora(generator, seed=1):
    """LoRA B starts at zero (adapter = identity); give it values so the adapter changes the output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in generator.unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)


def test_sample_shapes_range_trajectory_and_seed(generator):
    assert isinstance(generator, SRGenerator)
    image_lr = torch.rand(2, 3, 16, 16)
    first = generator.sample(
        image_lr, num_inference_steps=3, generator=torch.Generator().manual_seed(0), return_trajectory=True
    )
    again = generator.sample(image_lr, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    other = generator.sample(image_lr, num_inference_steps=3, generator=torch.Generator().manual_seed(1))
    assert first.images.shape == (2, 3, 64, 64)
    assert first.images.min() >= 0 and first.images.max() <= 1
    assert first.latents.shape == (2, 4, 16, 16)
    assert len(first.trajectory) == 4 and len(first.timesteps) == 3
    assert torch.equal(first.trajectory[-1], first.latents)
    assert again.trajectory is None
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images)


def test_predict_x0_inverts_the_forward_process(generator):
    torch.manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    timesteps = torch.tensor([100, 700])
    noisy = generator.add_noise(latents, noise, timesteps)
    target = generator.training_target(latents, noise, timesteps)  # v for the x4 upscaler's v-prediction
    assert generator.prediction_type == "v_prediction"
    torch.testing.assert_close(generator.predict_x0(target, timesteps, noisy), latents, atol=1e-4, rtol=1e-4)
    generator.prediction_type = "epsilon"
    torch.testing.assert_close(generator.predict_x0(noise, timesteps, noisy), latents, atol=1e-4, rtol=1e-4)


def test_bad_inputs_are_named():
    pipeline = build_sd_upscaler_pipeline("tiny")
    generator = SDUpscalerGenerator.from_pipeline(pipeline)
    with pytest.raises(ValueError, match="image_lr must be"):
        generator.encode_condition(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="multiples of 2"):
        generator.encode_condition(torch.rand(1, 3, 15, 16))
    with pytest.raises(ValueError, match="noise_level"):
        SDUpscalerGenerator.from_pipeline(pipeline, noise_level=351)
    with pytest.raises(ValueError, match="reference_policy needs LoRA"):
        with generator.reference_policy():
            pass


def test_lora_trains_only_adapters_and_reference_policy_disables_them(generator):
    frozen_before = sum(p.numel() for p in generator.unet.parameters())
    generator.add_lora(rank=4)
    trainable = dict((n, p) for n, p in generator.unet.named_parameters() if p.requires_grad)
    assert trainable and all("lora_" in name for name in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert not any(p.requires_grad for p in generator.vae.parameters())
    assert sum(p.numel() for p in generator.unet.parameters()) == frozen_before + sum(
        p.numel() for p in trainable.values()
    )
    image_lr = torch.rand(1, 3, 16, 16)
    condition = generator.encode_condition(image_lr, generator=torch.Generator().manual_seed(0))
    latents = generator.prepare_latents(condition, generator=torch.Generator().manual_seed(0))
    timestep = torch.tensor(500)
    with torch.no_grad():
        base = generator.denoise(latents, timestep, condition)
        perturb_lora(generator)
        adapted = generator.denoise(latents, timestep, condition)
        with generator.reference_policy():
            reference = generator.denoise(latents, timestep, condition)
        adapted_again = generator.denoise(latents, timestep, condition)
    assert not torch.allclose(adapted, base)
    torch.testing.assert_close(reference, base)
    torch.testing.assert_close(adapted_again, adapted)


def test_gradients_reach_every_lora_weight_through_x0_and_decode(generator):
    generator.add_lora(rank=4)
    perturb_lora(generator)
    image_lr = torch.rand(1, 3, 16, 16)
    condition = generator.encode_condition(image_lr)
    latents = generator.prepare_latents(condition)
    with torch.no_grad():  # the REFL rollout runs under no_grad; the grad step must not
        x0 = generator.predict_x0_with_grad(latents, torch.tensor(300), condition)
    assert x0.requires_grad
    image = generator.decode(x0)
    assert image.shape == (1, 3, 64, 64)
    image.mean().backward()
    grads = {n: p.grad for n, p in generator.unet.named_parameters() if p.requires_grad}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_lora_weights_round_trip_and_load_in_diffusers_pipeline(generator, tiny_upscaler_dir, tmp_path):
    generator.add_lora(rank=4)
    perturb_lora(generator)
    path = generator.save_lora_weights(tmp_path)
    assert path.name == "pytorch_lora_weights.safetensors" and path.is_file()

    image_lr = torch.rand(1, 3, 16, 16)
    condition = generator.encode_condition(image_lr, generator=torch.Generator().manual_seed(0))
    latents = generator.prepare_latents(condition, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = generator.denoise(latents, torch.tensor(400), condition)

    torch.manual_seed(0)
    fresh = SDUpscalerGenerator.from_pretrained(str(tiny_upscaler_dir))
    fresh.add_lora(rank=4)
    fresh.load_lora_weights(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(fresh.denoise(latents, torch.tensor(400), condition), expected)

    pipeline = StableDiffusionUpscalePipeline.from_pretrained(str(tiny_upscaler_dir))
    pipeline.load_lora_weights(str(tmp_path))
    model_input = torch.cat([generator.scheduler.scale_model_input(latents, 400), condition.image_lr], dim=1)
    with torch.no_grad():
        from_pipeline = pipeline.unet(
            model_input,
            400,
            encoder_hidden_states=condition.encoder_hidden_states,
            class_labels=condition.class_labels,
        ).sample
    torch.testing.assert_close(from_pipeline, expected)
