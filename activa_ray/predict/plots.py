"""The marginal figure of a prediction (a PNG): per variable, the observational histogram and mean
against the predicted interventional marginal; the target as a spike at the query's value.

When the mixture's components fall into distinct alternatives (groups whose means differ by more
than ALTERNATIVE_SEPARATION observational SDs on some non-target variable), each dominant
alternative is drawn as its own curve, with its weight in the legend, instead of one multi-humped
density that would read like a bimodal effect.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from activa_ray.predict.effects import marginal_quantiles

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from activa_ray.predict.prediction import Prediction

# How many variables the figure shows at most (targets first, then the largest shifts).
MAX_PLOTTED_VARIABLES = 24
# Two components belong to different alternatives when their means differ by more than this many
# observational SDs on some non-target variable (single linkage: chains of close components join).
ALTERNATIVE_SEPARATION = 0.3
# At most this many alternatives are drawn on their own; lighter ones are drawn together as "other".
MAX_ALTERNATIVES = 3
# An alternative lighter than this is never drawn on its own.
MIN_ALTERNATIVE_WEIGHT = 0.05
# The x range covers the observations and the predicted marginal's central 98%.
PREDICTED_RANGE = (0.01, 0.99)

OBSERVED_COLOR = "0.55"
TARGET_COLOR = "black"
ALTERNATIVE_COLORS = ("tab:red", "tab:blue", "tab:green")
OTHER_COLOR = "tab:purple"


def shown_variables(prediction: Prediction, effects: pd.DataFrame) -> list[str]:
    """The targets, then the largest standardised shifts, at most MAX_PLOTTED_VARIABLES, in table order."""
    others = [name for name in prediction.columns if name not in prediction.targets]
    others.sort(key=lambda name: -abs(effects.loc[name, "shift"]) / effects.loc[name, "obs_std"])
    shown = (list(prediction.targets) + others)[:MAX_PLOTTED_VARIABLES]
    shown.sort(key=prediction.columns.index)
    return shown


@dataclass
class Alternative:
    """A group of mixture components: what the figure draws as one curve per variable."""

    label: str
    color: str
    members: np.ndarray  # (k,) component indices
    weight: float


def group_components(means: np.ndarray, obs_std: np.ndarray, free: np.ndarray,
                     separation: float = ALTERNATIVE_SEPARATION) -> list[np.ndarray]:
    """Single-linkage groups of components (M means over d variables), heaviest first is up to the caller.

    Components i and k are linked when |mean_i - mean_k| <= separation * obs_std on every variable
    where `free` (d,) is true (the non-targets); groups are the connected components of the links.
    """
    count = means.shape[0]
    if count == 0 or not free.any():
        return [np.arange(count)]
    scaled = means[:, free] / np.where(obs_std[free] > 0, obs_std[free], 1.0)  # (M, d_free)
    linked = (np.abs(scaled[:, None, :] - scaled[None, :, :]) <= separation).all(-1)  # (M, M)
    label = np.full(count, -1)
    groups = []
    for start in range(count):
        if label[start] >= 0:
            continue
        label[start] = len(groups)
        stack, members = [start], [start]
        while stack:
            current = stack.pop()
            for other in np.flatnonzero(linked[current] & (label < 0)):
                label[other] = len(groups)
                stack.append(other)
                members.append(other)
        groups.append(np.sort(np.asarray(members)))
    return groups


def _moves(prediction: Prediction, effects: pd.DataFrame, members: np.ndarray, names: int = 3) -> str:
    """Which non-targets a group's mean moves by more than ALTERNATIVE_SEPARATION observational SDs."""
    weights, means, _ = prediction.components()
    mean = np.average(means[members], axis=0, weights=weights[members])  # (d,)
    scale = np.where(effects["obs_std"].to_numpy() > 0, effects["obs_std"].to_numpy(), 1.0)
    shift = (mean - effects["obs_mean"].to_numpy()) / scale  # (d,), in observational SDs
    moved = [name for j, name in enumerate(prediction.columns)
             if name not in prediction.targets and abs(shift[j]) > ALTERNATIVE_SEPARATION]
    if not moved:
        return "nothing else moves"
    listed = ", ".join(moved[:names]) + (f" +{len(moved) - names}" if len(moved) > names else "")
    return f"{listed} move{'s' if len(moved) == 1 else ''}"


def alternatives(prediction: Prediction, effects: pd.DataFrame) -> list[Alternative]:
    """The alternatives the figure draws: one "predicted" curve, or the dominant groups with their weights."""
    weights, means, _ = prediction.components()
    free = np.array([name not in prediction.targets for name in prediction.columns])
    groups = group_components(means, effects["obs_std"].to_numpy(), free)
    groups.sort(key=lambda members: -float(weights[members].sum()))
    if len(groups) == 1:
        return [Alternative("predicted interventional", ALTERNATIVE_COLORS[0], groups[0], 1.0)]
    drawn = [g for g in groups[:MAX_ALTERNATIVES] if weights[g].sum() >= MIN_ALTERNATIVE_WEIGHT] or groups[:1]
    rest = [g for g in groups if not any(g is d for d in drawn)]
    shown = [Alternative(f"alternative {i + 1}, weight {weights[g].sum():.0%}: {_moves(prediction, effects, g)}",
                         ALTERNATIVE_COLORS[i], g, float(weights[g].sum())) for i, g in enumerate(drawn)]
    if rest:
        members = np.concatenate(rest)
        shown.append(Alternative(f"{len(rest)} other alternative{'s' if len(rest) > 1 else ''}: "
                                 f"weight {weights[members].sum():.0%}", OTHER_COLOR, members,
                                 float(weights[members].sum())))
    return shown


