"""Evaluation: reward-model metrics on FGR triplets, the Table-1 metric suite and the reward-hacking probe."""

from .rm_metrics import (
    RMMetricsAccumulator,
    ordering_accuracy,
    pairwise_accuracies,
    pdm_auroc,
    pdm_iou,
    pdm_l1,
    score_drift,
)

__all__ = [
    "RMMetricsAccumulator",
    "ordering_accuracy",
    "pairwise_accuracies",
    "pdm_auroc",
    "pdm_iou",
    "pdm_l1",
    "score_drift",
]
