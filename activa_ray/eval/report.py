"""Summaries and report files of an evaluation: means ± standard errors over (model, condition)
pairs, written as Markdown, CSV and JSON (temporary name, then rename)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from activa_ray.io_utils import atomic_write_text

REPORT_METRICS = ("mmd", "wsd", "erg", "perm_pass")
METRIC_TITLES = {"mmd": "MMD", "wsd": "WSD", "erg": "ERG", "perm_pass": "perm. test pass"}
PASS_LEVEL = 0.05  # a pair "passes" when the energy test does not reject at this level
ROLE_TITLES = {"descendants": "descendants of the target", "non_descendants": "non-descendants of the target"}


def summarize(per_pair: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{mmd, wsd, erg, perm_p: (P,)} -> {mmd, wsd, erg, perm_pass: {mean, sem, n}} over finite pairs."""
    columns = {
        "mmd": per_pair["mmd"],
        "wsd": per_pair["wsd"],
        "erg": per_pair["erg"],
        # NaN stays NaN: a failed pair neither passes nor fails the test.
        "perm_pass": np.where(np.isfinite(per_pair["perm_p"]), (per_pair["perm_p"] >= PASS_LEVEL).astype(float), np.nan),
    }
    out = {}
    for name, values in columns.items():
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        count = len(values)
        mean = float(values.mean()) if count else math.nan
        sem = float(values.std(ddof=1) / math.sqrt(count)) if count > 1 else math.nan
        out[name] = {"mean": mean, "sem": sem, "n": count}
    return out


def _json_safe(value: Any) -> Any:
    """NaN and inf are not JSON: write them as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: str | os.PathLike, content: Any) -> Path:
    return atomic_write_text(path, json.dumps(_json_safe(content), indent=2, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _cell(stats: Mapping[str, float], digits: int = 3) -> str:
    mean, sem = stats.get("mean", math.nan), stats.get("sem", math.nan)
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(sem):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sem:.{digits}f}"


def _table(results: Mapping[str, Mapping[str, Mapping[str, float]]], labels: Mapping[str, str], failures: Mapping[str, int]) -> list[str]:
    lines = ["| method | " + " | ".join(METRIC_TITLES[m] for m in REPORT_METRICS) + " | pairs | failed |"]
    lines.append("|---" * (len(REPORT_METRICS) + 3) + "|")
    for method, stats in results.items():
        cells = [_cell(stats[m]) for m in REPORT_METRICS]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + f" | {stats['mmd']['n']} | {failures.get(method, 0)} |")
    return lines


def markdown_report(
    results: Mapping[str, Any],
    by_role: Mapping[str, Any],
    labels: Mapping[str, str],
    failures: Mapping[str, int],
    timing_ms: Mapping[str, float],
    header: Mapping[str, Any],
) -> str:
    """The paper's tables 1-2 layout: one row per method, mean ± standard error per metric."""
    lines = ["# Evaluation", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        "",
        "Means ± standard errors over (model, condition) pairs. MMD, WSD, ERG: lower is better; the",
        f"noise floor (`floor`, two independent draws of the truth) is what a perfect predictor reaches on average. Perm. test pass: share of pairs whose energy permutation test gives p >= {PASS_LEVEL} (the floor's is about {1 - PASS_LEVEL:.2f}).",
        "",
        "## All variables",
        "",
    ]
    lines += _table(results, labels, failures)
    for role, role_results in by_role.items():
        lines += ["", f"## {ROLE_TITLES.get(role, role)}", ""]
        lines += _table(role_results, labels, {})
    if timing_ms:
        lines += ["", "## Time", "", "| method | ms per query (dataset + intervention) |", "|---|---|"]
        lines += [f"| {labels.get(m, m)} | {ms:.3f} |" for m, ms in timing_ms.items()]
    return "\n".join(lines) + "\n"


def results_csv_rows(results: Mapping[str, Any], by_role: Mapping[str, Any], failures: Mapping[str, int]) -> list[list[Any]]:
    """Rows (method, role, metric, mean, sem, n, failures) for results.csv."""
    rows = []
    for role, table in [("all", results), *by_role.items()]:
        for method, stats in table.items():
            for metric in REPORT_METRICS:
                entry = stats[metric]
                rows.append([method, role, metric, entry["mean"], entry["sem"], entry["n"], failures.get(method, 0)])
    return rows
