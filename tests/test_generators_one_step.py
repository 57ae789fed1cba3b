"""OneStepSRGenerator (OSEDiff family) on a tiny random SD pipeline: one step, gradients, reference, LoRA, trainers."""

import pytest
import torch
from diffusers import StableDiffusionPipeline

from finpercep_hf.generators import DirectSRGenerator, SRGenerator
from finpercep_hf.generators.fidelity import FidelityConfig
from finpercep_hf.generators.one_step import OneStepSRGenerator
from finpercep_hf.generators.random_families import build_sd_pipeline
from finpercep_hf.trainers import (
    DiffusionDPOConfig,
    DiffusionDPOTrainer,
    DiffusionGRPOConfig,
    DiffusionGRPOTrainer,
    REFLConfig,
    REFLTrainer,
)
from rl_helpers import brightness, perturb_lora


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-sd")
    build_sd_pipeline().save_pretrained(path)
    return path


@pytest.fixture
def generator(tiny_sd_dir):
    return OneStepSRGenerator.from_pretrained(str(tiny_sd_dir))


def test_one_step_sample_is_deterministic_and_equals_the_differentiable_call(generator):
    assert isinstance(generator, SRGenerator) and isinstance(generator, DirectSRGenerator)
    image_lr = torch.rand(2, 3, 8, 8)
    sample = generator.sample(image_lr, return_trajectory=True)
    assert sample.images.shape == (2, 3, 32, 32) and 0 <= sample.images.min() and sample.images.max() <= 1
    assert sample.latents.shape == (2, 4, 16, 16) and sample.timesteps.tolist() == [999]
    assert torch.equal(sample.trajectory[0], generator.encode_condition(image_lr).image_lr)
    torch.testing.assert_close(generator.sample(image_lr).images, sample.images)
    torch.testing.assert_close(generator.generate_with_grad(image_lr).detach(), sample.images)
    generator.scale = 1
    with pytest.raises(ValueError, match="multiple of 4"):
        generator.sample(torch.rand(1, 3, 6, 8))


def test_gradients_reach_the_lora_only_and_the_reference_is_the_untouched_unet(generator):
    image_lr = torch.rand(1, 3, 8, 8)
    untouched = generator.sample(image_lr).images
    generator.add_lora(rank=2)
    perturb_lora(generator.unet)
    assert not torch.allclose(generator.sample(image_lr).images, untouched, atol=1e-5)
    with generator.reference_policy():
        torch.testing.assert_close(generator.sample(image_lr).images, untouched)

    generator.generate_with_grad(image_lr).mean().backward()
    for name, parameter in generator.unet.named_parameters():
        assert parameter.requires_grad == ("lora_" in name)
        assert (parameter.grad is not None) == ("lora_" in name), name
    assert sum(p.grad.abs().sum() for n, p in generator.unet.named_parameters() if "lora_" in n) > 0
    assert all(parameter.grad is None for parameter in generator.vae.parameters())


def test_lora_loads_into_stable_diffusion_pipeline_and_back(generator, tiny_sd_dir, tmp_path):
    generator.add_lora(rank=2, alpha=4)
    perturb_lora(generator.unet)
    generator.save_lora_weights(tmp_path)
    torch.manual_seed(0)
    latents, timestep = torch.randn(1, 4, 16, 16), torch.tensor(999)
    hidden = generator.prompt_embeds
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None)
    with torch.no_grad():
        before = pipe.unet(latents, timestep, encoder_hidden_states=hidden).sample
        pipe.load_lora_weights(str(tmp_path))
        after = pipe.unet(latents, timestep, encoder_hidden_states=hidden).sample
        trained = generator.unet(latents, timestep, encoder_hidden_states=hidden).sample
    assert not torch.allclose(before, after, atol=1e-5)
    torch.testing.assert_close(after, trained, atol=1e-5, rtol=1e-4)

    image_lr = torch.rand(1, 3, 8, 8)
    for with_adapter in (True, False):  # into an existing adapter, or a new one from the file's metadata
        fresh = OneStepSRGenerator.from_pretrained(str(tiny_sd_dir))
        if with_adapter:
            fresh.add_lora(rank=2, alpha=4)
        fresh.load_lora_weights(tmp_path)
        torch.testing.assert_close(fresh.sample(image_lr).images, generator.sample(image_lr).images)