def _x_range(observed: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray,
             marks: list[float]) -> tuple[float, float]:
    """The observations, the predicted marginal's central 98% and the marked values, with a margin."""
    predicted = marginal_quantiles(np.asarray(PREDICTED_RANGE), weights, means, stds)
    low = min(float(observed.min()), float(predicted[0]), *marks)
    high = max(float(observed.max()), float(predicted[1]), *marks)
    margin = 0.06 * (high - low) if high > low else max(1.0, abs(high)) * 0.1
    return low - margin, high + margin


def _draw_variable(axis, prediction: Prediction, name: str, effects: pd.DataFrame,
                   drawn: list[Alternative]) -> None:
    """One panel: observational histogram and mean, then the target's spike or the predicted curves."""
    weights, means, stds = prediction.components()  # (M,), (M, d), (M, d)
    j = prediction.columns.index(name)
    observed = prediction.observations[name].to_numpy(dtype=np.float64)
    obs_mean = float(effects.loc[name, "obs_mean"])
    is_target = name in prediction.targets
    marks = [float(prediction.value)] if is_target else []
    low, high = _x_range(observed, weights, means[:, j], stds[:, j], marks)
    bins = min(40, max(10, len(observed) // 5))
    axis.hist(observed, bins=bins, range=(low, high), density=True, color=OBSERVED_COLOR, alpha=0.45,
              label="observational data")
    axis.axvline(obs_mean, color=OBSERVED_COLOR, ls="--", lw=1.4, label="observational mean")
    if is_target:
        # The query fixes the target: a point mass at the value, whatever spread the mixture gives it.
        axis.axvline(float(prediction.value), color=TARGET_COLOR, lw=2.6,
                     label=f"do({', '.join(prediction.targets)} = {prediction.value:g})")
        axis.plot([float(prediction.value)], [1.0], marker="v", color=TARGET_COLOR, markersize=8,
                  transform=axis.get_xaxis_transform(), clip_on=False)
        axis.set_title(f"{name} (target): set to {prediction.value:g}", fontsize=9, pad=9)
    else:
        grid = np.linspace(low, high, 500)
        for alternative in drawn:
            w, m, s = weights[alternative.members], means[alternative.members, j], stds[alternative.members, j]
            spread = s > 0
            if spread.any():
                density = (w[spread] * np.exp(-0.5 * ((grid[:, None] - m[spread]) / s[spread]) ** 2)
                           / (s[spread] * math.sqrt(2 * math.pi))).sum(-1)  # (500,): its share of the density
                other = alternative.color == OTHER_COLOR  # the light remainder: drawn thin, dotted
                axis.plot(grid, density, color=alternative.color, lw=1.2 if other else 2.0, ls=":" if other else "-",
                          label=alternative.label)
            if (~spread).any():  # point masses (a constant column): a spike at their weighted mean
                axis.axvline(float(np.average(m[~spread], weights=w[~spread])), color=alternative.color, lw=2.0,
                             label=alternative.label)
        row = effects.loc[name]
        axis.set_title(f"{name}: shift {row['shift']:+.3g}, P(no effect) {row['p_no_effect']:.2f}", fontsize=9)
    axis.set_xlim(low, high)
    axis.set_ylim(bottom=0)
    axis.set_xlabel(f"{name} (table units)", fontsize=8)
    axis.tick_params(labelsize=8)


def _grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns for `count` panels: one row up to 5, else the width in 3..5 leaving fewest empty."""
    if count <= 5:
        return 1, count
    columns = min((4, 5, 3), key=lambda c: (math.ceil(count / c) * c - count, abs(c - 4)))
    return math.ceil(count / columns), columns


def marginals_figure(prediction: Prediction, samples: pd.DataFrame | None = None) -> Figure:
    """The figure (matplotlib, Agg): one panel per shown variable, a shared legend beside no data.

    `samples` is accepted for the callers that have them; the curves are exact densities.
    """
    # Imported here: matplotlib costs about a second, and only a plot needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    del samples
    effects = prediction.effects()
    shown = shown_variables(prediction, effects)
    drawn = alternatives(prediction, effects)
    rows, columns = _grid_shape(len(shown))
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.9 * rows + 0.9), squeeze=False)
    for axis, name in zip(axes.flat, shown):
        _draw_variable(axis, prediction, name, effects, drawn)
    for axis in axes[:, 0]:
        axis.set_ylabel("density", fontsize=8)
    spare = list(axes.flat[len(shown):])
    for axis in spare:
        axis.remove()
    handles, labels = {}, []
    for axis in axes.flat[: len(shown)]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    heading = f"Predicted p(V | do({', '.join(prediction.targets)} = {prediction.value:g}))"
    heading += f" from {len(prediction.observations)} observations"
    if len(shown) < len(prediction.columns):
        heading += f": {len(shown)} of {len(prediction.columns)} variables (targets and largest shifts)"
    figure.suptitle(heading, fontsize=11)
    # The legend sits below the panels, where it covers no data.
    figure.legend([handles[label] for label in labels], labels, loc="lower center",
                  ncol=min(len(labels), 3), fontsize=8, frameon=False)
    legend_rows = math.ceil(len(labels) / 3)
    figure.tight_layout(rect=(0, 0.06 + 0.05 * legend_rows / rows, 1, 0.97))
    return figure


def plot_marginals(prediction: Prediction, path: str | os.PathLike, samples: pd.DataFrame | None = None) -> Path:
    """PNG of each variable's observational histogram and mean against the predicted interventional marginal."""
    import matplotlib.pyplot as plt

    figure = marginals_figure(prediction, samples)
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
