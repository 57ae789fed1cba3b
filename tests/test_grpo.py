"""GRPO: advantages and the clipped surrogate against hand-computed values; the GRPO trainer on a tiny generator."""

import math

import pytest
import torch

from finpercep_hf.generators import SDUpscalerGenerator, build_sd_upscaler_pipeline
from finpercep_hf.generators.ddim_logprob import gaussian_kl
from finpercep_hf.trainers import DiffusionGRPOConfig, DiffusionGRPOTrainer
from finpercep_hf.trainers.grpo import clipped_surrogate_loss, group_advantages
from rl_helpers import LowResImages, brightness

pytestmark = pytest.mark.usefixtures("one_thread")


def test_group_advantages_hand_computed_and_zero_sum():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 10.0]])
    advantages = group_advantages(rewards, eps=0.0)
    # row 0: mean 2.5, unbiased std sqrt(5/3); row 1: mean 2.5, std 5
    expected = torch.tensor([[-1.5, -0.5, 0.5, 1.5], [-0.5, -0.5, -0.5, 1.5]])
    expected[0] /= math.sqrt(5 / 3)
    torch.testing.assert_close(advantages, expected)
    torch.manual_seed(0)
    random_advantages = group_advantages(torch.rand(5, 8))
    torch.testing.assert_close(random_advantages.sum(dim=1), torch.zeros(5), atol=1e-5, rtol=0)
    # a tied group carries no signal
    assert group_advantages(torch.full((1, 4), 0.7)).abs().max() == 0


def test_group_advantages_global_std_and_clipping():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    global_std = math.sqrt(8.75 / 3)  # unbiased std of (1, 2, 3, 5)
    expected = torch.tensor([[-0.5, 0.5], [-1.0, 1.0]]) / global_std
    torch.testing.assert_close(group_advantages(rewards, std_scope="global", eps=0.0), expected)
    clipped = group_advantages(torch.tensor([[0.0, 0.0, 0.0, 10.0]]), eps=0.0, clip_max=1.0)
    torch.testing.assert_close(clipped, torch.tensor([[-0.5, -0.5, -0.5, 1.0]]))
    with pytest.raises(ValueError, match="std_scope"):
        group_advantages(rewards, std_scope="batch")
    with pytest.raises(ValueError, match="K >= 2"):
        group_advantages(torch.rand(4))


def test_clipped_surrogate_hand_computed_with_gradients():
    old = torch.tensor([-1.0, -2.0, -3.0])
    log_prob = (old + torch.log(torch.tensor([1.0, 1.5, 0.5]))).requires_grad_(True)
    advantages = torch.tensor([1.0, 1.0, -1.0])
    out = clipped_surrogate_loss(log_prob, old, advantages, clip_range=0.2)
    # per sample max(-A r, -A clip(r)): -1, max(-1.5, -1.2) = -1.2, max(0.5, 0.8) = 0.8
    assert out.loss.item() == pytest.approx((-1.0 - 1.2 + 0.8) / 3)
    assert out.clipfrac.item() == pytest.approx(2 / 3)
    assert out.approx_kl.item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 3)
    out.loss.backward()
    # only the unclipped sample passes a gradient: d(-A r)/d log_prob = -A r / 3
    torch.testing.assert_close(log_prob.grad, torch.tensor([-1 / 3, 0.0, 0.0]))


def test_surrogate_at_ratio_one_is_minus_mean_advantage():
    old = torch.randn(4)
    advantages = torch.tensor([0.5, -1.0, 2.0, 0.0])
    out = clipped_surrogate_loss(old.clone(), old, advantages, clip_range=1e-4)
    torch.testing.assert_close(out.ratio, torch.ones(4))
    assert out.loss.item() == pytest.approx(-advantages.mean().item())
    assert out.clipfrac.item() == 0 and out.approx_kl.item() == 0
    with pytest.raises(ValueError, match="same shape"):
        clipped_surrogate_loss(old, old[:2], advantages, clip_range=0.2)


