"""Predict interventional distributions for a user's own observational table (no Ray).

    from activa_ray.predict import load
    predictor = load("runs/gauss8/export")
    prediction = predictor.predict(frame, target="gene_3", value=5.0)
    prediction.sample(1000, seed=0)     # DataFrame with the table's columns
    prediction.effects()                # per variable: shift of the mean, interval, P(no effect)

Scale: the model is trained on raw, unstandardised values (as in the paper) and the intervention
value is an absolute value in the data's units (do(X = 5.0)), so the table is fed as it is; no
standardisation is applied or inverted. A warning (not an error) says when the table's scale,
its number of variables d or rows N lie far from what the model was trained on.

Effects (`Prediction.effects`), per variable j, against the observational law estimated from the
table (mean m_obs, sample std s_obs, floored at the model's smallest std sqrt(cov_floor)):
- shift = (predicted mean) − m_obs. Its interval is the central `interval` (default 90%) range of
  the shift of the mixture's component means, weighted by the mixture weights: the components are
  the S latent draws from the prior, the model's alternative mechanisms given the data. With
  prior_samples=1 and one decoder component the interval is a single point.
- p_no_effect = total weight of the components whose marginal for j, N(mu_mj, sigma_mj²), lies
  within Hellinger distance `tolerance` (default 0.1) of N(m_obs, s_obs²). At tolerance 0.1 that
  is a mean shift of at most 0.28 s_obs at equal spread, or a std ratio within about 0.82–1.22 at
  equal mean. A pinned (point-mass) target never matches.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr

from activa_ray.model.activa import Activa
from activa_ray.model.io import ModelFileError, load_model
from activa_ray.model.mixture import GaussianMixture

# The data's mean |x| or std this many times above or below the training data's triggers a warning.
SCALE_FACTOR = 5.0
# N outside [n_samples / ROWS_FACTOR, n_samples * ROWS_FACTOR] triggers a warning.
ROWS_FACTOR = 2.0
DEFAULT_TOLERANCE = 0.1
DEFAULT_INTERVAL = 0.9
QUANTILES = (0.05, 0.5, 0.95)
# How many variables the marginal plot shows at most (targets first, then the largest shifts).
MAX_PLOTTED_VARIABLES = 24


class PredictError(ValueError):
    """Input a user can fix (table, query, model directory); the message says what and where."""


# ---------------------------------------------------------------------------------------------
# tables


def _check_frame(
    frame: pd.DataFrame, source: str, line_offset: int | None, min_rows: int
) -> tuple[np.ndarray, list[str]]:
    """Numeric (N, d) float64 values and the column names of `frame`, or one PredictError.

    line_offset: the file line of data row 0 (2 for a CSV with a header), so errors can name it.
    """
    def where(row: int) -> str:
        return f"row {row}" + (f" (line {row + line_offset})" if line_offset is not None else "")

    names = [str(name) for name in frame.columns]
    if not names:
        raise PredictError(f"{source}: the table has no columns")
    unnamed = [name for name in names if name.startswith("Unnamed:")]
    if unnamed:
        raise PredictError(
            f"{source}: column {unnamed[0]!r} has no name in the header (an index written with the data?); "
            "name every column, e.g. write the CSV with index=False"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise PredictError(f"{source}: duplicated column name(s) {duplicated}")
    if len(frame) < min_rows:
        raise PredictError(f"{source}: needs at least {min_rows} row(s); got {len(frame)}")

    columns = []
    for name, column in zip(names, (frame.iloc[:, j] for j in range(frame.shape[1]))):
        if column.dtype.kind in "iuf":
            columns.append(column.to_numpy(dtype=np.float64))
            continue
        if column.dtype.kind == "b":
            raise PredictError(f"{source}: column {name!r} holds true/false values; every cell must be a number")
        numeric = pd.to_numeric(column, errors="coerce")
        bad = numeric.isna().to_numpy() & column.notna().to_numpy()  # text that is not a number
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PredictError(f"{source}: column {name!r}, {where(row)}: {column.iloc[row]!r} is not a number")
        columns.append(numeric.to_numpy(dtype=np.float64))
    values = np.stack(columns, axis=1)  # (N, d)
    nonfinite = ~np.isfinite(values)
    if nonfinite.any():
        row, col = (int(i) for i in np.argwhere(nonfinite)[0])
        cell = values[row, col]
        what = "an empty or NaN cell" if np.isnan(cell) else f"{cell} (infinite)"
        raise PredictError(f"{source}: column {names[col]!r}, {where(row)}: {what}; every cell must be a finite number")
    return values, names


def as_table(
    obs_table: pd.DataFrame | Mapping[str, Any] | np.ndarray,
    columns: Sequence[str] | None = None,
    source: str = "observational table",
    line_offset: int | None = None,
    min_rows: int = 2,
) -> pd.DataFrame:
    """The observational table as a float64 DataFrame with string column names, checked.

    obs_table: a DataFrame, a dict of columns, or an (N, d) array (names from `columns`, else
    V0..V{d-1}). Raises PredictError naming the column and row of a non-numeric or non-finite cell.
    """
    if isinstance(obs_table, pd.DataFrame):
        frame = obs_table
        if columns is not None:
            raise PredictError("columns= is for numpy arrays; a DataFrame carries its own column names")
    elif isinstance(obs_table, Mapping):
        try:
            frame = pd.DataFrame(dict(obs_table))
        except ValueError as error:
            raise PredictError(f"{source}: the dict of columns is not a table ({error})") from None
        if columns is not None:
            raise PredictError("columns= is for numpy arrays; a dict carries its own column names")
    elif isinstance(obs_table, np.ndarray):
        if obs_table.ndim != 2:
            raise PredictError(f"{source}: expected an (N, d) array; got shape {obs_table.shape}")
        if columns is None:
            columns = [f"V{j}" for j in range(obs_table.shape[1])]
        if len(columns) != obs_table.shape[1]:
            raise PredictError(f"{source}: {len(columns)} column names for {obs_table.shape[1]} columns")
        frame = pd.DataFrame(obs_table, columns=list(columns))
    else:
        raise PredictError(
            f"{source}: expected a pandas DataFrame, a dict of columns or an (N, d) numpy array; got {type(obs_table).__name__}"
        )
    values, names = _check_frame(frame, source, line_offset, min_rows)
    return pd.DataFrame(values, columns=names)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a CSV (with a header row) or Parquet table -> float64 DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise PredictError(f"{path}: expected a .csv or .parquet file")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
            line_offset = 2  # line 1 is the header
        else:
            frame = pd.read_parquet(path)
            line_offset = None
    except pd.errors.EmptyDataError:
        raise PredictError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PredictError(f"{path}: cannot be read as {suffix[1:]} ({first_line})") from None
    return as_table(frame, source=str(path), line_offset=line_offset)


# ---------------------------------------------------------------------------------------------
# the mixture's one-dimensional marginals (numpy, float64)


def _marginal_cdf(x: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """CDF of the mixture sum_m w_m N(means_m, stds_m²) at x (...,); a zero std is a point mass."""
    x = x[..., None]  # (..., 1) against (M,)
    point_mass = np.where(x >= means, np.inf, -np.inf)
    standardised = np.where(stds > 0, (x - means) / np.where(stds > 0, stds, 1.0), point_mass)
    return (weights * ndtr(standardised)).sum(-1)


def _marginal_quantiles(quantiles: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Quantiles of a one-dimensional Gaussian mixture by bisection on its CDF (exact to float64)."""
    low = np.full(quantiles.shape, float(np.min(means - 12.0 * stds)) - 1e-12)
    high = np.full(quantiles.shape, float(np.max(means + 12.0 * stds)) + 1e-12)
    for _ in range(200):
        middle = 0.5 * (low + high)
        below = _marginal_cdf(middle, weights, means, stds) < quantiles
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
        if np.all(high - low <= 1e-12 * np.maximum(1.0, np.abs(high))):
            break
    return 0.5 * (low + high)


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Quantiles of the discrete distribution putting weight w_m on values_m (lower quantile)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    cumulative /= cumulative[-1]
    positions = np.searchsorted(cumulative, np.asarray(quantiles) - 1e-12, side="left")
    return values[order][np.minimum(positions, len(values) - 1)]


