"""FeedForwardSRGenerator: spandrel round trips of tiny random ESRGAN and SwinIR, LoRA / full training, REFL."""

import pytest
import torch
from safetensors.torch import save_file
from spandrel import ModelLoader

from finpercep_hf.generators import DirectSRGenerator
from finpercep_hf.generators.feed_forward import WEIGHTS_NAME, FeedForwardSRGenerator
from finpercep_hf.generators.fidelity import FidelityConfig
from finpercep_hf.generators.random_families import build_feed_forward_network
from finpercep_hf.trainers import (
    DiffusionDPOConfig,
    DiffusionDPOTrainer,
    DiffusionGRPOConfig,
    DiffusionGRPOTrainer,
    REFLConfig,
    REFLTrainer,
)
from rl_helpers import brightness

ARCHITECTURES = ("ESRGAN", "SwinIR")


def saved_checkpoint(architecture, tmp_path, suffix):
    network = build_feed_forward_network(architecture).eval()
    path = tmp_path / f"{architecture}{suffix}"
    state = {key: value.contiguous() for key, value in network.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    return network, path


def perturb(generator, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in generator.trainable_parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)


@pytest.mark.parametrize("architecture,suffix", [("ESRGAN", ".pth"), ("SwinIR", ".safetensors")])
def test_spandrel_checkpoint_loads_with_scale_and_same_outputs(architecture, suffix, tmp_path):
    network, path = saved_checkpoint(architecture, tmp_path, suffix)
    generator = FeedForwardSRGenerator.from_pretrained(path)
    assert isinstance(generator, DirectSRGenerator)
    assert generator.scale == 4
    assert generator.size_multiple == ModelLoader().load_from_file(path).size_requirements.multiple_of
    image_lr = torch.rand(2, 3, 16, 16)
    sample = generator.sample(image_lr)
    assert sample.images.shape == (2, 3, 64, 64)
    assert 0 <= sample.images.min() and sample.images.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(sample.images, network(image_lr).clamp(0, 1))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_lora_gradients_reach_lora_only_reference_is_untouched_and_merged_weights_round_trip(architecture, tmp_path):
    _, path = saved_checkpoint(architecture, tmp_path, ".pth")
    generator = FeedForwardSRGenerator.from_pretrained(path)
    image_lr = torch.rand(1, 3, 16, 16)
    untouched = generator.sample(image_lr).images
    generator.add_lora(rank=2, alpha=4)
    assert generator.reference_network is None
    perturb(generator)
    trained = generator.sample(image_lr).images
    assert not torch.allclose(trained, untouched, atol=1e-4)
    with generator.reference_policy():
        torch.testing.assert_close(generator.sample(image_lr).images, untouched)

    generator.generate_with_grad(image_lr).mean().backward()
    named = dict(generator.trainable_model.named_parameters())
    assert all(("lora_" in name) == parameter.requires_grad for name, parameter in named.items())
    assert all(parameter.grad is not None for name, parameter in named.items() if "lora_" in name)
    assert any(parameter.grad.abs().sum() > 0 for name, parameter in named.items() if "lora_" in name)
    assert all(parameter.grad is None for name, parameter in named.items() if "lora_" not in name)

    # LoRA file round trip into a fresh adapter, and the merged network back through spandrel.
    generator.save_lora_weights(tmp_path / "lora")
    for with_adapter in (True, False):  # into an existing adapter, or a new one from the file's metadata
        fresh = FeedForwardSRGenerator.from_pretrained(path)
        if with_adapter:
            fresh.add_lora(rank=2, alpha=4)
        fresh.load_lora_weights(tmp_path / "lora")
        torch.testing.assert_close(fresh.sample(image_lr).images, trained)
    generator.save_trained_model(tmp_path / "merged")
    merged = FeedForwardSRGenerator.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(merged.sample(image_lr).images, trained, atol=1e-5, rtol=1e-5)


def test_full_fine_tuning_reference_is_a_frozen_copy_and_fidelity_terms():
    generator = FeedForwardSRGenerator(
        build_feed_forward_network("ESRGAN"), fidelity=FidelityConfig(fidelity_gt_l1=2.0, fidelity_reference_l1=1.0)
    )
    generator.trainable_model.requires_grad_(True)
    batch = {"image_lr": torch.rand(1, 3, 8, 8), "image_gt": torch.rand(1, 3, 32, 32)}
    untouched = generator.sample(batch["image_lr"]).images
    loss, logs = generator.fidelity_loss(untouched, batch)
    assert logs["fidelity_reference_l1"] == 0.0  # the untouched network is its own reference
    torch.testing.assert_close(loss, 2.0 * (untouched - batch["image_gt"]).abs().mean())

    perturb(generator)
    image_sr = generator.generate_with_grad(batch["image_lr"])
    loss, logs = generator.fidelity_loss(image_sr, batch)
    assert logs["fidelity_reference_l1"] == pytest.approx((image_sr - untouched).abs().mean().item(), rel=1e-5)
    loss.backward()
    assert all(parameter.grad is not None for parameter in generator.network.parameters())
    assert all(
        parameter.grad is None and not parameter.requires_grad
        for parameter in generator.reference_network.parameters()
    )
    with generator.reference_policy():
        torch.testing.assert_close(generator.sample(batch["image_lr"]).images, untouched)
    with pytest.raises(ValueError, match="image_gt"):
        generator.fidelity_loss(image_sr, {"image_lr": batch["image_lr"]})


@pytest.mark.parametrize("use_lora", [True, False])
def test_refl_trains_a_feed_forward_network_and_saves_spandrel_weights(use_lora, tmp_path):
    generator = FeedForwardSRGenerator(build_feed_forward_network("ESRGAN"))
    dataset = [{"image_lr": torch.rand(3, 8, 8), "image_gt": torch.rand(3, 32, 32)} for _ in range(2)]
    args = REFLConfig(
        output_dir=str(tmp_path / "refl"), max_train_steps=2, gradient_accumulation_steps=1, train_batch_size=1,
        learning_rate=1e-2, validation_steps=0, report_to="none", use_lora=use_lora,
    )  # fmt: skip
    trainer = REFLTrainer(generator, reward=brightness, args=args, train_dataset=dataset)
    before = {name: p.detach().clone() for name, p in generator.network.named_parameters()}
    trainer.train()
    logs = trainer.state.log_history[-1]
    assert {"train/reward", "train/fidelity_reference_l1"} <= set(logs)
    changed = [name for name, p in generator.network.named_parameters() if not torch.equal(p, before[name])]
    assert changed and all(("lora_" in name) == use_lora for name in changed)
    assert (tmp_path / "refl" / "pytorch_lora_weights.safetensors").is_file() == use_lora
    # LoRA or not, the trained network (LoRA merged) is saved for spandrel, and the card says how to load it
    reloaded = FeedForwardSRGenerator.from_pretrained(tmp_path / "refl" / WEIGHTS_NAME)
    image_lr = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(reloaded.sample(image_lr).images, generator.sample(image_lr).images)
    card = (tmp_path / "refl" / "README.md").read_text()
    assert "spandrel.ModelLoader().load_from_file" in card and "StableDiffusionUpscalePipeline" not in card
    assert "(FeedForwardSRGenerator)" in card


def test_dpo_and_grpo_refuse_a_feed_forward_network(tmp_path):
    generator = FeedForwardSRGenerator(build_feed_forward_network("ESRGAN"))
    dataset = [{"image_lr": torch.rand(3, 8, 8), "image_gt": torch.rand(3, 32, 32)} for _ in range(2)]
    common = dict(output_dir=str(tmp_path), report_to="none", validation_steps=0, train_batch_size=1)
    with pytest.raises(NotImplementedError, match="no policy for Diffusion-DPO or GRPO"):
        DiffusionGRPOTrainer(
            generator,
            reward=brightness,
            args=DiffusionGRPOConfig(num_samples_per_image=2, **common),
            train_dataset=dataset,
        )
    trainer = DiffusionDPOTrainer(
        generator, reward=brightness, args=DiffusionDPOConfig(num_samples_per_image=2, **common), train_dataset=dataset
    )
    with pytest.raises(NotImplementedError, match="no policy for Diffusion-DPO or GRPO"):
        trainer.compute_loss({"image_lr": torch.rand(1, 3, 8, 8)})
