"""ControlNetSRGenerator (SeeSR / DiffBIR family) on a tiny random SD2 UNet + ControlNet: sampling, extra
conditioning, gradients, reference policy, LoRA into StableDiffusionControlNetPipeline, REFL / DPO / GRPO."""

import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

from finpercep_hf.generators import SRGenerator
from finpercep_hf.generators.controlnet_sr import ControlNetSRGenerator
from finpercep_hf.generators.random_families import build_controlnet_sr_pipeline
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
def tiny_controlnet_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-controlnet-sr")
    build_controlnet_sr_pipeline().save_pretrained(path)
    return path


def make_generator(directory, **kwargs):
    return ControlNetSRGenerator.from_pretrained(str(directory), num_inference_steps=3, **kwargs)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sample_shapes_seed_and_control_image_matters(prediction_type):
    generator = ControlNetSRGenerator.from_pipeline(build_controlnet_sr_pipeline(prediction_type=prediction_type))
    assert isinstance(generator, SRGenerator) and generator.prediction_type == prediction_type
    image_lr = torch.rand(2, 3, 8, 8)
    first = generator.sample(image_lr, num_inference_steps=3, generator=seeded(), return_trajectory=True)
    assert first.images.shape == (2, 3, 32, 32) and 0 <= first.images.min() and first.images.max() <= 1
    assert first.latents.shape == (2, 4, 16, 16) and len(first.trajectory) == 4
    assert first.condition.image_lr.shape == (2, 3, 32, 32)
    torch.testing.assert_close(generator.sample(image_lr, 3, generator=seeded()).images, first.images)
    other_lr = generator.sample(torch.rand(2, 3, 8, 8), 3, generator=seeded()).images
    assert not torch.allclose(other_lr, first.images, atol=1e-4)  # the ControlNet reads the LR image


def test_extra_carries_seesr_tags_and_diffbir_restoration(tiny_controlnet_dir):
    plain = make_generator(tiny_controlnet_dir)
    tagger_calls = []

    def tagger(image_lr):
        tagger_calls.append(image_lr.shape[0])
        return image_lr.mean(dim=(2, 3))[:, None, :].repeat(1, 2, 11)[..., :32]  # (B, 2, 32)

    def restoration_module(image_lr):
        return torch.nn.functional.interpolate(image_lr, scale_factor=2).flip(-1)  # (B, 3, 2h, 2w): resized to 4x

    generator = make_generator(tiny_controlnet_dir, tagger=tagger, restoration_module=restoration_module)
    image_lr = torch.rand(2, 3, 8, 8)
    condition = generator.encode_condition(image_lr)
    assert condition.extra["tag_embeds"].shape == (2, 2, 32)
    assert condition.extra["restored"].shape == (2, 3, 32, 32)
    repeated = condition.repeat(3)
    assert repeated.extra["restored"].shape == (6, 3, 32, 32) and repeated.extra["tag_embeds"].shape == (6, 2, 32)
    torch.testing.assert_close(repeated.extra["tag_embeds"][3], condition.extra["tag_embeds"][1])
    sampled = generator.sample(image_lr, generator=seeded()).images
    assert not torch.allclose(sampled, plain.sample(image_lr, generator=seeded()).images, atol=1e-4)
    assert tagger_calls == [2, 2]  # once per encode_condition, not per step


