"""What a practitioner would do instead of ACTIVA: predict interventional samples from obs.

Every method takes obs (P, N, d), targets (P, d) (1 = intervened), values (P,) (the nominal
intervention value), the number of samples n and a numpy Generator, and returns a
`BaselineSamples` whose samples (P, n, d) hold the targets at their value: the realised value
N(value, jitter_var) per sample for the linear kinds (the data's jitter), exactly the value for
point-mass interventions (SERGIO knockouts, `point_mass=True`).

- `conditional_mvn`: the paper's baseline (6.3): an MVN fitted to obs (ridge 1e-6 * trace:
  SERGIO has all-zero genes), conditioned on the targets' realised values.
- `no_effect`: the observational samples with the targets set to their value.
- `oracle_graph`: the TRUE graph, linear mechanisms fitted by least squares on obs, residuals
  resampled, the intervention simulated: what a perfect structure learner could do.
- `lingam`: DirectLiNGAM's DAG, then the same fit-and-simulate.
- `ges_mec`: GES's CPDAG, every DAG of its Markov equivalence class (up to `max_dags`, 64 by
  default, in random branch order) fitted and simulated, a uniform mixture over them (IDA).

A failure on one dataset (zero-variance obs, a singular fit, an exception in a discovery
library, non-finite output) is recorded in `failed`/`errors` and that dataset's samples are
NaN; the batch goes on. The graph-based methods live in eval/dag_baselines.py (their DAGs come from
eval/discovery.py; the discovery ones can run as parallel Ray tasks, `ray_tasks`), the pieces every
method shares in eval/baseline_samples.py; `BASELINES` below names them all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from activa_ray.eval.baseline_samples import (RIDGE, BaselineSamples, check_inputs, degenerate, finish, mvn_samples,
                                              realised_values, solve_each)
from activa_ray.eval.dag_baselines import ges_mec, lingam, oracle_graph


# ---------------------------------------------------------------------------------------
# conditioning and "no effect"


def observational_moments(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """obs (P, N, d) -> mean (P, d) and covariance (P, d, d), ridged by RIDGE * trace so it inverts."""
    mean = obs.mean(axis=1)
    centered = obs - mean[:, None, :]
    cov = centered.transpose(0, 2, 1) @ centered / max(obs.shape[1] - 1, 1)
    return mean, cov + RIDGE * np.trace(cov, axis1=1, axis2=2)[:, None, None] * np.eye(obs.shape[-1])


@dataclass
class ConditionalGaussian:
    """The MVN fitted to obs, conditioned on its targets at the nominal value."""

    mean: np.ndarray  # (P, d): E[V | V_T = value]
    cov: np.ndarray  # (P, d, d): Σ - Σ_{·T} Σ_TT^{-1} Σ_{T·}
    coef: np.ndarray  # (P, d, d): B[:, :, T] = Σ_{·T} Σ_TT^{-1}, zero elsewhere
    ok: np.ndarray  # (P,) bool: False where the targets' covariance is singular


def conditional_gaussian(obs: np.ndarray, mask: np.ndarray, values: np.ndarray) -> ConditionalGaussian:
    """obs (P, N, d) finite, mask (P, d) bool targets, values (P,) -> the paper's baseline law (6.3)."""
    d = obs.shape[-1]
    t = mask.astype(np.float64)  # (P, d)
    mean, cov = observational_moments(obs)
    # Regression of every variable on the targets. The system is Σ_TT on the target block and the
    # identity elsewhere, so one batched solve handles every target set at once.
    system = cov * t[:, :, None] * t[:, None, :] + np.eye(d) * (1 - t)[:, None, :]  # (P, d, d)
    cross = cov * t[:, None, :]  # (P, d, d): Σ_{·T}
    solved, ok = solve_each(system, cross.transpose(0, 2, 1))
    coef = np.nan_to_num(solved).transpose(0, 2, 1)  # (P, d, d)
    shift = (values[:, None] - mean) * t  # (P, d)
    return ConditionalGaussian(mean + np.einsum("pij,pj->pi", coef, shift), cov - coef @ cov, coef, ok)


def conditional_mvn(
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    point_mass: bool = False,
    jitter_var: float = 0.1,
) -> BaselineSamples:
    """Paper 6.3: p(V_rest | V_T = v) of an MVN fitted to obs; V_T set to the (realised) value."""
    started = time.perf_counter()
    obs, mask, values = check_inputs(obs, targets, values, n)
    errors = degenerate(obs)
    law = conditional_gaussian(np.nan_to_num(obs), mask, values)
    for p in np.flatnonzero(~law.ok):
        errors.setdefault(int(p), "the targets' covariance is singular")
    realised = realised_values(values, n, rng, point_mass, jitter_var)  # (P, n)
    jitter = (realised - values[:, None])[:, :, None] * mask[:, None, :]  # (P, n, d): realised - nominal
    samples = mvn_samples(law.mean[:, None, :] + jitter @ law.coef.transpose(0, 2, 1), law.cov, rng)
    samples = np.where(mask[:, None, :], realised[:, :, None], samples)
    return finish(samples, errors, started, np.ones(len(obs), dtype=int))


def no_effect(
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    point_mass: bool = False,
    jitter_var: float = 0.1,
) -> BaselineSamples:
    """The observational samples (n of them: a subsample, or with replacement when n > N), targets set."""
    started = time.perf_counter()
    obs, mask, values = check_inputs(obs, targets, values, n)
    pairs, size, _ = obs.shape
    errors = {p: msg for p, msg in degenerate(obs).items() if "non-finite" in msg}
    if n <= size:
        rows = np.argsort(rng.random((pairs, size)), axis=1)[:, :n]
    else:
        rows = rng.integers(size, size=(pairs, n))
    samples = np.take_along_axis(obs, rows[:, :, None], axis=1)  # (P, n, d)
    realised = realised_values(values, n, rng, point_mass, jitter_var)
    samples = np.where(mask[:, None, :], realised[:, :, None], samples)
    return finish(samples, errors, started, np.ones(pairs, dtype=int))


# Name -> method, as `jobs/evaluate.py --methods` spells them.
BASELINES: dict[str, Callable[..., BaselineSamples]] = {
    "baseline": conditional_mvn,
    "no_effect": no_effect,
    "oracle_graph": oracle_graph,
    "lingam": lingam,
    "ges_mec": ges_mec,
}
