"""Learning curves: validation MMD and WSD against (model, condition) examples seen (a log axis) or training
steps, with the reference levels of the held-out test evaluation (conditional baseline, no effect, noise floor)
as lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from activa_ray.eval.figures import _save, plt

REFERENCES = {"baseline": ("conditional baseline", "#d62728"), "no_effect": ("no effect", "#7f7f7f"),
              "floor": ("noise floor", "#2ca02c")}


class Segment(NamedTuple):
    """One stretch of one model's training (a run resumed with another batch size, on another machine, is
    a new segment)."""

    metrics: str | os.PathLike  # its metrics.jsonl
    batch_size: int
    warm_start: bool = False  # a new run from the previous segment's export (train.init_from): steps from 0


def read_curve(segments: list[Segment | tuple]) -> dict[str, list[float]]:
    """Examples seen, steps taken and validation metrics at every report that carries a fresh validation.

    segments: `Segment`s (or tuples of its fields) in training order. A resumed segment's steps follow
    the previous one's; a warm-started one counts from 0. Examples are counted from the batch size of the
    segment each step ran in.
    """
    curve: dict[str, list[float]] = {"examples": [], "steps": [], "activa_mmd": [], "activa_wsd": [],
                                     "baseline_mmd": [], "baseline_wsd": []}
    examples_before, steps_before, step_before = 0, 0, 0
    for metrics_path, batch_size, warm_start in (Segment(*segment) for segment in segments):
        records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
        if not records:
            raise ValueError(f"{metrics_path}: no reports (a learning-curve segment needs its run's metrics.jsonl)")
        if warm_start:
            step_before = 0
        for record in records:
            if record.get("val/step", record["step"]) != record["step"] or "val/activa_mmd" not in record:
                continue
            curve["examples"].append(examples_before + (record["step"] - step_before) * batch_size)
            curve["steps"].append(steps_before + record["step"] - step_before)
            for key in list(curve)[2:]:
                curve[key].append(record[f"val/{key}"])
        last = max(record["step"] for record in records)
        examples_before += (last - step_before) * batch_size
        steps_before += last - step_before
        step_before = last
    return curve


def learning_curve(
    segments: list[Segment | tuple], results_json: str | os.PathLike | None, title: str,
    path: str | os.PathLike, per_step: bool = False,
) -> Path:
    """Two panels (MMD, WSD) of ACTIVA's validation curve; test-split reference levels from results.json.
    x: examples seen on a log axis, or with `per_step` training steps on a linear one."""
    curve = read_curve(segments)
    x = curve["steps"] if per_step else curve["examples"]
    references = json.loads(Path(results_json).read_text()) if results_json else {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, metric in zip(axes, ("mmd", "wsd")):
        axis.plot(x, curve[f"activa_{metric}"], "o-", color="#1f4fbf", label="ACTIVA (validation, S=1)")
        axis.plot(x, curve[f"baseline_{metric}"], ":", color="#d62728", alpha=0.6,
                  label="conditional baseline (validation)")
        for method, (label, color) in REFERENCES.items():
            if method in references:
                axis.axhline(references[method][metric]["mean"], color=color, linestyle="--", linewidth=1,
                             label=f"{label} (test)")
        if not per_step:
            axis.set_xscale("log")
        axis.set_xlabel("training step" if per_step else "(model, condition) examples seen")
        axis.set_ylabel(metric.upper())
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
