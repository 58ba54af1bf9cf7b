"""What every reference method shares: its result type, input checks, the targets' realised values, and
the batched solves and packaging of eval/baselines.py and eval/dag_baselines.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

RIDGE = 1e-6


@dataclass
class BaselineSamples:
    samples: np.ndarray  # (P, n, d) float32, NaN where failed
    failed: np.ndarray  # (P,) bool
    errors: dict[int, str] = field(default_factory=dict)  # dataset index -> why it failed
    components: np.ndarray | None = None  # (P,) DAGs in each prediction's mixture (1: one model)
    seconds: float = 0.0  # wall time for the whole batch

    @property
    def failures(self) -> int:
        return int(self.failed.sum())


# ---------------------------------------------------------------------------------------
# shared pieces


def check_inputs(obs: np.ndarray, targets: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = np.asarray(obs, dtype=np.float64)
    targets = np.asarray(targets)
    values = np.asarray(values, dtype=np.float64)
    if obs.ndim != 3:
        raise ValueError(f"obs must be (P, N, d), got shape {obs.shape}")
    pairs, _, d = obs.shape
    if targets.shape != (pairs, d):
        raise ValueError(f"targets must be (P, d) = {(pairs, d)} to match obs {obs.shape}, got {targets.shape}")
    if values.shape != (pairs,):
        raise ValueError(f"values must be (P,) = ({pairs},), got {values.shape}")
    if n < 1:
        raise ValueError(f"n (samples to draw) must be >= 1, got {n}")
    mask = targets.astype(bool)
    if pairs and not mask.any(axis=1).all():
        raise ValueError("every row of targets needs at least one intervened variable")
    return obs, mask, values


def realised_values(values: np.ndarray, n: int, rng: np.random.Generator, point_mass: bool, jitter_var: float) -> np.ndarray:
    """The intervened variables' value in each of n samples, (P, n)."""
    values = np.asarray(values, dtype=np.float64)
    if point_mass:
        return np.repeat(values[:, None], n, axis=1)
    return values[:, None] + rng.normal(0.0, np.sqrt(jitter_var), size=(len(values), n))


def degenerate(obs: np.ndarray) -> dict[int, str]:
    """Datasets no fit can use: non-finite entries, or no variance at all."""
    errors = {}
    finite = np.isfinite(obs).all(axis=(1, 2))
    for p in np.flatnonzero(~finite):
        errors[int(p)] = "obs holds non-finite values"
    spread = np.where(finite, np.nan_to_num(obs).var(axis=1).sum(axis=1), 1.0)
    for p in np.flatnonzero(spread == 0):
        errors[int(p)] = "obs has zero variance: the fit is singular"
    return errors


def solve_each(matrix: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched solve; where one system is singular, solve the rest one by one.

    matrix (..., k, k), rhs (..., k, r) -> solution (..., k, r), ok (...) bool.
    """
    try:
        solution = np.linalg.solve(matrix, rhs)
        return solution, np.isfinite(solution).all(axis=(-2, -1))
    except np.linalg.LinAlgError:
        pass
    solution = np.full(rhs.shape, np.nan)
    ok = np.zeros(matrix.shape[:-2], dtype=bool)
    for index in np.ndindex(*matrix.shape[:-2]):
        try:
            solution[index] = np.linalg.solve(matrix[index], rhs[index])
            ok[index] = np.isfinite(solution[index]).all()
        except np.linalg.LinAlgError:
            pass
    return solution, ok


def finish(samples: np.ndarray, errors: dict[int, str], started: float, components: np.ndarray | None = None) -> BaselineSamples:
    """Mark non-finite outputs as failures, blank failed rows, package the result."""
    for p in np.flatnonzero(~np.isfinite(samples).all(axis=(1, 2))):
        errors.setdefault(int(p), "the prediction is not finite")
    failed = np.zeros(samples.shape[0], dtype=bool)
    failed[list(errors)] = True
    samples = samples.astype(np.float32)
    samples[failed] = np.nan
    if components is not None:
        components = np.where(failed, 0, components)
    return BaselineSamples(samples, failed, dict(sorted(errors.items())), components, time.perf_counter() - started)


def mvn_samples(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mean (P, n, d), cov (P, d, d) PSD -> samples (P, n, d); the eigen square root never fails on PSD."""
    eigval, eigvec = np.linalg.eigh(0.5 * (cov + cov.transpose(0, 2, 1)))
    root = eigvec * np.sqrt(np.clip(eigval, 0.0, None))[:, None, :]  # (P, d, d)
    noise = rng.standard_normal(mean.shape)
    return mean + noise @ root.transpose(0, 2, 1)
