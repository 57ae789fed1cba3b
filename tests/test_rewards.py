"""Reward functions: documented values on known inputs, gradients, TRL-style calls, model/path/callable inputs."""

import pytest
import torch

from finpercep_hf.images import pil_to_tensor, tensor_to_pil
from finpercep_hf.models import FinPercepOutput
from finpercep_hf.rewards import (
    BaseIQAReward,
    CallableReward,
    DecoupledReward,
    FinPercepReward,
    as_reward_function,
)


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(3, 3, 32, 40)


def with_known_outputs(rm, base_score, pdm):
    """Make ``rm`` return fixed outputs (a stand-in for a trained RM whose numbers we know)."""
    rm.forward = lambda pixel_values: FinPercepOutput(
        global_score=torch.full_like(base_score, 0.25), base_score=base_score, pdm=pdm
    )
    return rm


def test_finpercep_and_base_iqa_rewards_are_the_rm_scores(make_rm, images):
    rm1 = make_rm(stage=1, perturb_head=True)
    output = rm1(images)
    assert (output.global_score - output.base_score).abs().min() > 1e-3  # a swap of the two would fail below
    torch.testing.assert_close(FinPercepReward(rm1)(images), output.global_score)
    torch.testing.assert_close(BaseIQAReward(rm1)(images), output.base_score)
    rm0 = make_rm(stage=0)
    torch.testing.assert_close(FinPercepReward(rm0)(images), rm0(images).base_score)


def test_decoupled_reward_documented_values(make_rm, images):
    base_score = torch.tensor([0.8, 0.2, 0.5])
    pdm = torch.zeros(3, 1, 32, 40)
    pdm[0, 0, 3, 4], pdm[1, 0, 10, 10], pdm[2, 0, 0, 0] = 0.4, 1.0, 0.0
    rm = with_known_outputs(make_rm(stage=1), base_score, pdm)
    # 0.5 * base + 0.5 * (1 - max pdm)
    torch.testing.assert_close(DecoupledReward(rm)(images), torch.tensor([0.7, 0.1, 0.75]))
    torch.testing.assert_close(DecoupledReward(rm, weights=(1.0, 0.0))(images), base_score)
    torch.testing.assert_close(FinPercepReward(rm)(images), torch.full((3,), 0.25))
    rm0 = with_known_outputs(make_rm(stage=0), base_score, None)
    torch.testing.assert_close(DecoupledReward(rm0)(images), base_score)


def test_rewards_are_differentiable_when_asked(make_rm, images):
    reward = FinPercepReward(make_rm(stage=1))
    pixels = images.clone().requires_grad_(True)
    reward(pixels).sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    assert not reward(images.clone().requires_grad_(True), differentiable=False).requires_grad


def test_trl_style_call_returns_floats_matching_tensor_call(make_rm, images):
    reward = FinPercepReward(make_rm(stage=1))
    completions = [tensor_to_pil(image) for image in images]
    scores = reward(prompts=["", "", ""], completions=completions)
    assert isinstance(scores, list) and all(isinstance(score, float) for score in scores)
    quantised = torch.stack([pil_to_tensor(image) for image in completions])
    torch.testing.assert_close(torch.tensor(scores), reward(quantised))
    with pytest.raises(ValueError, match="same shape"):
        reward(completions=[images[0], images[0, :, :16]])


def test_as_reward_function_accepts_model_path_callable(make_rm, tiny_rm1_dir, images):
    rm = make_rm(stage=1)
    assert isinstance(as_reward_function(rm), FinPercepReward)
    assert isinstance(as_reward_function(rm, reward_type="decoupled"), DecoupledReward)
    from_path = as_reward_function(str(tiny_rm1_dir), reward_type="base_iqa")
    assert isinstance(from_path, BaseIQAReward) and from_path.source == str(tiny_rm1_dir)
    assert not any(p.requires_grad for p in from_path.model.parameters())

    def brightness(pixels):
        return pixels.mean(dim=(1, 2, 3))

    plain = as_reward_function(brightness)
    assert isinstance(plain, CallableReward) and plain.name == "brightness"
    torch.testing.assert_close(plain(images), images.mean(dim=(1, 2, 3)))
    listed = CallableReward(lambda pixels: [1.0] * len(pixels))
    torch.testing.assert_close(listed(images), torch.ones(3))
    with pytest.raises(ValueError, match="reward_type"):
        as_reward_function(rm, reward_type="clip")
    with pytest.raises(TypeError, match="reward must be"):
        as_reward_function(3)
    with pytest.raises(ValueError, match="expected rewards of shape"):
        CallableReward(lambda pixels: pixels.mean())(images)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        FinPercepReward(rm)(images[0])
