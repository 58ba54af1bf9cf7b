"""A model on a real interventional dataset: each intervention condition predicted from the
observational rows, compared with the condition's real rows on the variables NOT intervened on,
against the conditional baseline, no-effect and the noise floor (no Ray).

The table (CSV with a header row, or Parquet): the variables as numeric columns, plus one column
`intervention` naming, for each row, the variable that was intervened on; an empty cell or
"observational" marks an observational row. Every distinct name is one condition, so one target
per row:

    intervention,raf,mek,erk
    observational,3.1,2.0,1.7
    ,3.4,2.2,1.9
    mek,3.0,4.8,1.1

For every condition:
- obs: the observational rows, at most `max_obs` of them (a seeded subsample, one for all
  conditions). ACTIVA is a set model trained on a fixed N (gauss8: 30), and its cost grows with
  N; 200 rows pin the observational law down without leaving that regime by orders of magnitude.
- value: the mean of the target column over the condition's rows, i.e. the level the intervention
  actually reached (a real intervention fixes no number). A model that knows only a table of
  values (index mode) refuses it; it then gets the table's nearest value, and `value_used` says so.
- the condition's rows, shuffled with the seed, split into `truth` and `floor` halves of
  n = min(max_eval, rows // 2) each; every method draws n samples, scored against `truth` with
  the project's metrics on the non-target columns jointly; `floor` (real rows against real rows)
  is what a perfect predictor reaches.
- the baselines are `conditional_mvn` ("baseline") and `no_effect` of eval/baselines.py, fed the
  realised value, with the target's spread inside the condition as their jitter.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from activa_ray.eval.baselines import BASELINES
from activa_ray.eval.metrics import all_metrics
from activa_ray.eval.report import METRIC_TITLES, REPORT_METRICS, summarize, write_csv, write_json
from activa_ray.eval.shard import FLOOR, activa_name
from activa_ray.io_utils import atomic_write_text
from activa_ray.predict import PredictError, Predictor, as_table
from activa_ray.predict.tables import read_frame

INTERVENTION_COLUMN = "intervention"
OBSERVATIONAL = "observational"
MAX_OBS = 200
MAX_EVAL = 500
BASELINE_METHODS = ("baseline", "no_effect")
METRICS = ("mmd", "wsd", "erg", "perm_p")


class RealDataError(ValueError):
    """A real interventional table the evaluation cannot use; the message says where and what was expected."""


@dataclass
class RealTable:
    """A checked real dataset: observational rows and, per target variable, its condition's rows."""

    observational: pd.DataFrame  # (N, d) float64
    conditions: dict[str, pd.DataFrame]  # target -> (rows, d) float64, same columns
    source: str = "table"

    @property
    def variables(self) -> list[str]:
        return list(self.observational.columns)


def as_real_table(frame: pd.DataFrame, source: str = "table", line_offset: int | None = None) -> RealTable:
    """Split and check a table in the format above; line_offset: the file line of row 0 (2 for a CSV)."""
    def where(row: int) -> str:
        return f"row {row}" + (f" (line {row + line_offset})" if line_offset is not None else "")

    if INTERVENTION_COLUMN not in frame.columns:
        raise RealDataError(
            f"{source}: no {INTERVENTION_COLUMN!r} column; expected one naming the intervened variable per row "
            f"(empty or {OBSERVATIONAL!r} for observational rows), got columns {[str(c) for c in frame.columns]}"
        )
    labels = frame[INTERVENTION_COLUMN]
    labels = labels.where(labels.notna(), "").astype(str).str.strip().to_numpy()
    try:
        values = as_table(frame.drop(columns=INTERVENTION_COLUMN), source=source, line_offset=line_offset, min_rows=1)
    except PredictError as error:
        raise RealDataError(str(error)) from None
    variables = list(values.columns)
    if not variables:
        raise RealDataError(f"{source}: no variable columns besides {INTERVENTION_COLUMN!r}")
    observational = np.isin(labels, ["", OBSERVATIONAL])
    for row in np.flatnonzero(~observational & ~np.isin(labels, variables)):
        raise RealDataError(
            f"{source}: column {INTERVENTION_COLUMN!r}, {where(int(row))}: {labels[row]!r} is not a variable; "
            f"expected one of {variables}, empty or {OBSERVATIONAL!r}"
        )
    if observational.sum() < 2:
        raise RealDataError(
            f"{source}: {int(observational.sum())} observational row(s); expected at least 2 rows whose "
            f"{INTERVENTION_COLUMN!r} is empty or {OBSERVATIONAL!r}"
        )
    conditions = {}
    for target in dict.fromkeys(labels[~observational]):  # in order of first appearance
        rows = values[labels == target].reset_index(drop=True)
        if len(rows) < 2:
            raise RealDataError(f"{source}: the condition {target!r} has {len(rows)} row; expected at least 2")
        conditions[target] = rows
    return RealTable(values[observational].reset_index(drop=True), conditions, source)


