"""Evaluation: reward-model metrics on FGR triplets, the Table-1 metric suite and the reward-hacking probe.

Modules: `rm_metrics` (ordering accuracy, PDM L1/AUROC/IoU, score drift; shared with the RM trainer),
`reward_model_eval` (those metrics over an FGR split), `metrics` (registry of PSNR, SSIM, pyiqa metrics and the
FinPercep-RM score), `suite` (SR/GT pairing and per-image scoring), `generate` (run an SR generator first),
`table` (paper-layout CSV + Markdown), `artifacts` and `probe` (the reward-hacking probe). Only the light modules
are imported here; import `probe`, `suite`, `generate` and `reward_model_eval` from their modules.
"""

from .metrics import (
    METRIC_REGISTRY,
    PAPER_METRICS,
    FinPercepMetric,
    FinPercepMetricSpec,
    FinPercepMissingWeightsError,
    build_metric,
    get_metric_spec,
    list_metrics,
    register_metric,
)
from .rm_metrics import (
    RMMetricsAccumulator,
    ordering_accuracy,
    pairwise_accuracies,
    pdm_auroc,
    pdm_iou,
    pdm_l1,
    score_drift,
)
from .table import FinPercepResult, read_results_csv, results_to_markdown, write_results_csv

__all__ = [
    "METRIC_REGISTRY",
    "PAPER_METRICS",
    "FinPercepMetric",
    "FinPercepMetricSpec",
    "FinPercepMissingWeightsError",
    "FinPercepResult",
    "RMMetricsAccumulator",
    "build_metric",
    "get_metric_spec",
    "list_metrics",
    "ordering_accuracy",
    "pairwise_accuracies",
    "pdm_auroc",
    "pdm_iou",
    "pdm_l1",
    "read_results_csv",
    "register_metric",
    "results_to_markdown",
    "score_drift",
    "write_results_csv",
]