def test_gaussian_kl_hand_computed():
    mean, mean_ref = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    std = torch.tensor([1.0, 0.5]).view(2, 1, 1, 1)
    # (mu - mu_ref)^2 / (2 std^2) = 1/2 and 2
    torch.testing.assert_close(gaussian_kl(mean, mean_ref, std), torch.tensor([0.5, 2.0]))
    assert gaussian_kl(mean, mean, std).abs().max() == 0


# The GRPO trainer on the tiny SD-x4-upscaler (in-process); the script runs in test_dpo.py with train_dpo.py.


def make_trainer(tmp_path, dataset, **overrides):
    torch.manual_seed(0)
    generator = SDUpscalerGenerator.from_pipeline(build_sd_upscaler_pipeline("tiny"))
    options = dict(
        output_dir=str(tmp_path / "grpo"),
        num_samples_per_image=4,
        num_inference_steps=4,
        train_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        validation_steps=0,
        checkpointing_steps=100,
        report_to="none",
    )
    return DiffusionGRPOTrainer(
        generator, reward=brightness, args=DiffusionGRPOConfig(**{**options, **overrides}), train_dataset=dataset
    )


def test_grpo_config_defaults_and_validation():
    config = DiffusionGRPOConfig()
    assert (config.num_samples_per_image, config.num_inference_steps, config.eta, config.clip_range) == (
        8,
        20,
        1.0,
        1e-4,
    )
    assert config.adv_clip_max == 5 and config.kl_beta == 0 and config.num_trained_steps == 12
    for bad, match in [
        (dict(num_samples_per_image=1), "num_samples_per_image"),
        (dict(eta=0.0), "eta"),
        (dict(timestep_fraction=0.0), "timestep_fraction"),
        (dict(advantage_std="batch"), "advantage_std"),
        (dict(clip_range=0.0), "clip_range"),
        (dict(kl_beta=0.1, use_lora=False), "use_lora"),
    ]:
        with pytest.raises(ValueError, match=match):
            DiffusionGRPOConfig(**bad)


def test_rollout_stores_a_consistent_trajectory_and_recomputes_ratio_one(tmp_path):
    dataset = LowResImages(2)
    trainer = make_trainer(tmp_path, dataset)
    rollout = trainer.rollout(dataset.image_lr, rng=torch.Generator().manual_seed(0))
    num_samples, num_steps = 2 * 4, 4
    assert rollout.latents.shape == rollout.next_latents.shape == (num_samples, num_steps, 4, 8, 8)
    assert rollout.log_probs.shape == (num_samples, num_steps) and torch.isfinite(rollout.log_probs).all()
    torch.testing.assert_close(rollout.next_latents[:, :-1], rollout.latents[:, 1:])  # x_{t-1} is the next input
    torch.testing.assert_close(rollout.rewards, brightness(rollout.images))
    # a group shares its LR conditioning (same low-res noise), groups differ
    conditions = rollout.condition.image_lr.view(2, 4, 3, 8, 8)
    assert torch.equal(conditions[:, 0], conditions[:, 3]) and not torch.equal(conditions[0, 0], conditions[1, 0])
    # group advantages sum to ~0 per group and are the normalised rewards
    torch.testing.assert_close(rollout.advantages.view(2, 4).sum(dim=1), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        rollout.advantages, group_advantages(rollout.rewards.view(2, 4), clip_max=5.0).flatten()
    )
    # unchanged weights: every stored step has ratio 1, with per-sample step indices too
    rows = torch.arange(num_samples)
    for step_index in [torch.full((num_samples,), j) for j in range(num_steps)] + [torch.randint(0, 4, (8,))]:
        with torch.no_grad():
            step = trainer.step_log_probs(rollout, step_index)
        ratio = torch.exp(step.log_prob - rollout.log_probs[rows, step_index])
        torch.testing.assert_close(ratio, torch.ones(num_samples), atol=1e-4, rtol=0)