def read_real_table(path: str | os.PathLike) -> RealTable:
    """Read and check a CSV (with a header row) or Parquet file in the format above."""
    # Only an empty cell is missing: a variable named "NA" or "null" stays a name.
    frame, line_offset = read_frame(path, RealDataError, keep_default_na=False, na_values=[""])
    return as_real_table(frame, source=str(Path(path)), line_offset=line_offset)


@dataclass
class RealEvaluation:
    per_condition: pd.DataFrame  # one row per (condition, method)
    summary: dict[str, dict[str, dict[str, float]]]  # method -> metric -> {mean, sem, n}
    header: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the model warned about the data (d, N, scale)


def _activa_samples(predictor: Predictor, obs: pd.DataFrame, target: str, value: float, n: int,
                    prior_samples: int, seed: int) -> tuple[np.ndarray, float]:
    """(n, d) samples of ACTIVA's prediction and the value it answered for: the realised level, or,
    for a model that knows only a table of values, the table's nearest value."""
    if not predictor.value_encoded:
        value = min(predictor.intervention_values, key=lambda known: abs(known - value))
    prediction = predictor.predict_many(obs, [(target, value)], prior_samples=prior_samples, seed=seed)[0]
    return prediction.sample(n, seed=seed).to_numpy(), float(prediction.value)