def trainer_options(tmp_path):
    return dict(output_dir=str(tmp_path), report_to="none", validation_steps=0, train_batch_size=1, learning_rate=1e-2)


def test_refl_direct_gradient_with_fidelity_terms(generator, tmp_path):
    generator.fidelity = FidelityConfig(fidelity_gt_l1=1.0, fidelity_reference_l1=0.5)
    dataset = [{"image_lr": torch.rand(3, 8, 8), "image_gt": torch.rand(3, 32, 32)}]
    args = REFLConfig(max_train_steps=1, gradient_accumulation_steps=1, **trainer_options(tmp_path))
    trainer = REFLTrainer(generator, reward=brightness, args=args, train_dataset=dataset)
    loss, logs = trainer.compute_loss({key: value[None] for key, value in dataset[0].items()})
    assert {"reward", "fidelity_gt_l1", "fidelity_reference_l1"} <= set(logs)
    assert logs["fidelity_reference_l1"] == pytest.approx(0.0, abs=1e-6)  # LoRA B = 0: policy == reference
    expected = (2.0 - logs["reward"] + logs["fidelity_gt_l1"]) * 1e-3
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    before = {n: p.detach().clone() for n, p in generator.unet.named_parameters()}
    trainer.train()
    changed = {n for n, p in generator.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in name for name in changed)
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()
    card = (tmp_path / "README.md").read_text()
    assert "StableDiffusionPipeline.from_pretrained" in card and "load_lora_weights" in card
    assert "StableDiffusionUpscalePipeline" not in card and "spandrel" not in card


def test_grpo_is_noise_injected_one_step_sampling_and_dpo_refuses(generator, tmp_path):
    dataset = [{"image_lr": torch.rand(3, 8, 8), "image_gt": torch.rand(3, 32, 32)}]
    args = DiffusionGRPOConfig(
        num_samples_per_image=3, num_inference_steps=1, kl_beta=0.1, **trainer_options(tmp_path)
    )
    trainer = DiffusionGRPOTrainer(generator, reward=brightness, args=args, train_dataset=dataset)
    assert trainer.policy.timesteps.tolist() == [999]
    perturb_lora(generator.unet)
    rollout = trainer.rollout(torch.rand(1, 3, 8, 8), rng=torch.Generator().manual_seed(0))
    assert rollout.log_probs.shape == (3, 1) and torch.isfinite(rollout.log_probs).all()
    assert not torch.allclose(rollout.images[0], rollout.images[1])  # the injected noise differs per sample
    _, logs = trainer.training_step({"image_lr": torch.rand(1, 3, 8, 8)})  # rollout, then backward
    assert "kl_ref" in logs
    assert all((p.grad is not None) == ("lora_" in n) for n, p in generator.unet.named_parameters())

    args = DiffusionGRPOConfig(num_samples_per_image=2, num_inference_steps=2, **trainer_options(tmp_path))
    with pytest.raises(ValueError, match="timestep 999 only"):
        DiffusionGRPOTrainer(generator, reward=brightness, args=args, train_dataset=dataset).rollout(
            torch.rand(1, 3, 8, 8)
        )
    dpo = DiffusionDPOTrainer(
        generator,
        reward=brightness,
        args=DiffusionDPOConfig(num_samples_per_image=2, **trainer_options(tmp_path)),
        train_dataset=dataset,
    )
    with pytest.raises(NotImplementedError, match="no likelihood"):
        dpo.compute_loss({"image_lr": torch.rand(1, 3, 8, 8)})
