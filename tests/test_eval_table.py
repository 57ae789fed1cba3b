"""Paper-layout tables from fixed numbers: Markdown layout, bold best and italic second best per direction, CSV
round trip."""

import pytest

from finpercep_hf.evaluation.table import FinPercepResult, read_results_csv, results_to_markdown, write_results_csv

# Two datasets, three runs side by side (as the paper's DiT4SR columns); RealLQ250 has no HR, so no LPIPS.
RESULTS = [
    FinPercepResult("DrealSR", "lpips", "Baseline", 0.365),
    FinPercepResult("DrealSR", "lpips", "w/ IQA", 0.378),
    FinPercepResult("DrealSR", "lpips", "w/ Ours", 0.342),
    FinPercepResult("DrealSR", "musiq", "Baseline", 64.95),
    FinPercepResult("DrealSR", "musiq", "w/ IQA", 63.456),
    FinPercepResult("DrealSR", "musiq", "w/ Ours", 67.823),
    FinPercepResult("RealLQ250", "musiq", "Baseline", 71.832),
    FinPercepResult("RealLQ250", "musiq", "w/ Ours", 73.456),
    FinPercepResult("RealLQ250", "clipiqa", "Baseline", 0.5781),
    FinPercepResult("RealLQ250", "clipiqa", "w/ IQA", 0.5779),
    FinPercepResult("RealLQ250", "clipiqa", "w/ Ours", 0.586),
    FinPercepResult("RealLQ250", "my_metric", "w/ IQA", 2.0),
    FinPercepResult("RealLQ250", "my_metric", "w/ Ours", 1.0),
]


def test_markdown_layout_bold_best_and_italic_second_by_direction():
    markdown = results_to_markdown(RESULTS, lower_better={"my_metric": True})
    assert markdown.splitlines() == [
        "| Datasets | Metrics | Baseline | w/ IQA | w/ Ours |",
        "|---|---|---:|---:|---:|",
        "| DrealSR | LPIPS ↓ | _0.365_ | 0.378 | **0.342** |",
        "|  | MUSIQ ↑ | _64.950_ | 63.456 | **67.823** |",
        "| RealLQ250 | MUSIQ ↑ | 71.832 | – | **73.456** |",  # two values: no second best
        "|  | CLIP-IQA ↑ | _0.578_ | _0.578_ | **0.586** |",  # 0.5781 and 0.5779 tie at the shown precision
        "|  | my_metric ↓ | – | 2.000 | **1.000** |",
    ]


def test_ties_at_the_shown_precision_are_all_bold_and_single_values_are_not():
    results = [FinPercepResult("Set", "psnr", "a", 20.0001), FinPercepResult("Set", "psnr", "b", 20.0004)]
    assert "| Set | PSNR ↑ | **20.000** | **20.000** |" in results_to_markdown(results)
    assert "| Set | PSNR ↑ | 20.000 |" in results_to_markdown(results[:1])


def test_unknown_metric_direction_and_duplicates_are_errors():
    with pytest.raises(ValueError, match="metric 'my_metric' is not registered"):
        results_to_markdown(RESULTS)
    with pytest.raises(ValueError, match="duplicate result: dataset 'DrealSR', metric 'lpips', run 'Baseline'"):
        results_to_markdown(RESULTS + RESULTS[:1])


def test_csv_round_trip_in_the_wide_layout(tmp_path):
    path = write_results_csv(RESULTS, tmp_path / "metrics.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "dataset,metric,Baseline,w/ IQA,w/ Ours"
    assert lines[1] == "DrealSR,lpips,0.365,0.378,0.342"
    assert lines[3] == "RealLQ250,musiq,71.832,,73.456"
    assert read_results_csv(path) == RESULTS
    (tmp_path / "bad.csv").write_text("name,score\na,1\n")
    with pytest.raises(ValueError, match="bad.csv: not a results table"):
        read_results_csv(tmp_path / "bad.csv")
