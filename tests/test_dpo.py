"""Diffusion-DPO: the losses against hand-computed values, pair forming, and the DPO trainer on a tiny generator."""

import math

import pytest
import torch

from finpercep_hf.trainers.preference import diffusion_dpo_loss, form_preference_pairs

# Two pairs. logits = (ref_w - ref_l) - (model_w - model_l) = (0 - (0.1 - 0.3), 0 - (0.2 - 0.1)) = (0.2, -0.1)
MODEL_W, MODEL_L = torch.tensor([0.10, 0.20]), torch.tensor([0.30, 0.10])
REF_W, REF_L = torch.tensor([0.20, 0.20]), torch.tensor([0.20, 0.20])
BETA = 2.0


@pytest.mark.parametrize(
    "loss_type, expected",
    [
        # -logsigmoid(x) = log(1 + exp(-x)) at beta * logits = (0.4, -0.2)
        ("sigmoid", [math.log1p(math.exp(-0.4)), math.log1p(math.exp(0.2))]),
        # relu(1 - beta * logits)
        ("hinge", [0.6, 1.2]),
        # (logits - 1 / (2 * beta))^2 = (0.2 - 0.25)^2, (-0.1 - 0.25)^2
        ("ipo", [0.0025, 0.1225]),
    ],
)
def test_dpo_loss_matches_hand_computed_values(loss_type, expected):
    out = diffusion_dpo_loss(MODEL_W, MODEL_L, REF_W, REF_L, beta=BETA, loss_type=loss_type)
    torch.testing.assert_close(out.logits, torch.tensor([0.2, -0.1]))
    torch.testing.assert_close(out.losses, torch.tensor(expected))
    assert out.implicit_accuracy.item() == pytest.approx(0.5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_dpo_loss_gradient_lowers_winner_error_and_raises_loser_error(loss_type):
    """At model == reference every loss pushes the winner's error down and the loser's up."""
    model_w = torch.tensor([0.2, 0.4], requires_grad=True)
    model_l = torch.tensor([0.3, 0.1], requires_grad=True)
    out = diffusion_dpo_loss(model_w, model_l, model_w.detach(), model_l.detach(), beta=BETA, loss_type=loss_type)
    assert out.implicit_accuracy.item() == pytest.approx(0.5)  # ties count one half
    out.losses.mean().backward()
    assert (model_w.grad > 0).all() and (model_l.grad < 0).all()


def test_dpo_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="loss_type"):
        diffusion_dpo_loss(MODEL_W, MODEL_L, REF_W, REF_L, beta=BETA, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        diffusion_dpo_loss(MODEL_W, MODEL_L, REF_W, REF_L, beta=0.0)
    with pytest.raises(ValueError, match="same shape"):
        diffusion_dpo_loss(MODEL_W, MODEL_L[:1], REF_W, REF_L, beta=BETA)


REWARDS = torch.tensor([[0.1, 0.5, 0.3], [0.2, 0.2, 0.2], [0.9, 0.1, 0.4]])


def test_best_vs_worst_pairs_skip_tied_groups():
    pairs = form_preference_pairs(REWARDS, mode="best_worst")
    assert pairs.winner.tolist() == [1, 6] and pairs.loser.tolist() == [0, 7] and pairs.group.tolist() == [0, 2]
    torch.testing.assert_close(pairs.reward_gap, torch.tensor([0.4, 0.8]))
    assert len(pairs) == 2


def test_all_pairs_and_min_reward_gap():
    pairs = form_preference_pairs(REWARDS, mode="all")
    assert sorted(zip(pairs.winner.tolist(), pairs.loser.tolist())) == [(1, 0), (1, 2), (2, 0), (6, 7), (6, 8), (8, 7)]
    flat = REWARDS.flatten()
    assert (flat[pairs.winner] > flat[pairs.loser]).all()
    torch.testing.assert_close(pairs.reward_gap, flat[pairs.winner] - flat[pairs.loser])
    wide = form_preference_pairs(REWARDS, mode="all", min_reward_gap=0.25)
    assert sorted(zip(wide.winner.tolist(), wide.loser.tolist())) == [(1, 0), (6, 7), (6, 8), (8, 7)]
    assert len(form_preference_pairs(torch.ones(2, 4))) == 0


def test_pair_forming_rejects_bad_input():
    with pytest.raises(ValueError, match="K >= 2"):
        form_preference_pairs(torch.rand(3, 1))
    with pytest.raises(ValueError, match="mode"):
        form_preference_pairs(REWARDS, mode="random")
