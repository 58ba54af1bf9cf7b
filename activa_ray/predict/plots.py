"""The marginal plot of a prediction: each variable's observational histogram against the
predicted interventional marginal (a PNG)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from activa_ray.predict.prediction import Prediction

# How many variables the marginal plot shows at most (targets first, then the largest shifts).
MAX_PLOTTED_VARIABLES = 24


def shown_variables(prediction: Prediction, effects: pd.DataFrame) -> list[str]:
    """The targets, then the largest standardised shifts, at most MAX_PLOTTED_VARIABLES, in table order."""
    others = [name for name in prediction.columns if name not in prediction.targets]
    others.sort(key=lambda name: -abs(effects.loc[name, "shift"]) / effects.loc[name, "obs_std"])
    shown = (list(prediction.targets) + others)[:MAX_PLOTTED_VARIABLES]
    shown.sort(key=prediction.columns.index)
    return shown


def _draw_variable(
    axis, prediction: Prediction, name: str, effects: pd.DataFrame, samples: pd.DataFrame | None
) -> None:
    """One panel: observational histogram, predicted samples, predicted density (or the pinned value)."""
    weights, means, stds = prediction.components()  # (M,), (M, d), (M, d): a few numbers, cheap to redo
    j = prediction.columns.index(name)
    observed = prediction.observations[name].to_numpy()
    pinned = bool(np.all(stds[:, j] == 0))
    low = min(observed.min(), float(np.min(means[:, j] - 4 * stds[:, j])))
    high = max(observed.max(), float(np.max(means[:, j] + 4 * stds[:, j])))
    margin = 0.05 * (high - low) + 1e-9
    grid = np.linspace(low - margin, high + margin, 400)
    bins = min(40, max(10, len(observed) // 4))
    axis.hist(observed, bins=bins, range=(grid[0], grid[-1]), density=True, color="0.6", alpha=0.6,
              label="observational")
    if samples is not None and not pinned:
        axis.hist(samples[name].to_numpy(), bins=bins, range=(grid[0], grid[-1]), density=True,
                  histtype="step", color="tab:blue", alpha=0.7, label="predicted samples")
    if pinned:
        axis.axvline(float(means[0, j]), color="tab:red", lw=2, label=f"do = {means[0, j]:g}")
    else:
        safe = np.where(stds[:, j] > 0, stds[:, j], 1.0)
        density = (weights * np.exp(-0.5 * ((grid[:, None] - means[:, j]) / safe) ** 2)
                   / (safe * math.sqrt(2 * math.pi))).sum(-1)  # (400,)
        axis.plot(grid, density, color="tab:red", lw=1.8, label="predicted interventional")
    title = f"{name} (target)" if name in prediction.targets else name
    axis.set_title(f"{title}\nshift {effects.loc[name, 'shift']:+.3g}, "
                   f"P(no effect) {effects.loc[name, 'p_no_effect']:.2f}", fontsize=9)
    axis.tick_params(labelsize=8)


def plot_marginals(prediction: Prediction, path: str | os.PathLike, samples: pd.DataFrame | None = None) -> Path:
    """PNG of each variable's observational histogram against the predicted interventional marginal."""
    # Imported here: matplotlib costs about a second, and only a plot needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    effects = prediction.effects()
    shown = shown_variables(prediction, effects)
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
    for axis in axes.flat[len(shown):]:
        axis.set_visible(False)
    for axis, name in zip(axes.flat, shown):
        _draw_variable(axis, prediction, name, effects, samples)
    axes.flat[0].legend(fontsize=7, loc="best")
    heading = f"do({', '.join(prediction.targets)} = {prediction.value:g})"
    if len(shown) < len(prediction.columns):
        heading += f": {len(shown)} of {len(prediction.columns)} variables (targets and largest shifts)"
    figure.suptitle(heading, fontsize=11)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
