"""RM metrics against hand-computed values and an independent brute-force AUROC."""

import itertools
import math

import numpy as np
import pytest
import torch

from finpercep_hf.evaluation.rm_metrics import (
    RMMetricsAccumulator,
    ordering_accuracy,
    pairwise_accuracies,
    pdm_auroc,
    pdm_auroc_per_image,
    pdm_iou,
    pdm_l1,
    score_drift,
)

# Triplet 0: correct; 1: SR > SYN; 2: SYN > GT; 3: SR == SYN (a tie is wrong).
SCORE_SR = torch.tensor([0.1, 0.5, 0.2, 0.3])
SCORE_SYN = torch.tensor([0.2, 0.4, 0.3, 0.3])
SCORE_GT = torch.tensor([0.3, 0.6, 0.1, 0.9])


def maps(*rows_per_image):
    return torch.tensor(rows_per_image, dtype=torch.float32).unsqueeze(1)


def brute_force_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg) over all (positive, negative) pixel pairs."""
    positives, negatives = scores[labels], scores[~labels]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_ordering_and_pairwise_accuracies_hand_computed():
    assert ordering_accuracy(SCORE_SR, SCORE_SYN, SCORE_GT).item() == pytest.approx(0.25)
    pairs = pairwise_accuracies(SCORE_SR, SCORE_SYN, SCORE_GT)
    assert {name: value.item() for name, value in pairs.items()} == pytest.approx(
        {"acc_sr_syn": 0.5, "acc_syn_gt": 0.75, "acc_sr_gt": 0.75}
    )


def test_pdm_l1_iou_and_drift_hand_computed():
    pdm = maps([[0.9, 0.6], [0.2, 0.5]], [[0.1, 0.2], [0.3, 0.4]])
    pdm_target = maps([[1.0, 0.5], [0.0, 0.5]], [[0.1, 0.2], [0.3, 0.4]])
    mask = maps([[1, 0], [1, 0]], [[0, 0], [0, 0]])
    # image 0: |errors| 0.1, 0.1, 0.2, 0 -> 0.1; image 1: 0.
    assert pdm_l1(pdm, pdm_target).item() == pytest.approx(0.05)
    # image 0: predicted {(0,0), (0,1)} (0.5 is not > 0.5) vs mask {(0,0), (1,0)} -> 1/3; image 1: both empty -> 1.
    assert pdm_iou(pdm, mask).item() == pytest.approx((1 / 3 + 1) / 2)
    # threshold 0.15: image 0 predicts all 4 pixels -> 2/4; image 1 predicts 3 pixels of an empty mask -> 0.
    assert pdm_iou(pdm, mask, threshold=0.15).item() == pytest.approx((2 / 4 + 0) / 2)
    assert score_drift(torch.tensor([0.5, 0.7]), torch.tensor([0.4, 0.9])).item() == pytest.approx(0.15)


def test_pdm_auroc_hand_computed_with_ties_and_single_class_masks():
    pdm = maps([[0.9, 0.2], [0.5, 0.5]], [[0.3, 0.3], [0.3, 0.3]], [[0.1, 0.8], [0.1, 0.8]])
    mask = maps([[1, 0], [1, 0]], [[0, 0], [0, 0]], [[1, 0], [1, 0]])
    per_image = pdm_auroc_per_image(pdm, mask)
    # image 0: pairs (0.9>0.2), (0.9>0.5), (0.5>0.2), (0.5==0.5) -> 3.5 / 4; image 1: one class -> NaN; image 2: 0.
    assert per_image[0].item() == pytest.approx(0.875)
    assert math.isnan(per_image[1].item())
    assert per_image[2].item() == 0.0
    assert pdm_auroc(pdm, mask).item() == pytest.approx(0.4375)
    assert math.isnan(pdm_auroc(pdm[1:2], mask[1:2]).item())
    # A constant map cannot separate anything: exactly 0.5.
    assert pdm_auroc(torch.full_like(pdm[:1], 0.7), mask[:1]).item() == 0.5


def test_pdm_auroc_matches_brute_force_on_quantised_random_maps():
    generator = torch.Generator().manual_seed(0)
    pdm = torch.randint(0, 5, (3, 1, 6, 7), generator=generator).float() / 4  # many ties
    mask = torch.rand(3, 1, 6, 7, generator=generator) > 0.6
    per_image = pdm_auroc_per_image(pdm, mask.float())
    for index in range(3):
        expected = brute_force_auroc(pdm[index].flatten().numpy(), mask[index].flatten().numpy())
        assert per_image[index].item() == pytest.approx(expected, abs=1e-12)


def test_accumulator_combines_batches_of_different_sizes_and_resolutions():
    accumulator = RMMetricsAccumulator()
    accumulator.update(score_sr=SCORE_SR[:1], score_syn=SCORE_SYN[:1], score_gt=SCORE_GT[:1])
    accumulator.update(score_sr=SCORE_SR[1:], score_syn=SCORE_SYN[1:], score_gt=SCORE_GT[1:])
    pdm_a = maps([[0.9, 0.2], [0.5, 0.5]])
    mask_a = maps([[1, 0], [1, 0]])
    pdm_b = torch.tensor([[[[0.1, 0.8, 0.8]]], [[[0.5, 0.5, 0.5]]]])
    mask_b = torch.tensor([[[[1.0, 0.0, 0.0]]], [[[0.0, 0.0, 0.0]]]])
    accumulator.update(pdm=pdm_a, pdm_target=torch.zeros_like(pdm_a), mask=mask_a)
    accumulator.update(pdm=pdm_b, pdm_target=torch.zeros_like(pdm_b), mask=mask_b.numpy())
    accumulator.update(score_gt=torch.tensor([0.5, 0.7]), base_score_gt=torch.tensor([0.4, 0.9]))
    result = accumulator.compute()
    assert result == pytest.approx(
        {
            "ordering_accuracy": 0.25,
            "acc_sr_syn": 0.5,
            "acc_syn_gt": 0.75,
            "acc_sr_gt": 0.75,
            # per-image L1: 0.525, 1.7/3, 0.5
            "pdm_l1": (0.525 + 1.7 / 3 + 0.5) / 3,
            # per-image AUROC: 0.875, 0 (image b1 has one class and is left out)
            "pdm_auroc": 0.4375,
            # per-image IoU: 1/2 (pred {(0,0)} vs mask {(0,0), (1,0)}), 0 (pred {1,2} vs mask {0}), 1 (both empty)
            "pdm_iou": (1 / 2 + 0 + 1) / 3,
            "score_drift": 0.15,
        }
    )
    accumulator.reset()
    assert accumulator.compute() == {}


def test_bad_inputs_raise_errors_naming_them():
    with pytest.raises(ValueError, match="score_gt must have shape"):
        ordering_accuracy(SCORE_SR, SCORE_SYN, SCORE_GT[None])
    with pytest.raises(ValueError, match="same batch size"):
        pairwise_accuracies(SCORE_SR, SCORE_SYN, SCORE_GT[:2])
    with pytest.raises(ValueError, match=r"mask must have shape \(B, 1, H, W\)"):
        pdm_auroc(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="same shape"):
        pdm_l1(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="score_sr, score_syn and score_gt together"):
        RMMetricsAccumulator().update(score_sr=SCORE_SR, score_gt=SCORE_GT)
    with pytest.raises(ValueError, match="without pdm"):
        RMMetricsAccumulator().update(mask=torch.zeros(1, 1, 2, 2))