def test_unet_lora_gradients_reference_and_pipeline_loading(tiny_controlnet_dir, tmp_path):
    generator = make_generator(tiny_controlnet_dir)
    image_lr = torch.rand(1, 3, 8, 8)
    untouched = generator.sample(image_lr, generator=seeded()).images
    generator.add_lora(rank=2)
    perturb_lora(generator.unet)
    trained = generator.sample(image_lr, generator=seeded()).images
    assert not torch.allclose(trained, untouched, atol=1e-5)
    with generator.reference_policy():
        torch.testing.assert_close(generator.sample(image_lr, generator=seeded()).images, untouched)

    condition = generator.encode_condition(image_lr)
    latents = generator.prepare_latents(condition, generator=seeded())
    generator.decode(generator.predict_x0_with_grad(latents, torch.tensor(500), condition)).mean().backward()
    for name, parameter in generator.unet.named_parameters():
        assert (parameter.grad is not None) == ("lora_" in name), name
    assert all(parameter.grad is None for parameter in generator.controlnet.parameters())
    assert all(parameter.grad is None for parameter in generator.vae.parameters())

    generator.save_lora_weights(tmp_path)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(str(tiny_controlnet_dir), safety_checker=None)
    model_input = torch.randn(1, 4, 16, 16)
    hidden = generator.prompt_embeds
    with torch.no_grad():
        before = pipe.unet(model_input, 500, encoder_hidden_states=hidden).sample
        pipe.load_lora_weights(str(tmp_path))
        after = pipe.unet(model_input, 500, encoder_hidden_states=hidden).sample
        expected = generator.unet(model_input, 500, encoder_hidden_states=hidden).sample
    assert not torch.allclose(before, after, atol=1e-5)
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-4)


def test_controlnet_trains_in_full_and_round_trips(tiny_controlnet_dir, tmp_path):
    generator = make_generator(tiny_controlnet_dir, trainable="controlnet")
    with pytest.raises(ValueError, match="trainable='unet'"):
        generator.add_lora(rank=2)
    generator.trainable_model.requires_grad_(True)
    condition = generator.encode_condition(torch.rand(1, 3, 8, 8))
    latents = generator.prepare_latents(condition, generator=seeded())
    generator.predict_x0_with_grad(latents, torch.tensor(500), condition).mean().backward()
    assert all(parameter.grad is None for parameter in generator.unet.parameters())
    with_grad = [parameter.grad is not None for parameter in generator.controlnet.parameters()]
    assert sum(with_grad) > 0.9 * len(with_grad)

    with torch.no_grad():
        for parameter in generator.controlnet.parameters():
            parameter.add_(0.01)
    path = generator.save_trained_model(tmp_path)
    assert path == tmp_path / "controlnet"
    reloaded = make_generator(tiny_controlnet_dir, trainable="controlnet")
    reloaded.trainable_model = ControlNetModel.from_pretrained(path)
    image_lr = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(
        reloaded.sample(image_lr, generator=seeded()).images, generator.sample(image_lr, generator=seeded()).images
    )


def test_refl_dpo_and_grpo_run_on_the_unet_lora(tiny_controlnet_dir, tmp_path):
    dataset = [{"image_lr": torch.rand(3, 8, 8), "image_gt": torch.rand(3, 32, 32)}]
    batch = {key: value[None] for key, value in dataset[0].items()}
    common = dict(output_dir=str(tmp_path), report_to="none", validation_steps=0, train_batch_size=1)
    configs = [
        (REFLTrainer, REFLConfig(num_inference_steps=3, min_stop_step=1, **common)),
        (DiffusionDPOTrainer, DiffusionDPOConfig(num_samples_per_image=2, num_inference_steps=2, **common)),
        (
            DiffusionGRPOTrainer,
            DiffusionGRPOConfig(num_samples_per_image=2, num_inference_steps=2, kl_beta=0.1, **common),
        ),
    ]
    for trainer_class, args in configs:
        generator = make_generator(tiny_controlnet_dir)
        trainer = trainer_class(generator, reward=brightness, args=args, train_dataset=dataset)
        perturb_lora(generator.unet)
        trainer.training_step(batch)  # the trainer's forward and backward of one micro-batch
        lora_grads = [p.grad for n, p in generator.unet.named_parameters() if "lora_" in n]
        assert all(grad is not None for grad in lora_grads), trainer_class.__name__
        assert sum(grad.abs().sum() for grad in lora_grads) > 0, trainer_class.__name__
        assert all(p.grad is None for n, p in generator.unet.named_parameters() if "lora_" not in n)
        assert all(parameter.grad is None for parameter in generator.controlnet.parameters())
