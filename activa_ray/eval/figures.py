"""PNG figures of predicted vs true interventional samples (matplotlib, Agg backend).

- `figure2`: the paper's figure 2 for bivariate data: observational samples and the samples
  under do(X) and do(Y) of the truth, the conditional baseline and ACTIVA, in three panels.
- `marginals`: for any d, each variable's marginal under each condition, truth vs predictions.
- `evaluation_figures`: both, for the models an evaluation kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from activa_ray.io_utils import atomic_path  # noqa: E402

OBS_COLOR = "#40c4b0"  # turquoise, as in the paper
CONDITION_COLORS = ("#1f4fbf", "#8c5a2b")  # do(X) blue, do(Y) brown
METHOD_COLORS = ("black", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Write the PNG under a temporary name, then rename; close the figure."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def figure2(
    obs: np.ndarray,
    int_truth: np.ndarray,
    int_baseline: np.ndarray,
    int_activa: np.ndarray,
    path: str | os.PathLike,
    var_names: Sequence[str] = ("X", "Y"),
    value: float | None = None,
) -> Path:
    """Three panels (truth, baseline, ACTIVA) for a bivariate model.

    obs (N, 2); int_* (2, n, 2): condition 0 intervenes on X, condition 1 on Y. The
    observational samples of the data are drawn in every panel, as in the paper.
    """
    obs = np.asarray(obs)
    panels = {"ground truth": int_truth, "conditional baseline": int_baseline, "ACTIVA": int_activa}
    if obs.ndim != 2 or obs.shape[1] != 2:
        raise ValueError(f"figure2 needs bivariate obs (N, 2), got shape {obs.shape}")
    for name, samples in panels.items():
        if np.shape(samples)[0] != 2 or np.shape(samples)[-1] != 2 or np.ndim(samples) != 3:
            raise ValueError(f"figure2 needs {name} samples (2 conditions, n, 2), got shape {np.shape(samples)}")
    every = np.concatenate([obs] + [np.asarray(s).reshape(-1, 2) for s in panels.values()])
    every = every[np.isfinite(every).all(axis=1)]
    low, high = every.min(axis=0), every.max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1e-6)
    label = f" = {value:g}" if value is not None else ""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True, sharey=True)
    for ax, (title, samples) in zip(axes, panels.items()):
        ax.scatter(obs[:, 0], obs[:, 1], s=10, color=OBS_COLOR, alpha=0.7, label="observational")
        for condition, color in enumerate(CONDITION_COLORS):
            points = np.asarray(samples[condition])
            ax.scatter(points[:, 0], points[:, 1], s=10, color=color, alpha=0.7, label=f"do({var_names[condition]}{label})")
        ax.set_title(title)
        ax.set_xlabel(var_names[0])
        ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
        ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
    axes[0].set_ylabel(var_names[1])
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def marginals(
    truth: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    var_names: Sequence[str] | None = None,
    condition_labels: Sequence[str] | None = None,
    max_conditions: int = 4,
    max_variables: int = 8,
    title: str = "",
) -> Path:
    """Grid of per-variable marginals: rows = conditions, columns = variables.

    truth (C, N, d); predictions {method: (C, n, d)}. Histograms share bins per cell; a
    prediction that failed (NaN) is left out of its cells.
    """
    truth = np.asarray(truth)
    if truth.ndim != 3:
        raise ValueError(f"marginals needs truth (C, N, d), got shape {truth.shape}")
    conditions, _, d = truth.shape
    for name, samples in predictions.items():
        if np.ndim(samples) != 3 or np.shape(samples)[0] != conditions or np.shape(samples)[2] != d:
            raise ValueError(f"marginals: {name} samples must be (C={conditions}, n, d={d}), got {np.shape(samples)}")
    rows, cols = min(conditions, max_conditions), min(d, max_variables)
    var_names = list(var_names) if var_names is not None else [f"V{j}" for j in range(d)]
    condition_labels = list(condition_labels) if condition_labels is not None else [f"condition {c}" for c in range(conditions)]
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 0.8, 1.9 * rows + 0.6), squeeze=False)
    series = {"truth": truth, **{name: np.asarray(s) for name, s in predictions.items()}}
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            columns = {name: s[r, :, c] for name, s in series.items()}
            columns = {name: v[np.isfinite(v)] for name, v in columns.items()}
            pooled = np.concatenate([v for v in columns.values() if v.size])
            span = (pooled.min(), pooled.max()) if pooled.size and pooled.max() > pooled.min() else None
            bins = np.linspace(*span, 21) if span else 10
            for (name, values), color in zip(columns.items(), METHOD_COLORS):
                if values.size:
                    ax.hist(values, bins=bins, histtype="step", density=span is not None, color=color,
                            linewidth=1.8 if name == "truth" else 1.1, label=name)
            ax.set_yticks([])
            if r == 0:
                ax.set_title(var_names[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(condition_labels[r], fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def evaluation_figures(folder: Path, kept: list[dict], d: int, activa_default: str) -> list[Path]:
    """Marginal plots of every kept model; the paper's figure 2 too when d = 2."""
    written = []
    for entry in kept:
        predictions = entry["predictions"]
        names = np.asarray(entry["var_names"])
        condition_labels = [f"do({'+'.join(names[t.astype(bool)])}={v:g})" for t, v in zip(entry["targets"], entry["values"])]
        written.append(marginals(
            entry["truth"], predictions, folder / f"marginals_model{entry['model_id']}.png",
            var_names=entry["var_names"], condition_labels=condition_labels, title=f"model {entry['model_id']}",
        ))
        targets = entry["targets"].astype(bool)
        if d != 2 or "baseline" not in predictions:
            continue
        # Paper figure 2: the first do(X) and the first do(Y) condition.
        do_x, do_y = np.flatnonzero(targets[:, 0] & ~targets[:, 1]), np.flatnonzero(targets[:, 1] & ~targets[:, 0])
        if len(do_x) and len(do_y):
            chosen = [do_x[0], do_y[0]]
            written.append(figure2(
                entry["obs"], entry["truth"][chosen], predictions["baseline"][chosen], predictions[activa_default][chosen],
                folder / f"figure2_model{entry['model_id']}.png", var_names=entry["var_names"],
                value=float(entry["values"][chosen[0]]),
            ))
    return written
