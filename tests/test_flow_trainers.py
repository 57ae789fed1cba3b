"""REFL, Diffusion-DPO and GRPO on the tiny flow-matching generator (in-process)."""

import math

import pytest
import torch

from finpercep_hf.generators.flow_random_init import build_flow_sr_generator
from finpercep_hf.trainers import (
    DiffusionDPOConfig,
    DiffusionDPOTrainer,
    DiffusionGRPOConfig,
    DiffusionGRPOTrainer,
    REFLConfig,
    REFLTrainer,
)
from rl_helpers import LowResImages, brightness

pytestmark = pytest.mark.usefixtures("one_thread")


COMMON = dict(
    train_batch_size=2,
    gradient_accumulation_steps=1,
    learning_rate=1e-3,
    validation_steps=0,
    checkpointing_steps=100,
    report_to="none",
)


def make_trainer(trainer_class, config_class, tmp_path, dataset, conditioning="lr_stream", **overrides):
    torch.manual_seed(0)
    generator = build_flow_sr_generator(conditioning=conditioning)
    args = config_class(output_dir=str(tmp_path / trainer_class.method_name), **{**COMMON, **overrides})
    return trainer_class(generator, reward=brightness, args=args, train_dataset=dataset)


@pytest.mark.parametrize("conditioning", ["lr_stream", "controlnet"])
def test_refl_gradients_reach_every_lora_weight_through_x0(tmp_path, conditioning):
    trainer = make_trainer(
        REFLTrainer, REFLConfig, tmp_path, LowResImages(2), conditioning, num_inference_steps=4, min_stop_step=2
    )
    dataset = trainer.train_dataset
    loss, logs = trainer.refl_loss({"image_lr": dataset.image_lr})
    loss.backward()
    assert logs["stop_step"] in (2.0, 3.0) and 0 <= logs["reward"] <= 1
    lora_b = [(n, p) for n, p in trainer.generator.transformer.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in lora_b)
    # the loss is (offset - brightness(decode(x0_hat))) * grad_scale: x0_hat = x_sigma - sigma * v
    assert loss.item() == pytest.approx((2.0 - logs["reward"]) * 1e-3, rel=1e-5)
    # the pre-training loss regresses the flow target eps - x0
    trainer.args.pretrain_loss = True
    trainer.state.global_step = 1
    pretrain, pretrain_logs = trainer.compute_loss({"image_lr": dataset.image_lr, "image_gt": dataset.image_gt})
    assert set(pretrain_logs) == {"pretrain_loss"} and pretrain.item() > 0 and pretrain.requires_grad


def test_dpo_loss_is_log_2_at_policy_equal_reference_and_uses_velocity_errors(tmp_path):
    trainer = make_trainer(
        DiffusionDPOTrainer, DiffusionDPOConfig, tmp_path, LowResImages(2), beta_dpo=10.0, loss_type="sigmoid"
    )
    generator = trainer.generator
    condition = generator.encode_condition(trainer.train_dataset.image_lr)
    latents_w, latents_l, noise = torch.randn(3, 2, 16, 16, 16).unbind(0)
    timesteps = torch.tensor([300, 800])
    output, logs = trainer.preference_loss(latents_w, latents_l, condition, noise=noise, timesteps=timesteps)
    # LoRA B = 0 at init: the policy is the reference, logits 0, -logsigmoid(0) = log 2
    torch.testing.assert_close(output.losses, torch.full((2,), math.log(2)))
    assert logs["model_error"] == pytest.approx(logs["ref_error"])
    # the errors are flow-matching errors: mean (v_theta(x_sigma, t) - (eps - x0))^2 with x_sigma shared by w/l
    with torch.no_grad():
        noisy = (1 - 0.3) * latents_w[:1] + 0.3 * noise[:1]
        velocity = generator.denoise(noisy, timesteps[:1], _first(condition))
        hand = ((velocity - (noise[:1] - latents_w[:1])) ** 2).mean()
    errors = trainer.denoising_errors(latents_w[:1], noise[:1], timesteps[:1], _first(condition))
    assert errors.item() == pytest.approx(hand.item(), rel=1e-5)
    # after a LoRA update the policy departs from the reference and the loss from log 2
    with torch.no_grad():
        for name, parameter in generator.transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    moved, _ = trainer.preference_loss(latents_w, latents_l, condition, noise=noise, timesteps=timesteps)
    assert (moved.losses - math.log(2)).abs().max() > 1e-4


def _first(condition):
    """The condition of the first item only."""
    from finpercep_hf.generators.base import SRCondition

    return SRCondition(
        image_lr=condition.image_lr[:1],
        encoder_hidden_states=condition.encoder_hidden_states[:1],
        extra={"pooled_projections": condition.extra["pooled_projections"][:1]},
    )


def test_grpo_flow_rollout_ratio_is_one_on_policy(tmp_path):
    dataset = LowResImages(2)
    trainer = make_trainer(
        DiffusionGRPOTrainer,
        DiffusionGRPOConfig,
        tmp_path,
        dataset,
        num_samples_per_image=4,
        num_inference_steps=4,
        eta=0.7,
    )
    rollout = trainer.rollout(dataset.image_lr, rng=torch.Generator().manual_seed(0))
    num_samples = 8
    assert rollout.latents.shape == (num_samples, 4, 16, 16, 16)
    torch.testing.assert_close(rollout.next_latents[:, :-1], rollout.latents[:, 1:])
    torch.testing.assert_close(rollout.timesteps, trainer.policy.sigmas[:-1] * 1000)
    rows = torch.arange(num_samples)
    for step_index in [torch.full((num_samples,), j) for j in range(4)] + [torch.randint(0, 4, (num_samples,))]:
        with torch.no_grad():
            step = trainer.step_log_probs(rollout, step_index)
        ratio = torch.exp(step.log_prob - rollout.log_probs[rows, step_index])
        torch.testing.assert_close(ratio, torch.ones(num_samples), atol=1e-4, rtol=0)


def test_grpo_flow_clip_acts_when_rollouts_are_reused(tmp_path):
    trainer = make_trainer(
        DiffusionGRPOTrainer,
        DiffusionGRPOConfig,
        tmp_path,
        LowResImages(2),
        num_samples_per_image=4,
        num_inference_steps=3,
        eta=0.7,
        rollout_reuse=2,
        clip_range=1e-6,
        kl_beta=0.1,
        max_train_steps=2,
    )
    history = trainer.train().log_history
    first, second = history[0], history[1]
    assert first["train/approx_kl"] == 0 and first["train/clipfrac"] == 0 and first["train/kl_ref"] == 0
    assert second["train/approx_kl"] > 0 and second["train/clipfrac"] > 0 and second["train/kl_ref"] > 0
