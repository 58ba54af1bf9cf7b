"""Effects maths on the mixture's one-dimensional marginals (numpy, float64).

Per variable j, against the observational law estimated from the table (mean m_obs, sample std
s_obs, floored at the model's smallest std sqrt(cov_floor)):
- shift = (predicted mean) − m_obs. Its interval is the central `interval` (default 90%) range of
  the shift of the mixture's component means, weighted by the mixture weights: the components are
  the S latent draws from the prior, the model's alternative mechanisms given the data. With
  prior_samples=1 and one decoder component the interval is a single point.
- p_no_effect = total weight of the components whose marginal for j, N(mu_mj, sigma_mj²), lies
  within Hellinger distance `tolerance` (default 0.1) of N(m_obs, s_obs²). At tolerance 0.1 that
  is a mean shift of at most 0.28 s_obs at equal spread, or a std ratio within about 0.82–1.22 at
  equal mean. A pinned (point-mass) target never matches.

A mixture here is its weights (M,), component means (M, d) and component marginal stds (M, d).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr

DEFAULT_TOLERANCE = 0.1
DEFAULT_INTERVAL = 0.9


def marginal_cdf(x: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """CDF of the mixture sum_m w_m N(means_m, stds_m²) at x (...,); a zero std is a point mass."""
    x = x[..., None]  # (..., 1) against (M,)
    point_mass = np.where(x >= means, np.inf, -np.inf)
    standardised = np.where(stds > 0, (x - means) / np.where(stds > 0, stds, 1.0), point_mass)
    return (weights * ndtr(standardised)).sum(-1)


def marginal_quantiles(quantiles: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Quantiles of a one-dimensional Gaussian mixture by bisection on its CDF (exact to float64)."""
    low = np.full(quantiles.shape, float(np.min(means - 12.0 * stds)) - 1e-12)
    high = np.full(quantiles.shape, float(np.max(means + 12.0 * stds)) + 1e-12)
    for _ in range(200):
        middle = 0.5 * (low + high)
        below = marginal_cdf(middle, weights, means, stds) < quantiles
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
        if np.all(high - low <= 1e-12 * np.maximum(1.0, np.abs(high))):
            break
    return 0.5 * (low + high)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
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


def observational_law(observations: np.ndarray, std_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and sample std (d,) of the (N, d) table, the std floored at `std_floor`."""
    return observations.mean(0), np.maximum(observations.std(0, ddof=1), std_floor)


def shift_interval_and_no_effect(
    weights: np.ndarray,
    means: np.ndarray,
    stds: np.ndarray,
    obs_mean: np.ndarray,
    obs_std: np.ndarray,
    tolerance: float = DEFAULT_TOLERANCE,
    interval: float = DEFAULT_INTERVAL,
) -> tuple[np.ndarray, np.ndarray]:
    """The shift's interval (d, 2) (low, high) and P(no effect) (d,), as the module docstring defines them."""
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance is a Hellinger distance in (0, 1); got {tolerance}")
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval is a probability in (0, 1); got {interval}")
    component_shift = means - obs_mean  # (M, d)
    matches = hellinger_gaussian(means, stds, obs_mean, obs_std) <= tolerance  # (M, d)
    tails = ((1.0 - interval) / 2.0, (1.0 + interval) / 2.0)
    bounds = np.stack([weighted_quantiles(component_shift[:, j], weights, tails) for j in range(means.shape[1])])
    return bounds, np.clip((weights[:, None] * matches).sum(0), 0.0, 1.0)


# A component "moves" a variable when its mean lies more than this many observational SDs from the
# observational mean: the same size of shift P(no effect) tolerates (tolerance 0.1 is about 0.28 SD).
MOVE_THRESHOLD = 0.28


def alternatives(weights: np.ndarray, means: np.ndarray, obs_mean: np.ndarray, obs_std: np.ndarray,
                 free: np.ndarray, threshold: float = MOVE_THRESHOLD) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """The mixture's distinct answers: components grouped by which free variables they move.

    weights (M,), means (M, d), obs_mean and obs_std (d,), free (d,) bool (False for the targets) ->
    [(weight, moved (d,) bool, shift (d,))], heaviest first; shift is the group's weighted mean shift.
    """
    moved = (np.abs(means - obs_mean) > threshold * obs_std) & free  # (M, d)
    patterns, group = np.unique(moved, axis=0, return_inverse=True)
    out = []
    for g, pattern in enumerate(patterns):
        members = group.reshape(-1) == g
        weight = float(weights[members].sum())
        shift = (weights[members, None] * (means[members] - obs_mean)).sum(0) / max(weight, 1e-300)
        out.append((weight, pattern, shift))
    return sorted(out, key=lambda item: -item[0])
