"""Edges of the DDIM / flow SDE log-prob steps that mutation testing showed untested: the step onto timestep 0,
clipping, the flow step's closed forms and bounds, GRPO's KL, dtypes and the exact error messages."""

import math

import pytest
import torch
from diffusers import DDIMScheduler

from finpercep_hf.generators.ddim_logprob import (
    ddim_step_with_logprob,
    flow_sde_step_with_logprob,
    gaussian_kl,
    gaussian_log_prob,
)


def diffusers_mean(scheduler, model_output, timestep, sample, eta):
    return scheduler.step(model_output, timestep, sample, eta=eta, variance_noise=torch.zeros_like(sample)).prev_sample


def test_gaussian_kl_hand_computed_and_rejects_zero_std():
    mean = torch.tensor([[1.0, 3.0], [1.0, 0.0]])
    mean_ref = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    std = torch.tensor([[3.0], [1.0]])
    # sample 0: (1 / 18 + 4 / 18) / 2; sample 1: (1 / 2 + 0) / 2
    torch.testing.assert_close(gaussian_kl(mean, mean_ref, std), torch.tensor([5 / 36, 0.25]))
    with pytest.raises(ValueError, match=r"^gaussian_kl needs std > 0\.$"):
        gaussian_kl(mean, mean_ref, torch.zeros_like(std))
    with pytest.raises(ValueError, match=r"^gaussian_log_prob needs std > 0; a deterministic step"):
        gaussian_log_prob(mean, mean_ref, torch.zeros_like(std))