def hellinger_gaussian(mean_a: np.ndarray, std_a: np.ndarray, mean_b: np.ndarray, std_b: np.ndarray) -> np.ndarray:
    """Hellinger distance between N(mean_a, std_a²) and N(mean_b, std_b²), elementwise, in [0, 1]."""
    variance_sum = std_a**2 + std_b**2
    with np.errstate(divide="ignore", invalid="ignore"):
        affinity = np.sqrt(2.0 * std_a * std_b / variance_sum) * np.exp(-((mean_a - mean_b) ** 2) / (4.0 * variance_sum))
    affinity = np.where(variance_sum > 0, affinity, (mean_a == mean_b).astype(float))
    return np.sqrt(np.clip(1.0 - affinity, 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# a prediction


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

    def _components(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights (M,), component means (M, d) and component marginal stds (M, d), float64."""
        means = self.mixture.means[0].cpu().double().numpy()
        variances = self.mixture.component_covariances[0].diagonal(dim1=-2, dim2=-1).cpu().double().numpy()
        return self.weights, means, np.sqrt(np.clip(variances, 0.0, None))

    def marginals(self, quantiles: Sequence[float] = QUANTILES) -> pd.DataFrame:
        """Per variable: mean, std and the given quantiles (columns q05, q50, q95) of the predicted marginal."""
        weights, means, stds = self._components()
        levels = np.asarray(quantiles, dtype=np.float64)
        rows = {
            name: _marginal_quantiles(levels, weights, means[:, j], stds[:, j]) for j, name in enumerate(self.columns)
        }
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=[f"q{round(100 * q):02d}" for q in levels])
        frame.insert(0, "std", self.std.to_numpy())
        frame.insert(0, "mean", self.mean.to_numpy())
        frame.index.name = "variable"
        return frame

    def effects(self, tolerance: float = DEFAULT_TOLERANCE, interval: float = DEFAULT_INTERVAL) -> pd.DataFrame:
        """Per variable: the observational law, the predicted shift of the mean with an interval, P(no effect).

        See the module docstring for how the interval and P(no effect) are defined.
        """
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"tolerance is a Hellinger distance in (0, 1); got {tolerance}")
        if not 0.0 < interval < 1.0:
            raise ValueError(f"interval is a probability in (0, 1); got {interval}")
        weights, means, stds = self._components()
        obs = self.observations[self.columns].to_numpy(dtype=np.float64)
        obs_mean = obs.mean(0)  # (d,)
        obs_std = np.maximum(obs.std(0, ddof=1), self.std_floor)  # (d,)
        component_shift = means - obs_mean  # (M, d)
        matches = hellinger_gaussian(means, stds, obs_mean, obs_std) <= tolerance  # (M, d)
        tails = ((1.0 - interval) / 2.0, (1.0 + interval) / 2.0)
        bounds = np.stack([_weighted_quantiles(component_shift[:, j], weights, tails) for j in range(len(self.columns))])
        predicted_mean = self.mean.to_numpy()
        frame = pd.DataFrame(
            {
                "obs_mean": obs_mean,
                "obs_std": obs_std,
                "pred_mean": predicted_mean,
                "pred_std": self.std.to_numpy(),
                "shift": predicted_mean - obs_mean,
                "shift_low": bounds[:, 0],
                "shift_high": bounds[:, 1],
                "p_no_effect": np.clip((weights[:, None] * matches).sum(0), 0.0, 1.0),
            },
            index=pd.Index(self.columns, name="variable"),
        )
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
        }

    def format_effects(self, tolerance: float = DEFAULT_TOLERANCE, interval: float = DEFAULT_INTERVAL) -> str:
        """The effect table a scientist reads first, as aligned text."""
        effects = self.effects(tolerance, interval)
        width = max(8, *(len(name) + (9 if name in self.targets else 0) for name in self.columns))
        level = f"{interval:.0%} interval"
        lines = [
            f"do({', '.join(self.targets)} = {self.value:g}): predicted effects on {len(self.columns)} variables "
            f"(N_obs = {len(self.observations)}, {self.prior_samples} prior samples)",
            f"{'variable':<{width}}  {'obs mean':>10}  {'pred mean':>10}  {'shift':>10}  {level:>23}  {'P(no effect)':>12}",
        ]
        for name, row in effects.iterrows():
            label = f"{name} (target)" if name in self.targets else name
            bounds = f"[{row.shift_low:+.3g}, {row.shift_high:+.3g}]"
            lines.append(
                f"{label:<{width}}  {row.obs_mean:>10.4g}  {row.pred_mean:>10.4g}  {row['shift']:>+10.4g}  "
                f"{bounds:>23}  {row.p_no_effect:>12.2f}"
            )
        return "\n".join(lines)

    def plot_marginals(self, path: str | os.PathLike, samples: pd.DataFrame | None = None) -> Path:
        """PNG of each variable's observational histogram against the predicted interventional marginal."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        effects = self.effects()
        others = [name for name in self.columns if name not in self.targets]
        others.sort(key=lambda name: -abs(effects.loc[name, "shift"]) / effects.loc[name, "obs_std"])
        shown = (list(self.targets) + others)[:MAX_PLOTTED_VARIABLES]
        shown.sort(key=self.columns.index)
        weights, means, stds = self._components()
        columns = min(4, len(shown))
        rows = math.ceil(len(shown) / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
        for axis in axes.flat[len(shown):]:
            axis.set_visible(False)
        for axis, name in zip(axes.flat, shown):
            j = self.columns.index(name)
            observed = self.observations[name].to_numpy()
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
                           / (safe * math.sqrt(2 * math.pi))).sum(-1)
                axis.plot(grid, density, color="tab:red", lw=1.8, label="predicted interventional")
            title = f"{name} (target)" if name in self.targets else name
            axis.set_title(f"{title}\nshift {effects.loc[name, 'shift']:+.3g}, "
                           f"P(no effect) {effects.loc[name, 'p_no_effect']:.2f}", fontsize=9)
            axis.tick_params(labelsize=8)
        axes.flat[0].legend(fontsize=7, loc="best")
        heading = f"do({', '.join(self.targets)} = {self.value:g})"
        if len(shown) < len(self.columns):
            heading += f": {len(shown)} of {len(self.columns)} variables (targets and largest shifts)"
        figure.suptitle(heading, fontsize=11)
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path


# ---------------------------------------------------------------------------------------------
# the predictor


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


class Predictor:
    """An exported ACTIVA model ready to answer queries on observational tables."""

    def __init__(self, model: Activa, meta: dict | None = None, source: str = "model") -> None:
        self.model = model.eval()
        self.meta = meta or {}
        self.source = source
        self.device = next(model.parameters()).device
        missing = [
            name for name, value in (
                ("data.d", self.trained_d),
                ("data.n_samples", self.trained_n_samples),
                ("data_stats.obs_abs_mean", _get(self.meta, "data_stats", "obs_abs_mean")),
                ("data_stats.obs_std", _get(self.meta, "data_stats", "obs_std")),
                ("config.data.linear.targets_per_intervention", self.targets_per_intervention),
            ) if value is None
        ]
        if missing:
            warnings.warn(
                f"{source}: the model's meta lacks {', '.join(missing)}; the checks that need them are skipped "
                "(multi-target queries are refused without targets_per_intervention)",
                stacklevel=3,
            )

    @property
    def intervention_values(self) -> list[float]:
        return [float(v) for v in self.model.cfg.intervention_values]

    @property
    def trained_d(self) -> int | None:
        return _get(self.meta, "data", "d")

    @property
    def trained_n_samples(self) -> int | None:
        return _get(self.meta, "data", "n_samples")

    @property
    def targets_per_intervention(self) -> int | None:
        return _get(self.meta, "config", "data", "linear", "targets_per_intervention")

    def value_index(self, value: float | None) -> tuple[int, float]:
        """(index, value) of `value` in the model's table; None means the table's only value."""
        table = self.intervention_values
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise PredictError(f"value must be a number from the model's table {table}; got {value!r}")
        if value is None:
            if len(table) == 1:
                return 0, table[0]
            raise PredictError(f"the model knows several intervention values {table}; choose one with value=")
        for index, known in enumerate(table):
            if math.isclose(float(value), known, rel_tol=1e-6, abs_tol=1e-9):
                return index, known
        raise PredictError(
            f"value {value:g} is not in the model's table of intervention values {table}: "
            f"the model predicts do(target = v) only for v in that table"
        )

    def _target_mask(self, target: str | Sequence[str], columns: list[str]) -> tuple[list[str], np.ndarray]:
        names = [target] if isinstance(target, str) else list(target)
        if not names or not all(isinstance(name, str) for name in names):
            raise PredictError(f"target must be a column name or a list of column names; got {target!r}")
        unknown = [name for name in names if name not in columns]
        if unknown:
            shown = columns if len(columns) <= 20 else columns[:20] + ["..."]
            raise PredictError(f"unknown target {unknown[0]!r}: the table's columns are {shown}")
        if len(set(names)) != len(names):
            raise PredictError(f"target lists a column twice: {names}")
        trained = self.targets_per_intervention
        if len(names) > 1 and (trained is None or trained <= 1):
            raise PredictError(
                f"several targets {names} need a model trained on multi-target interventions "
                f"(config data.linear.targets_per_intervention > 1); this model's is {trained}"
            )
        if trained is not None and trained > 1 and len(names) != trained:
            warnings.warn(
                f"the model was trained on interventions on {trained} variables at once; this query has {len(names)}",
                stacklevel=4,
            )
        mask = np.zeros(len(columns), dtype=np.float32)
        mask[[columns.index(name) for name in names]] = 1.0
        return names, mask

    def check_scale(self, table: pd.DataFrame) -> None:
        """Warn when d, N or the data's scale lie far from the training data (the model sees raw values)."""
        n_rows, d = table.shape
        if self.trained_d is not None and d != self.trained_d:
            warnings.warn(
                f"the table has d = {d} variables; the model was trained on d = {self.trained_d} "
                "(it accepts any d, but accuracy away from the trained d is not guaranteed)",
                stacklevel=4,
            )
        trained_n = self.trained_n_samples
        if trained_n is not None and not trained_n / ROWS_FACTOR <= n_rows <= trained_n * ROWS_FACTOR:
            warnings.warn(
                f"the table has N = {n_rows} rows; the model was trained on N = {trained_n} observational samples "
                f"(it accepts any N, but accuracy beyond {ROWS_FACTOR:g}x of the trained N is not guaranteed)",
                stacklevel=4,
            )
        values = table.to_numpy()
        ours = {"mean |x|": float(np.abs(values).mean()), "std": float(values.std())}
        trained = {
            "mean |x|": _get(self.meta, "data_stats", "obs_abs_mean"),
            "std": _get(self.meta, "data_stats", "obs_std"),
        }
        far = [
            key for key in ours
            if trained[key] is not None and trained[key] > 0
            and not trained[key] / SCALE_FACTOR <= ours[key] <= trained[key] * SCALE_FACTOR
        ]
        if far:
            described = ", ".join(f"{key} {ours[key]:.3g} vs {trained[key]:.3g}" for key in far)
            warnings.warn(
                f"the data's scale is far from the training data's ({described}; more than {SCALE_FACTOR:g}x apart): "
                "the model works on raw, unstandardised values, so its predictions here are unreliable. "
                "Rescaling the data also rescales what do(target = value) means.",
                stacklevel=4,
            )

    def predict_many(
        self,
        obs_table: pd.DataFrame | Mapping[str, Any] | np.ndarray,
        queries: Sequence[tuple[str | Sequence[str], float | None]],
        prior_samples: int = 50,
        seed: int = 0,
        columns: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """One Prediction per (target, value) query, all from one batched forward pass."""
        table = as_table(obs_table, columns)
        names = list(table.columns)
        if not queries:
            raise PredictError("predict_many needs at least one (target, value) query")
        if not isinstance(prior_samples, int) or prior_samples < 1:
            raise PredictError(f"prior_samples must be a positive integer; got {prior_samples!r}")
        parsed = []
        for query in queries:
            if not isinstance(query, (tuple, list)) or len(query) != 2:
                raise PredictError(f"each query must be a (target, value) pair; got {query!r}")
            target_names, mask = self._target_mask(query[0], names)
            index, value = self.value_index(query[1])
            parsed.append((target_names, mask, index, value))
        self.check_scale(table)

        batch = len(parsed)
        obs = torch.tensor(table.to_numpy(), dtype=torch.float32, device=self.device)
        obs = obs.unsqueeze(0).expand(batch, -1, -1)  # (B, N, d)
        targets = torch.as_tensor(np.stack([mask for _, mask, _, _ in parsed]), device=self.device)  # (B, d)
        value_index = torch.tensor([index for _, _, index, _ in parsed], dtype=torch.long, device=self.device)
        values = torch.tensor([value for _, _, _, value in parsed], dtype=torch.float32, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        mixture = self.model.predict(obs, targets, value_index, prior_samples=prior_samples,
                                     generator=generator, values=values)
        std_floor = math.sqrt(self.model.cfg.cov_floor)
        return [
            Prediction(mixture.select(i), names, target_names, value, table, prior_samples, std_floor)
            for i, (target_names, _, _, value) in enumerate(parsed)
        ]

    def predict(
        self,
        obs_table: pd.DataFrame | Mapping[str, Any] | np.ndarray,
        target: str | Sequence[str],
        value: float | None = None,
        prior_samples: int = 50,
        seed: int = 0,
        columns: Sequence[str] | None = None,
    ) -> Prediction:
        """p(V | obs_table, do(target = value)); value None means the model's only table value."""
        return self.predict_many(obs_table, [(target, value)], prior_samples, seed, columns)[0]


def load(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """Load an exported model directory (model.safetensors + config.json) as a Predictor."""
    try:
        model, meta = load_model(model_dir, device=device)
    except ModelFileError as error:
        raise PredictError(f"not an exported activa_ray model: {error}") from None
    return Predictor(model, meta, source=str(model_dir))
