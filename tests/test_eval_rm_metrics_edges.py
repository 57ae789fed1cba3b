"""Edge cases of the RM metrics that mutation testing showed untested: ties, thresholds, exact messages, dtypes."""

import math

import pytest
import torch

from finpercep_hf.evaluation.rm_metrics import (
    MASK_THRESHOLD,
    RMMetricsAccumulator,
    ordering_accuracy,
    pairwise_accuracies,
    pdm_auroc,
    pdm_auroc_per_image,
    pdm_iou,
    pdm_iou_per_image,
    pdm_l1,
    pdm_l1_per_image,
    score_drift,
)

SCORES = (torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4]), torch.tensor([0.5, 0.6]))
MAPS = (torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize(
    ("function", "names", "values"),
    [
        (ordering_accuracy, ("score_sr", "score_syn", "score_gt"), SCORES),
        (pairwise_accuracies, ("score_sr", "score_syn", "score_gt"), SCORES),
        (score_drift, ("score_gt", "base_score_gt"), SCORES[:2]),
        (pdm_l1_per_image, ("pdm", "pdm_target"), MAPS),
        (pdm_auroc_per_image, ("pdm", "mask"), MAPS),
        (pdm_iou_per_image, ("pdm", "mask"), MAPS),
    ],
)
def test_every_argument_is_named_in_its_shape_and_dtype_errors(function, names, values):
    for position, name in enumerate(names):
        wrong_shape = list(values)
        wrong_shape[position] = values[position][None]
        with pytest.raises(ValueError, match=rf"^{name} must have shape \(B,(?: 1, H, W)?\), got"):
            function(*wrong_shape)
        complex_value = list(values)
        complex_value[position] = values[position].to(torch.complex64)
        with pytest.raises(TypeError, match=rf"^{name} must be a real tensor, got dtype torch.complex64\.$"):
            function(*complex_value)


def test_maps_need_exactly_one_channel_and_four_dims():
    with pytest.raises(ValueError, match=r"^pdm must have shape \(B, 1, H, W\), got \(1, 3, 2, 2\)\.$"):
        pdm_l1(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"^pdm must have shape \(B, 1, H, W\), got \(2, 1, 4\)\.$"):
        pdm_l1(torch.zeros(2, 1, 4), torch.zeros(2, 1, 4))


def test_results_are_float64_whatever_the_input_dtype():
    half = [score.half() for score in SCORES]
    assert ordering_accuracy(*half).dtype == torch.float64
    assert score_drift(*half[:2]).dtype == torch.float64
    assert pdm_l1(MAPS[0].half(), MAPS[1].half()).dtype == torch.float64
    # 0.1 is not exactly representable in float16: float64 arithmetic on the float16 values gives this exactly
    assert (
        score_drift(torch.tensor([0.1]).half(), torch.tensor([0.0]).half()).item() == torch.tensor(0.1).half().item()
    )


def test_ties_count_as_wrong_in_every_ordering_metric():
    sr, syn, gt = torch.tensor([0.5]), torch.tensor([0.7]), torch.tensor([0.7])
    assert ordering_accuracy(sr, syn, gt).item() == 0.0
    assert pairwise_accuracies(sr, syn, gt)["acc_syn_gt"].item() == 0.0
    assert pairwise_accuracies(sr, sr + 0.1, sr)["acc_sr_gt"].item() == 0.0
    accumulator = RMMetricsAccumulator()
    accumulator.update(score_sr=sr, score_syn=syn, score_gt=gt)
    accumulator.update(score_sr=sr, score_syn=sr + 0.1, score_gt=sr)
    results = accumulator.compute()
    assert results["ordering_accuracy"] == 0.0 and results["acc_syn_gt"] == 0.0 and results["acc_sr_gt"] == 0.5


def test_mask_pixels_at_the_threshold_are_negatives():
    pdm = torch.tensor([[[[0.9, 0.1], [0.2, 0.3]]]])
    mask = torch.tensor([[[[1.0, MASK_THRESHOLD], [0.0, 0.0]]]])
    assert pdm_auroc_per_image(pdm, mask).tolist() == [1.0]  # one positive (0.9) above three negatives
    assert pdm_iou_per_image(torch.tensor([[[[0.9, 0.0], [0.0, 0.0]]]]), mask).tolist() == [1.0]


def test_auroc_with_a_single_negative_pixel_and_the_all_single_class_nan():
    pdm = torch.tensor([[[[0.9, 0.1], [0.8, 0.95]]]])
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    assert pdm_auroc_per_image(pdm, mask).tolist() == [1.0]
    empty = pdm_auroc(pdm, torch.zeros_like(mask))
    assert math.isnan(empty.item()) and empty.dtype == torch.float64


def test_iou_of_one_pixel_unions():
    one = torch.zeros(1, 1, 2, 2)
    one[..., 0, 0] = 1.0
    nothing = torch.zeros(1, 1, 2, 2)
    assert pdm_iou(one, one).item() == 1.0  # union of one pixel, fully shared
    assert pdm_iou(one, nothing).item() == 0.0  # union of one pixel, nothing shared
    assert pdm_iou(nothing, nothing).item() == 1.0  # both empty


def test_accumulator_uses_its_iou_threshold_and_only_the_maps_given():
    pdm = torch.full((1, 1, 2, 2), 0.6)
    mask = torch.ones(1, 1, 2, 2)
    strict = RMMetricsAccumulator(iou_threshold=0.8)
    strict.update(pdm=pdm, mask=mask)
    results = strict.compute()
    assert set(results) == {"pdm_auroc", "pdm_iou"} and results["pdm_iou"] == 0.0
    assert math.isnan(results["pdm_auroc"])  # a one-class mask has no AUROC
    default = RMMetricsAccumulator()
    default.update(pdm=pdm, mask=mask)
    assert default.compute()["pdm_iou"] == 1.0
    only_target = RMMetricsAccumulator()
    only_target.update(pdm=pdm, pdm_target=mask)
    assert only_target.compute() == {"pdm_l1": pytest.approx(0.4)}


def test_update_errors_are_exact():
    with pytest.raises(ValueError, match=r"^ordering metrics need score_sr, score_syn and score_gt together\.$"):
        RMMetricsAccumulator().update(score_syn=SCORES[1])
    with pytest.raises(ValueError, match=r"^pdm_target / mask were given without pdm\.$"):
        RMMetricsAccumulator().update(pdm_target=MAPS[0])
    with pytest.raises(ValueError, match=r"^base_score_gt was given without score_gt\.$"):
        RMMetricsAccumulator().update(base_score_gt=SCORES[0])
    accumulator = RMMetricsAccumulator()
    accumulator.update(score_gt=SCORES[2], base_score_gt=SCORES[0])
    assert accumulator.compute() == {"score_drift": pytest.approx(0.4)}


@pytest.mark.parametrize("name", ["score_sr", "score_syn", "score_gt", "base_score_gt"])
def test_accumulator_names_the_badly_shaped_score(name):
    scores = {"score_sr": SCORES[0], "score_syn": SCORES[1], "score_gt": SCORES[2], "base_score_gt": SCORES[0]}
    scores[name] = scores[name][None]
    with pytest.raises(ValueError, match=rf"^{name} must have shape \(B,\), got \(1, 2\)\.$"):
        RMMetricsAccumulator().update(**scores)


def test_drift_alone_names_a_badly_shaped_score_gt():
    with pytest.raises(ValueError, match=r"^score_gt must have shape \(B,\), got \(1, 2\)\.$"):
        RMMetricsAccumulator().update(score_gt=SCORES[2][None], base_score_gt=SCORES[0])