def _condition_rows(table: RealTable, target: str, obs: pd.DataFrame, predictor: Predictor,
                    prior_samples: list[int], max_eval: int, permutations: int,
                    rng: np.random.Generator, generator: torch.Generator) -> list[dict]:
    """Every method's metrics for one condition, one dict per method."""
    rows = table.conditions[target].to_numpy()
    column = table.variables.index(target)
    value = float(rows[:, column].mean())
    n = min(max_eval, len(rows) // 2)
    shuffled = rows[rng.permutation(len(rows))]
    truth, floor = shuffled[:n], shuffled[n:2 * n]

    samples, value_used = {}, {}
    for s in prior_samples:
        name = activa_name(s)
        samples[name], value_used[name] = _activa_samples(
            predictor, obs, target, value, n, s, int(rng.integers(2**31)))
    mask = np.zeros((1, len(table.variables)))
    mask[0, column] = 1
    for name in BASELINE_METHODS:
        # The target's realised spread, not the synthetic data's jitter; it moves the baseline's
        # conditioning, not the (excluded) target column.
        predicted = BASELINES[name](obs.to_numpy()[None], mask, np.array([value]), n, rng,
                                    jitter_var=float(rows[:, column].var()))
        samples[name], value_used[name] = predicted.samples[0], value
    samples[FLOOR], value_used[FLOOR] = floor, value

    others = [j for j in range(len(table.variables)) if j != column]
    methods = list(samples)
    predicted = torch.tensor(np.stack([samples[m][:, others] for m in methods]), dtype=torch.float32)
    reference = torch.tensor(truth[:, others], dtype=torch.float32).expand(len(methods), -1, -1)
    scores = all_metrics(predicted, reference, permutations=permutations, generator=generator)
    return [
        {"condition": target, "method": method, "rows": len(rows), "compared": n, "value": value,
         "value_used": value_used[method], **{metric: float(scores[metric][k]) for metric in METRICS}}
        for k, method in enumerate(methods)
    ]


def evaluate_real(
    predictor: Predictor,
    table: RealTable,
    max_obs: int = MAX_OBS,
    max_eval: int = MAX_EVAL,
    prior_samples: tuple[int, ...] | list[int] = (1, 50),
    permutations: int = 100,
    seed: int = 0,
) -> RealEvaluation:
    """Score ACTIVA (for each S in prior_samples), the baselines and the floor on every condition."""
    for name, number in (("max_obs", max_obs), ("max_eval", max_eval), ("permutations", permutations)):
        if not isinstance(number, int) or number < 1:
            raise RealDataError(f"{name} must be a positive integer; got {number!r}")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    chosen = np.sort(rng.permutation(len(table.observational))[:max_obs])
    obs = table.observational.iloc[chosen].reset_index(drop=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = [
            row for target in table.conditions
            for row in _condition_rows(table, target, obs, predictor, list(prior_samples), max_eval,
                                       permutations, rng, generator)
        ]
    per_condition = pd.DataFrame(rows)
    summary = {
        method: summarize({metric: group[metric].to_numpy() for metric in METRICS})
        for method, group in per_condition.groupby("method", sort=False)
    }
    header = {
        "data": table.source,
        "model": predictor.source,
        "variables": len(table.variables),
        "observational rows": f"{len(table.observational)} ({len(obs)} used)",
        "conditions": ", ".join(f"{t} ({len(r)} rows)" for t, r in table.conditions.items()),
        "seed": seed,
    }
    return RealEvaluation(per_condition, summary, header, list(dict.fromkeys(str(w.message) for w in caught)))


def _markdown(evaluation: RealEvaluation) -> str:
    def cell(stats: dict) -> str:
        mean, sem = stats["mean"], stats["sem"]
        return "–" if not math.isfinite(mean) else f"{mean:.3f}" + (f" ± {sem:.3f}" if math.isfinite(sem) else "")

    lines = ["# Evaluation on real interventional data", ""]
    lines += [f"- {key}: {value}" for key, value in evaluation.header.items()]
    lines += [
        "", "Metrics over the variables NOT intervened on, jointly; lower is better. Means ± standard errors over",
        "conditions. `floor`: the condition's real rows against other real rows of it (what a perfect predictor",
        "reaches). `baseline`: an MVN fitted to the observational rows, conditioned on the target's realised level;",
        "`no_effect`: the observational rows. Perm. test pass: share of conditions whose energy permutation test",
        "gives p >= 0.05.", "",
        "| method | " + " | ".join(METRIC_TITLES[m] for m in REPORT_METRICS) + " | conditions |",
        "|---" * (len(REPORT_METRICS) + 2) + "|",
    ]
    lines += [
        f"| {method} | " + " | ".join(cell(stats[m]) for m in REPORT_METRICS) + f" | {stats['mmd']['n']} |"
        for method, stats in evaluation.summary.items()
    ]
    lines += ["", "## Per condition", "", "| condition | method | value | value used | MMD | WSD | ERG | perm. p |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r.condition} | {r.method} | {r.value:.4g} | {r.value_used:.4g} | {r.mmd:.3f} | {r.wsd:.3f} | {r.erg:.3f} | {r.perm_p:.2f} |"
        for r in evaluation.per_condition.itertuples()
    ]
    if evaluation.warnings:
        lines += ["", "## Warnings from the model", ""] + [f"- {message}" for message in evaluation.warnings]
    return "\n".join(lines) + "\n"


def write_real_report(evaluation: RealEvaluation, out_dir: str | os.PathLike) -> Path:
    """results.csv (per condition and method), results.json (header, summary, per condition), results.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = evaluation.per_condition
    write_csv(out / "results.csv", list(frame.columns), frame.to_numpy().tolist())
    write_json(out / "results.json", {
        "header": evaluation.header, "summary": evaluation.summary,
        "per_condition": frame.to_dict(orient="records"), "warnings": evaluation.warnings,
    })
    return atomic_write_text(out / "results.md", _markdown(evaluation))
