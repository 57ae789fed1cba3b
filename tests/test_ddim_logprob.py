"""DDIM / flow SDE steps with log-probabilities, checked against diffusers' DDIMScheduler and closed forms."""

import pytest
import torch
from diffusers import DDIMScheduler

from finpercep_hf.generators.ddim_logprob import (
    ddim_step_with_logprob,
    flow_sde_step_with_logprob,
    gaussian_log_prob,
)


def make_scheduler(prediction_type="epsilon", steps=10, **kwargs):
    kwargs.setdefault("set_alpha_to_one", False)
    scheduler = DDIMScheduler(prediction_type=prediction_type, clip_sample=False, steps_offset=1, **kwargs)
    scheduler.set_timesteps(steps)
    return scheduler


def test_gaussian_log_prob_matches_torch_normal():
    torch.manual_seed(0)
    x, mean = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    std = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1)
    expected = torch.distributions.Normal(mean, std).log_prob(x).mean(dim=(1, 2, 3))
    torch.testing.assert_close(gaussian_log_prob(x, mean, std), expected)
    with pytest.raises(ValueError, match="std > 0"):
        gaussian_log_prob(x, mean, torch.zeros_like(std))


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_ddim_step_matches_diffusers_and_gaussian_density(prediction_type, eta):
    scheduler = make_scheduler(prediction_type)
    torch.manual_seed(0)
    sample, model_output = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for timestep in (scheduler.timesteps[0], scheduler.timesteps[5], scheduler.timesteps[-1]):
        step = ddim_step_with_logprob(
            scheduler, model_output, timestep, sample, eta=eta, generator=torch.Generator().manual_seed(1)
        )
        # diffusers samples the same noise from the same generator seed
        reference = scheduler.step(model_output, timestep, sample, eta=eta, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(step.prev_sample, reference.prev_sample, rtol=1e-5, atol=1e-5)
        # the Gaussian the test builds: mean = diffusers' step without noise, std = eta * sqrt(diffusers' variance)
        mean = scheduler.step(model_output, timestep, sample, eta=eta, variance_noise=torch.zeros_like(sample))
        prev_timestep = int(timestep) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        std = eta * scheduler._get_variance(int(timestep), prev_timestep).sqrt()
        density = torch.distributions.Normal(mean.prev_sample, std).log_prob(step.prev_sample).mean(dim=(1, 2, 3))
        torch.testing.assert_close(step.log_prob, density, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step.prev_sample_mean, mean.prev_sample, rtol=1e-5, atol=1e-5)
        assert step.log_prob.shape == (2,) and step.std.shape == (2, 1, 1, 1)


def test_v_prediction_mean_by_hand():
    """v-prediction: x0 = sqrt(a) x - sqrt(1-a) v, eps = sqrt(a) v + sqrt(1-a) x, written out for one step."""
    scheduler = make_scheduler("v_prediction", steps=4)
    torch.manual_seed(0)
    sample, v = torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2)
    t = int(scheduler.timesteps[1])
    a_t, a_prev = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[t - 250]
    x0 = a_t.sqrt() * sample - (1 - a_t).sqrt() * v
    eps = a_t.sqrt() * v + (1 - a_t).sqrt() * sample
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    expected_mean = a_prev.sqrt() * x0 + (1 - a_prev - var).sqrt() * eps
    step = ddim_step_with_logprob(scheduler, v, t, sample, eta=1.0)
    torch.testing.assert_close(step.prev_sample_mean, expected_mean)
    torch.testing.assert_close(step.std.flatten(), var.sqrt().reshape(1))


def test_per_sample_timesteps_equal_separate_calls():
    scheduler = make_scheduler("v_prediction")
    torch.manual_seed(0)
    sample, model_output, prev = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    timesteps = scheduler.timesteps[[0, 4, 9]]
    batched = ddim_step_with_logprob(scheduler, model_output, timesteps, sample, prev_sample=prev)
    for i, t in enumerate(timesteps):
        alone = ddim_step_with_logprob(
            scheduler, model_output[i : i + 1], t, sample[i : i + 1], prev_sample=prev[i : i + 1]
        )
        torch.testing.assert_close(batched.log_prob[i : i + 1], alone.log_prob)
        torch.testing.assert_close(batched.prev_sample_mean[i : i + 1], alone.prev_sample_mean)


