import pytest
import torch

from finpercep_hf.losses import align_loss, map_bce_loss, map_loss, rank_loss, total_loss


def test_map_loss_is_mean_l1():
    pdm = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    target = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]]])
    assert map_loss(pdm, target).item() == pytest.approx((0.5 + 0 + 1 + 0.25) / 4)
    with pytest.raises(ValueError, match="same shape"):
        map_loss(pdm, target[..., :1])


def test_map_bce_loss_is_mean_binary_cross_entropy_of_the_logits():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.25, 1.0]]]])
    probability = torch.sigmoid(logits)
    expected = -(target * probability.log() + (1 - target) * (1 - probability).log()).mean()
    assert map_bce_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"pdm_logits \(1, 1, 2, 2\) and pdm_target \(1, 1, 2, 1\)"):
        map_bce_loss(logits, target[..., :1])


def test_rank_loss_hand_computed():
    s_sr = torch.tensor([0.2, 0.5])
    s_syn = torch.tensor([0.4, 0.45])
    s_gt = torch.tensor([0.9, 0.46])
    # sample 1: relu(0.1 - 0.2) + relu(0.1 - 0.5) = 0; sample 2: relu(0.1 + 0.05) + relu(0.1 - 0.01) = 0.15 + 0.09
    assert rank_loss(s_sr, s_syn, s_gt, margin_sr=0.1, margin_gt=0.1).item() == pytest.approx((0 + 0.24) / 2)


def test_align_loss_and_total():
    score_gt = torch.tensor([0.7, 0.2], requires_grad=True)
    base = torch.tensor([0.5, 0.5], requires_grad=True)
    loss = align_loss(score_gt, base)
    assert loss.item() == pytest.approx((0.2 + 0.3) / 2)
    loss.backward()
    assert base.grad is None  # the anchor (frozen RM_0) gets no gradient
    terms = {"map": torch.tensor(0.5), "rank": torch.tensor(0.2), "align": torch.tensor(0.1)}
    assert total_loss(terms, 2.0, 3.0, 4.0).item() == pytest.approx(1.0 + 0.6 + 0.4)
    with pytest.raises(ValueError, match="unknown"):
        total_loss({"lpips": torch.tensor(1.0)}, 1, 1, 1)