def test_step_onto_timestep_zero_uses_alphas_cumprod_zero_even_with_set_alpha_to_one():
    """With 10 of 1000 steps and no offset, the step from t=100 lands on t=0 (alphas_cumprod[0], not the final 1)."""
    scheduler = DDIMScheduler(clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(10)
    torch.manual_seed(0)
    sample, model_output = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    step = ddim_step_with_logprob(scheduler, model_output, 100, sample, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(step.prev_sample_mean, diffusers_mean(scheduler, model_output, 100, sample, 1.0))
    expected_std = scheduler._get_variance(100, 0).sqrt()
    torch.testing.assert_close(step.std.flatten(), expected_std.reshape(1))


def test_clip_sample_clamps_the_predicted_x0_like_diffusers():
    scheduler = DDIMScheduler(clip_sample=True, clip_sample_range=0.5, set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(10)
    sample = torch.linspace(-3, 3, 32).reshape(1, 2, 4, 4)
    model_output = -sample  # predicted x0 far outside [-0.5, 0.5] on both sides
    timestep = int(scheduler.timesteps[4])
    step = ddim_step_with_logprob(scheduler, model_output, timestep, sample, generator=torch.Generator())
    torch.testing.assert_close(step.prev_sample_mean, diffusers_mean(scheduler, model_output, timestep, sample, 1.0))


def test_ddim_step_keeps_the_sample_dtype_and_scores_in_float32():
    scheduler = DDIMScheduler(set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(10)
    sample = torch.randn(2, 2, 4, 4).bfloat16()
    step = ddim_step_with_logprob(scheduler, sample, torch.tensor([901, 501]), sample, generator=torch.Generator())
    assert step.prev_sample.dtype == torch.bfloat16
    assert step.log_prob.dtype == step.std.dtype == step.prev_sample_mean.dtype == torch.float32


def test_ddim_errors_are_exact():
    x = torch.zeros(1, 1, 2, 2)
    unset = DDIMScheduler()
    with pytest.raises(ValueError, match=r"^call scheduler\.set_timesteps\(num_inference_steps\) before ddim_step"):
        ddim_step_with_logprob(unset, x, 999, x)
    thresholding = DDIMScheduler(thresholding=True)
    thresholding.set_timesteps(10)
    with pytest.raises(ValueError, match=r"^dynamic thresholding is not supported by ddim_step_with_logprob"):
        ddim_step_with_logprob(thresholding, x, 900, x)
    scheduler = DDIMScheduler(set_alpha_to_one=True)
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match=r"^pass either prev_sample \(to score it\) or generator"):
        ddim_step_with_logprob(scheduler, x, 900, x, prev_sample=x, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"^the DDIM step from timestep 0 has zero variance.*=False\.$"):
        ddim_step_with_logprob(scheduler, x, 0, x)


def test_flow_step_closed_form_with_the_default_noise_level():
    """sigma 0.5 -> 0.25, a = 0.7: s = 0.7, std = 0.7 * sqrt(0.25) = 0.35,
    mean = x (1 + 0.49 * -0.25 / 1) + v (1 + 0.49 * 0.5 / 1) * -0.25."""
    x, v = torch.full((1, 1, 2, 2), 0.4), torch.full((1, 1, 2, 2), -0.2)
    step = flow_sde_step_with_logprob(0.5, 0.25, v, x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(step.std.flatten(), torch.tensor([0.35]))
    expected_mean = 0.4 * (1 - 0.49 * 0.25) - 0.2 * (1 + 0.49 * 0.5) * -0.25
    torch.testing.assert_close(step.prev_sample_mean, torch.full((1, 1, 2, 2), expected_mean))


def test_flow_step_at_sigma_one_uses_one_minus_sigma_next():
    """sigma 1 -> 0.75: 1 - sigma is replaced by 0.25, s = a * sqrt(1 / 0.25) = 2a, std = 2a * sqrt(0.25) = a."""
    x = torch.zeros(1, 1, 2, 2)
    step = flow_sde_step_with_logprob(1.0, 0.75, x, x, noise_level=0.3, generator=torch.Generator())
    torch.testing.assert_close(step.std.flatten(), torch.tensor([0.3]))


def test_flow_step_bounds_dtypes_and_messages():
    x = torch.zeros(2, 1, 2, 2)
    reaches_zero = flow_sde_step_with_logprob(0.5, 0.0, x, x, generator=torch.Generator())  # sigma_next = 0 is fine
    assert torch.isfinite(reaches_zero.log_prob).all()
    bad = [(0.5, 0.5), (0.5, -0.1), (1.5, 0.5), (torch.tensor([0.5, 0.9]), torch.tensor([0.4, -0.01]))]
    for sigma, sigma_next in bad:
        with pytest.raises(ValueError, match=r"^flow_sde_step_with_logprob needs 0 <= sigma_next < sigma <= 1\.$"):
            flow_sde_step_with_logprob(sigma, sigma_next, x, x)
    with pytest.raises(ValueError, match=r"^noise_level must be > 0, got 0\.0\.$"):
        flow_sde_step_with_logprob(0.5, 0.4, x, x, noise_level=0.0)
    half = flow_sde_step_with_logprob(
        torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.4, 0.3], dtype=torch.float64), x.half(),
        x.half(), generator=torch.Generator(),
    )  # fmt: skip
    assert half.prev_sample.dtype == torch.float16
    assert half.log_prob.dtype == half.std.dtype == half.prev_sample_mean.dtype == torch.float32
    assert half.std[0].item() == pytest.approx(0.7 * math.sqrt(0.1), rel=1e-6)


def test_flow_step_noise_comes_from_the_generator():
    x = torch.zeros(1, 1, 4, 4)
    first = flow_sde_step_with_logprob(0.5, 0.4, x, x, generator=torch.Generator().manual_seed(5)).prev_sample
    torch.manual_seed(0)  # the global RNG plays no part
    again = flow_sde_step_with_logprob(0.5, 0.4, x, x, generator=torch.Generator().manual_seed(5)).prev_sample
    other = flow_sde_step_with_logprob(0.5, 0.4, x, x, generator=torch.Generator().manual_seed(6)).prev_sample
    assert torch.equal(first, again) and not torch.equal(first, other)