def test_training_step_gradient_equals_the_sum_over_all_trained_steps(tmp_path):
    """The per-unit backwards of training_step give the gradient of the full loss."""
    dataset = LowResImages(2)
    trainer = make_trainer(tmp_path, dataset, timestep_fraction=0.5, kl_beta=0.5)
    trainer.args.clip_range = 0.2
    # one update first, so that B != 0 and the ratio and KL terms carry gradients to every LoRA weight
    trainer.training_step({"image_lr": dataset.image_lr})
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    rollout = trainer.rollout(dataset.image_lr, rng=torch.Generator().manual_seed(1))
    trainer.rollout = lambda image_lr: rollout
    parameters = list(trainer.generator.trainable_parameters())

    trainer.rng.manual_seed(5)
    loss, logs = trainer.training_step({"image_lr": dataset.image_lr})
    split = [p.grad.clone() for p in parameters]
    trainer.optimizer.zero_grad()

    trainer.rng.manual_seed(5)
    order = torch.argsort(torch.rand(8, 4, generator=trainer.rng), dim=1)
    total = sum(trainer.unit_loss(rollout, order[:, j])[0] for j in range(2)) / 2
    total.backward()
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    for a, b in zip(split, (p.grad for p in parameters)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
    assert logs["kl_ref"] > 0 and {"approx_kl", "clipfrac", "reward_mean", "advantage_abs"} <= set(logs)


def test_rollout_reuse_makes_the_ratio_leave_one_and_the_clip_act(tmp_path):
    trainer = make_trainer(tmp_path, LowResImages(2), rollout_reuse=2, clip_range=1e-6, kl_beta=0.1, max_train_steps=2)
    history = trainer.train().log_history
    first, second = history[0], history[1]
    # update 1: only the fresh rollout, on-policy; update 2: the first rollout again, after one optimizer step
    assert first["train/approx_kl"] == 0 and first["train/clipfrac"] == 0 and first["train/kl_ref"] == 0
    assert second["train/approx_kl"] > 0 and second["train/clipfrac"] > 0 and second["train/kl_ref"] > 0
    assert len(trainer.rollout_buffer) == 1 and trainer.rollout_buffer[0][1] == 1


def test_few_grpo_steps_increase_the_mean_brightness(tmp_path):
    """4 updates on 4 LR images x 16 samples, toy reward = mean brightness, evaluated on the same noise seed."""
    dataset = LowResImages(4)
    trainer = make_trainer(
        tmp_path,
        dataset,
        num_samples_per_image=16,
        train_batch_size=4,
        timestep_fraction=1.0,
        learning_rate=3e-3,
        max_train_steps=4,
    )

    def mean_reward() -> float:
        return trainer.rollout(dataset.image_lr, rng=torch.Generator().manual_seed(123)).rewards.mean().item()

    before = mean_reward()
    history = trainer.train().log_history
    after = mean_reward()
    assert after > before
    assert history[-1]["train/reward_mean"] > history[0]["train/reward_mean"]


def test_diffusers_default_ddim_config_with_v_prediction_trains(tmp_path):
    """diffusers' default DDIM config (set_alpha_to_one=True) makes the last step deterministic: it is taken with
    the mean and is not a policy action, so no log-probability of a zero-variance step is ever computed."""
    from diffusers import DDIMScheduler

    dataset = LowResImages(2)
    torch.manual_seed(0)
    generator = SDUpscalerGenerator.from_pipeline(build_sd_upscaler_pipeline("tiny"))
    generator.scheduler = DDIMScheduler(prediction_type="v_prediction")
    config = DiffusionGRPOConfig(
        output_dir=str(tmp_path), num_samples_per_image=4, num_inference_steps=4, train_batch_size=2,
        gradient_accumulation_steps=1, validation_steps=0, report_to="none",
    )  # fmt: skip
    trainer = DiffusionGRPOTrainer(generator, reward=brightness, args=config, train_dataset=dataset)
    assert trainer.policy.scheduler.config.set_alpha_to_one
    assert trainer.policy.stochastic == [True, True, True, False]
    rollout = trainer.rollout(dataset.image_lr)
    assert rollout.log_probs.shape == (8, 3) and torch.isfinite(rollout.log_probs).all()
    assert rollout.timesteps.tolist() == trainer.policy.timesteps[:3].tolist()
    loss, logs = trainer.training_step({"image_lr": dataset.image_lr})
    assert torch.isfinite(loss) and "reward_mean" in logs
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.generator.trainable_parameters())
