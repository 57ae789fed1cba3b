"""Result tables in the layout of the paper's Table 1: one row per (dataset, metric), one column per run (e.g.
"Baseline", "w/ IQA", "w/ Ours"), the best value of each row in bold and the second best in italics (direction from
the metric registry).

Results are flat [`FinPercepResult`] records; `write_results_csv` / `read_results_csv` round-trip them through
a wide CSV (``dataset,metric,<run 1>,<run 2>,...``; metric = registry name), so tables from separate
``finpercep evaluate`` calls can be merged; `results_to_markdown` renders the Markdown table.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .metrics import get_metric_spec

MISSING_CELL = "–"


@dataclass(frozen=True)
class FinPercepResult:
    """One number of a results table: ``metric`` (a registry name) of ``run`` on ``dataset``."""

    dataset: str
    metric: str
    run: str
    value: float


def _grid(results: Iterable[FinPercepResult]) -> tuple[list[str], list[tuple[str, str]], dict]:
    """Runs and (dataset, metric) rows in first-seen order, and ``{(dataset, metric, run): value}``."""
    runs: dict[str, None] = {}
    rows: dict[tuple[str, str], None] = {}
    values: dict[tuple[str, str, str], float] = {}
    for result in results:
        key = (result.dataset, result.metric, result.run)
        if key in values:
            raise ValueError(
                f"duplicate result: dataset {result.dataset!r}, metric {result.metric!r}, run {result.run!r}."
            )
        runs.setdefault(result.run)
        rows.setdefault((result.dataset, result.metric))
        values[key] = float(result.value)
    return list(runs), list(rows), values


def write_results_csv(results: Iterable[FinPercepResult], path: str | Path) -> Path:
    """Write the wide table ``dataset,metric,<runs...>`` (empty cell = no value) and return its path."""
    runs, rows, values = _grid(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "metric", *runs])
        for dataset, metric in rows:
            cells = [values.get((dataset, metric, run)) for run in runs]
            writer.writerow([dataset, metric, *("" if cell is None else repr(cell) for cell in cells)])
    return path


def read_results_csv(path: str | Path) -> list[FinPercepResult]:
    """Read a table written by `write_results_csv` back into records."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or header[:2] != ["dataset", "metric"] or len(header) < 3:
            raise ValueError(f"{path}: not a results table (expected a header 'dataset,metric,<run>,...').")
        runs = header[2:]
        results = []
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line_number}: {len(row)} cells, the header has {len(header)}.")
            for run, cell in zip(runs, row[2:]):
                if cell != "":
                    results.append(FinPercepResult(row[0], row[1], run, float(cell)))
    return results


def _is_lower_better(metric: str, lower_better: Mapping[str, bool] | None) -> bool:
    if lower_better is not None and metric in lower_better:
        return lower_better[metric]
    try:
        return get_metric_spec(metric).lower_better
    except KeyError:
        raise ValueError(
            f"metric {metric!r} is not registered, so its direction is unknown: pass lower_better={{{metric!r}: ...}}."
        ) from None


def _label(metric: str, lower_better: bool) -> str:
    try:
        return get_metric_spec(metric).label
    except KeyError:
        return f"{metric} {'↓' if lower_better else '↑'}"


def results_to_markdown(
    results: Iterable[FinPercepResult], precision: int = 3, lower_better: Mapping[str, bool] | None = None
) -> str:
    """Render the paper-style Markdown table.

    Rows are grouped by dataset (its name on the group's first row), metrics are labelled with their direction
    (``LPIPS ↓``), missing values show as "–", and in each row with at least two values the best value (and any
    value equal to it at the shown precision) is bold; with three or more, the second best is in italics (the
    paper's red and blue). ``lower_better`` gives the direction of metrics that are not in the registry.
    """
    runs, rows, values = _grid(results)
    lines = ["| Datasets | Metrics | " + " | ".join(runs) + " |", "|---|---|" + "---:|" * len(runs)]
    previous_dataset = None
    for dataset, metric in rows:
        lower = _is_lower_better(metric, lower_better)
        row_values = [values.get((dataset, metric, run), math.nan) for run in runs]
        present = [value for value in row_values if not math.isnan(value)]
        shown = sorted({f"{value:.{precision}f}" for value in present}, key=float, reverse=not lower)
        best = shown[0] if len(present) >= 2 else None
        second = shown[1] if len(present) >= 3 and len(shown) >= 2 else None
        cells = []
        for value in row_values:
            text = MISSING_CELL if math.isnan(value) else f"{value:.{precision}f}"
            cells.append(f"**{text}**" if text == best else f"_{text}_" if text == second else text)
        shown_dataset = dataset if dataset != previous_dataset else ""
        previous_dataset = dataset
        lines.append(f"| {shown_dataset} | {_label(metric, lower)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["FinPercepResult", "MISSING_CELL", "read_results_csv", "results_to_markdown", "write_results_csv"]
