"""A prediction: the interventional distribution p(V | D, do(targets = value)) for one query,
as a Gaussian mixture over the table's columns, with samples, densities, marginals, effects and
their reports."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from activa_ray.model.mixture import GaussianMixture
from activa_ray.predict import plots
from activa_ray.predict.effects import (
    DEFAULT_INTERVAL,
    DEFAULT_TOLERANCE,
    alternatives,
    marginal_quantiles,
    observational_law,
    shift_interval_and_no_effect,
)
from activa_ray.predict.tables import PredictError, as_table

QUANTILES = (0.05, 0.5, 0.95)


@dataclass
class Prediction:
    """The predicted interventional distribution p(V | D, do(targets = value)) for one query.

    mixture: a GaussianMixture with a batch of one, over the table's columns in order.
    observations: the observational table the prediction was made from (for effects and plots).
    std_floor: the smallest std the observational law gets in `effects` (the model's sqrt(cov_floor)).
    """

    mixture: GaussianMixture
    columns: list[str]
    targets: list[str]
    value: float
    observations: pd.DataFrame
    prior_samples: int = 1
    std_floor: float = 0.0

    def __post_init__(self) -> None:
        if self.mixture.batch_size != 1 or self.mixture.dim != len(self.columns):
            raise ValueError(
                f"Prediction needs a mixture with a batch of one over {len(self.columns)} variables; "
                f"got batch {self.mixture.batch_size}, d {self.mixture.dim}"
            )

    # ----- the distribution -----

    def sample(self, n: int = 1000, seed: int = 0) -> pd.DataFrame:
        """n samples of the predicted distribution, with the table's column names."""
        generator = torch.Generator(device=self.mixture.means.device).manual_seed(seed)
        samples = self.mixture.sample(n, generator)[0]  # (n, d)
        return pd.DataFrame(samples.cpu().double().numpy(), columns=self.columns)

    def log_prob(self, table: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Log-density (n,) of rows of `table` (a DataFrame with the prediction's columns, or an (n, d) array)."""
        if isinstance(table, pd.DataFrame):
            missing = [name for name in self.columns if name not in table.columns]
            if missing:
                raise PredictError(f"log_prob: the table lacks column(s) {missing}")
            checked = as_table(table[self.columns], source="log_prob table", min_rows=1)
        else:
            checked = as_table(np.asarray(table, dtype=np.float64), self.columns, source="log_prob table", min_rows=1)
        values = checked.to_numpy()  # (n, d)
        x = torch.tensor(values, dtype=self.mixture.means.dtype, device=self.mixture.means.device)
        return self.mixture.log_prob(x.unsqueeze(0))[0].cpu().double().numpy()

    @property
    def mean(self) -> pd.Series:
        return pd.Series(self.mixture.mean[0].cpu().double().numpy(), index=self.columns, name="mean")

    @property
    def std(self) -> pd.Series:
        return pd.Series(self.mixture.marginal_std[0].cpu().double().numpy(), index=self.columns, name="std")

    @property
    def covariance(self) -> pd.DataFrame:
        return pd.DataFrame(self.mixture.covariance[0].cpu().double().numpy(), index=self.columns, columns=self.columns)

    @property
    def weights(self) -> np.ndarray:
        """Mixture weights (M,)."""
        return self.mixture.weights[0].cpu().double().numpy()

    def components(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights (M,), component means (M, d) and component marginal stds (M, d), float64."""
        means = self.mixture.means[0].cpu().double().numpy()
        variances = self.mixture.component_covariances[0].diagonal(dim1=-2, dim2=-1).cpu().double().numpy()
        return self.weights, means, np.sqrt(np.clip(variances, 0.0, None))

    def marginals(self, quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """Per variable: mean, std and the given quantiles (columns q05, q50, q95) of the predicted marginal."""
        weights, means, stds = self.components()
        levels = np.asarray(quantiles, dtype=np.float64)
        rows = {
            name: marginal_quantiles(levels, weights, means[:, j], stds[:, j]) for j, name in enumerate(self.columns)
        }
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=[f"q{round(100 * q):02d}" for q in levels])
        frame.insert(0, "std", self.std.to_numpy())
        frame.insert(0, "mean", self.mean.to_numpy())
        frame.index.name = "variable"
        return frame

    def effects(self, tolerance: float = DEFAULT_TOLERANCE, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
        """Per variable: the observational law, the predicted shift of the mean with an interval, P(no effect).

        See activa_ray/predict/effects.py for how the interval and P(no effect) are defined.
        """
        weights, means, stds = self.components()
        obs_mean, obs_std = observational_law(
            self.observations[self.columns].to_numpy(dtype=np.float64), self.std_floor
        )  # (d,), (d,)
        bounds, p_no_effect = shift_interval_and_no_effect(
            weights, means, stds, obs_mean, obs_std, tolerance, interval
        )  # (d, 2), (d,)
        predicted_mean = self.mean.to_numpy()
        return pd.DataFrame(
            {
                "obs_mean": obs_mean,
                "obs_std": obs_std,
                "pred_mean": predicted_mean,
                "pred_std": self.std.to_numpy(),
                "shift": predicted_mean - obs_mean,
                "shift_low": bounds[:, 0],
                "shift_high": bounds[:, 1],
                "p_no_effect": p_no_effect,
            },
            index=pd.Index(self.columns, name="variable"),
        )

    def alternatives(self, min_weight: float = 0.05) -> pd.DataFrame:
        """The distinct answers the mixture holds, where the data do not decide between them.

        Components are grouped by which non-target variables they move (a mean more than
        effects.MOVE_THRESHOLD observational SDs away); one row per group of weight >= min_weight,
        heaviest first: its weight, the variables it moves, and each variable's mean shift under it.
        One row means the prediction tells one story.
        """
        weights, means, _ = self.components()
        obs_mean, obs_std = observational_law(
            self.observations[self.columns].to_numpy(dtype=np.float64), self.std_floor
        )
        free = np.array([name not in self.targets for name in self.columns])
        rows = [
            {"weight": weight, "moves": [name for name, m in zip(self.columns, moved) if m],
             **{f"shift[{name}]": value for name, value in zip(self.columns, shift)}}
            for weight, moved, shift in alternatives(weights, means, obs_mean, obs_std, free)
            if weight >= min_weight
        ]
        frame = pd.DataFrame(rows)
        frame.index.name = "alternative"
        return frame

    # ----- reports -----

    def summary(self, samples: pd.DataFrame | None = None, tolerance: float = DEFAULT_TOLERANCE,
                interval: float = DEFAULT_INTERVAL) -> dict:
        """A JSON-ready dict: the query, per-variable marginals and effects, the mixture weights."""
        marginals = self.marginals()
        effects = self.effects(tolerance, interval)
        variables = {}
        for name in self.columns:
            entry = {key: float(value) for key, value in marginals.loc[name].items()}
            entry.update({key: float(value) for key, value in effects.loc[name].items() if key not in ("pred_mean", "pred_std")})
            if samples is not None:
                entry["sample_mean"] = float(samples[name].mean())
                entry["sample_std"] = float(samples[name].std(ddof=1))
            variables[name] = entry
        return {
            "targets": list(self.targets),
            "value": float(self.value),
            "n_obs": int(len(self.observations)),
            "d": len(self.columns),
            "prior_samples": int(self.prior_samples),
            "columns": list(self.columns),
            "effects_definition": {
                "shift": "predicted mean minus observational mean",
                "interval": f"central {interval:.0%} of the component means' shift, weighted by the mixture weights",
                "p_no_effect": f"mixture weight of components whose marginal is within Hellinger distance {tolerance} "
                               "of the observational N(mean, std^2)",
                "tolerance": tolerance,
                "interval_level": interval,
            },
            "variables": variables,
            "mixture": {"components": int(self.mixture.num_components), "weights": [float(w) for w in self.weights]},
            "alternatives": [
                {"weight": float(row.weight), "moves": list(row.moves),
                 "shift": {name: float(row[f"shift[{name}]"]) for name in self.columns}}
                for _, row in self.alternatives().iterrows()
            ],
        }

    def format_effects(self, tolerance: float = DEFAULT_TOLERANCE, interval: float = DEFAULT_INTERVAL) -> str:
        """The effect table a scientist reads first, as aligned text."""
        effects = self.effects(tolerance, interval)
        width = max(8, *(len(name) + (9 if name in self.targets else 0) for name in self.columns))
        level = f"{interval:.0%} interval"
        lines = [
            f"do({', '.join(self.targets)} = {self.value:g}): predicted effects on {len(self.columns)} variables "
            f"(N_obs = {len(self.observations)}, {self.prior_samples} prior samples)",
            f"{'variable':<{width}}  {'obs mean':>10}  {'obs std':>10}  {'pred mean':>10}  {'pred std':>10}  "
            f"{'shift':>10}  {level:>23}  {'P(no effect)':>12}",
        ]
        for name, row in effects.iterrows():
            label = f"{name} (target)" if name in self.targets else name
            bounds = f"[{row.shift_low:+.3g}, {row.shift_high:+.3g}]"
            lines.append(
                f"{label:<{width}}  {row.obs_mean:>10.4g}  {row.obs_std:>10.4g}  {row.pred_mean:>10.4g}  "
                f"{row.pred_std:>10.4g}  {row['shift']:>+10.4g}  {bounds:>23}  {row.p_no_effect:>12.2f}"
            )
        answers = self.alternatives()
        if len(answers) > 1:
            lines.append(f"The data do not decide between {len(answers)} answers (weight: what moves, by how much):")
            for _, answer in answers.iterrows():
                moved = ", ".join(f"{name} {answer[f'shift[{name}]']:+.3g}" for name in answer.moves) or "nothing"
                lines.append(f"  {answer.weight:.2f}: {moved}")
        return "\n".join(lines)

    def plot_marginals(self, path: str | os.PathLike, samples: pd.DataFrame | None = None) -> Path:
        """PNG of each variable's observational histogram against the predicted interventional marginal."""
        return plots.plot_marginals(self, path, samples)
