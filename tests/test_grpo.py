"""GRPO: advantages and the clipped surrogate against hand-computed values; the GRPO trainer on a tiny generator."""

import math

import pytest
import torch

from finpercep_hf.generators.ddim_logprob import gaussian_kl
from finpercep_hf.trainers.grpo import clipped_surrogate_loss, group_advantages


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