def test_rescoring_a_stored_step_gives_ratio_one_and_gradients():
    scheduler = make_scheduler("epsilon")
    torch.manual_seed(0)
    sample = torch.randn(2, 4, 8, 8)
    model_output = torch.randn(2, 4, 8, 8, requires_grad=True)
    t = scheduler.timesteps[3]
    sampled = ddim_step_with_logprob(
        scheduler, model_output.detach(), t, sample, generator=torch.Generator().manual_seed(0)
    )
    rescored = ddim_step_with_logprob(scheduler, model_output, t, sample, prev_sample=sampled.prev_sample)
    ratio = torch.exp(rescored.log_prob - sampled.log_prob)
    torch.testing.assert_close(ratio, torch.ones(2))
    rescored.log_prob.sum().backward()
    assert model_output.grad is not None and model_output.grad.abs().sum() > 0
    # a different prev_sample is less likely than the mean itself
    at_mean = ddim_step_with_logprob(scheduler, model_output, t, sample, prev_sample=sampled.prev_sample_mean)
    assert (at_mean.log_prob > rescored.log_prob).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_samples_are_scored_as_stored(dtype):
    """The log-probability of a bf16/fp16 step is that of the rounded sample, so re-scoring it gives ratio 1."""
    scheduler = make_scheduler("v_prediction")
    torch.manual_seed(0)
    sample, model_output = torch.randn(2, 4, 8, 8, dtype=dtype), torch.randn(2, 4, 8, 8, dtype=dtype)
    t = scheduler.timesteps[2]
    sampled = ddim_step_with_logprob(scheduler, model_output, t, sample, generator=torch.Generator().manual_seed(0))
    assert sampled.prev_sample.dtype == dtype
    rescored = ddim_step_with_logprob(scheduler, model_output, t, sample, prev_sample=sampled.prev_sample)
    torch.testing.assert_close(rescored.log_prob, sampled.log_prob, rtol=0, atol=0)
    flow = flow_sde_step_with_logprob(0.7, 0.6, model_output, sample, generator=torch.Generator().manual_seed(0))
    flow_rescored = flow_sde_step_with_logprob(0.7, 0.6, model_output, sample, prev_sample=flow.prev_sample)
    torch.testing.assert_close(flow_rescored.log_prob, flow.log_prob, rtol=0, atol=0)


def test_ddim_step_rejects_bad_input():
    scheduler = make_scheduler("epsilon")
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="eta must be > 0"):
        ddim_step_with_logprob(scheduler, x, scheduler.timesteps[0], x, eta=0.0)
    with pytest.raises(ValueError, match="prediction_type"):
        ddim_step_with_logprob(scheduler, x, scheduler.timesteps[0], x, prediction_type="flow")
    with pytest.raises(ValueError, match="prev_sample has shape"):
        ddim_step_with_logprob(scheduler, x, scheduler.timesteps[0], x, prev_sample=torch.randn(1, 4, 4, 4))
    deterministic_end = make_scheduler("epsilon", set_alpha_to_one=True)
    with pytest.raises(ValueError, match="set_alpha_to_one=False"):
        ddim_step_with_logprob(deterministic_end, x, deterministic_end.timesteps[-1], x)
    with pytest.raises(ValueError, match="set_timesteps"):
        ddim_step_with_logprob(DDIMScheduler(), x, 999, x)


@pytest.mark.parametrize("sigma, sigma_next", [(0.5, 0.49), (0.8, 0.795)])
def test_flow_sde_step_preserves_the_marginal_of_an_exact_model(sigma, sigma_next):
    """Data x0 = 0: x_sigma = sigma * noise and the exact velocity is x / sigma. One Euler-Maruyama step of the
    SDE must map N(0, sigma^2) to N(0, sigma_next^2) up to O(dt^2): Var = c^2 sigma^2 + std^2 with c = mean / x."""
    x = torch.full((1, 1, 2, 2), 0.3)
    step = flow_sde_step_with_logprob(sigma, sigma_next, x / sigma, x, noise_level=0.7)
    c = (step.prev_sample_mean / x).flatten()[0]
    variance = c**2 * sigma**2 + step.std.flatten()[0] ** 2
    dt = sigma - sigma_next
    assert abs(variance - sigma_next**2) < 5 * dt**2
    # the log-probability is the Gaussian density around that mean
    expected = (
        torch.distributions.Normal(step.prev_sample_mean, step.std).log_prob(step.prev_sample).mean(dim=(1, 2, 3))
    )
    torch.testing.assert_close(step.log_prob, expected)


def test_flow_sde_step_tends_to_the_euler_ode_step_and_handles_sigma_one():
    torch.manual_seed(0)
    x, v = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    step = flow_sde_step_with_logprob(0.6, 0.5, v, x, noise_level=1e-4)
    torch.testing.assert_close(step.prev_sample_mean, x + v * (0.5 - 0.6), rtol=1e-4, atol=1e-4)
    start = flow_sde_step_with_logprob(1.0, 0.9, v, x)
    assert torch.isfinite(start.log_prob).all() and (start.std > 0).all()
    with pytest.raises(ValueError, match="sigma_next < sigma"):
        flow_sde_step_with_logprob(0.5, 0.6, v, x)
