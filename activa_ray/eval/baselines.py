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
NaN; the batch goes on. The discovery methods (their DAGs come from eval/discovery.py) can run as
parallel Ray tasks (`ray_tasks`).
"""

from __future__ import annotations

import importlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from activa_ray.data.graphs import is_acyclic
from activa_ray.eval.discovery import MAX_MEC_DAGS, ges_dags, lingam_dag

# Ridge added to fitted covariances, relative to their trace: all-zero genes stay solvable.
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


def _check_inputs(obs: np.ndarray, targets: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _degenerate(obs: np.ndarray) -> dict[int, str]:
    """Datasets no fit can use: non-finite entries, or no variance at all."""
    errors = {}
    finite = np.isfinite(obs).all(axis=(1, 2))
    for p in np.flatnonzero(~finite):
        errors[int(p)] = "obs holds non-finite values"
    spread = np.where(finite, np.nan_to_num(obs).var(axis=1).sum(axis=1), 1.0)
    for p in np.flatnonzero(spread == 0):
        errors[int(p)] = "obs has zero variance: the fit is singular"
    return errors


def _solve_each(matrix: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _finish(samples: np.ndarray, errors: dict[int, str], started: float, components: np.ndarray | None = None) -> BaselineSamples:
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


def _mvn_samples(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mean (P, n, d), cov (P, d, d) PSD -> samples (P, n, d); the eigen square root never fails on PSD."""
    eigval, eigvec = np.linalg.eigh(0.5 * (cov + cov.transpose(0, 2, 1)))
    root = eigvec * np.sqrt(np.clip(eigval, 0.0, None))[:, None, :]  # (P, d, d)
    noise = rng.standard_normal(mean.shape)
    return mean + noise @ root.transpose(0, 2, 1)


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
    solved, ok = _solve_each(system, cross.transpose(0, 2, 1))
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
    obs, mask, values = _check_inputs(obs, targets, values, n)
    errors = _degenerate(obs)
    law = conditional_gaussian(np.nan_to_num(obs), mask, values)
    for p in np.flatnonzero(~law.ok):
        errors.setdefault(int(p), "the targets' covariance is singular")
    realised = realised_values(values, n, rng, point_mass, jitter_var)  # (P, n)
    jitter = (realised - values[:, None])[:, :, None] * mask[:, None, :]  # (P, n, d): realised - nominal
    samples = _mvn_samples(law.mean[:, None, :] + jitter @ law.coef.transpose(0, 2, 1), law.cov, rng)
    samples = np.where(mask[:, None, :], realised[:, :, None], samples)
    return _finish(samples, errors, started, np.ones(len(obs), dtype=int))


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
    obs, mask, values = _check_inputs(obs, targets, values, n)
    pairs, size, _ = obs.shape
    errors = {p: msg for p, msg in _degenerate(obs).items() if "non-finite" in msg}
    if n <= size:
        rows = np.argsort(rng.random((pairs, size)), axis=1)[:, :n]
    else:
        rows = rng.integers(size, size=(pairs, n))
    samples = np.take_along_axis(obs, rows[:, :, None], axis=1)  # (P, n, d)
    realised = realised_values(values, n, rng, point_mass, jitter_var)
    samples = np.where(mask[:, None, :], realised[:, :, None], samples)
    return _finish(samples, errors, started, np.ones(pairs, dtype=int))


# ---------------------------------------------------------------------------------------
# fit a linear SEM on a DAG, simulate the intervention


def fit_and_simulate(
    obs: np.ndarray,
    graph: np.ndarray,
    mask: np.ndarray,
    realised: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares linear mechanisms on each DAG, then the intervention simulated.

    obs (Q, N, d), graph (Q, d, d) DAGs, mask (Q, d) targets, realised (Q, n) target values.
    Returns samples (Q, n, d) and ok (Q,) (False where a fit was singular).
    """
    pairs, size, d = obs.shape
    parents = graph.astype(np.float64)  # (Q, d, d): parents[:, i, j] = 1 if i -> j
    mean = obs.mean(axis=1)  # (Q, d)
    centered = obs - mean[:, None, :]
    gram = centered.transpose(0, 2, 1) @ centered  # (Q, d, d)
    gram = gram + RIDGE * np.trace(gram, axis1=1, axis2=2)[:, None, None] * np.eye(d)
    # One normal-equation system per node j: the parents' block of the Gram matrix, the
    # identity elsewhere (coefficients of non-parents come out 0). (Q, d_j, d, d)
    pa = parents.transpose(0, 2, 1)  # (Q, j, i)
    system = gram[:, None] * pa[:, :, :, None] * pa[:, :, None, :] + np.eye(d) * (1 - pa)[:, :, None, :]
    rhs = (gram.transpose(0, 2, 1) * pa)[..., None]  # (Q, j, i, 1): X_i . X_j over parents i
    solved, ok = _solve_each(system, rhs)
    weights = np.nan_to_num(solved[..., 0]).transpose(0, 2, 1)  # (Q, i, j): effect of i on j
    intercept = mean - np.einsum("qi,qij->qj", mean, weights)  # (Q, d)
    residuals = obs - intercept[:, None, :] - obs @ weights  # (Q, N, d)
    # Each variable's noise resampled independently from its own residuals (a DAG's noises are).
    n = realised.shape[1]
    draw = rng.integers(size, size=(pairs, n, d))
    noise = np.take_along_axis(residuals, draw, axis=1)  # (Q, n, d)
    cut = weights * (1 - mask)[:, None, :]  # the intervention removes the targets' parents
    held = mask[:, None, :]
    value = realised[:, :, None]
    samples = np.where(held, value, intercept[:, None, :] + noise)
    # d sweeps settle every variable: a DAG's longest path has at most d - 1 edges.
    for _ in range(d):
        samples = np.where(held, value, intercept[:, None, :] + noise + samples @ cut)
    return samples, ok.all(axis=1)


def oracle_graph(
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    graph: np.ndarray,
    point_mass: bool = False,
    jitter_var: float = 0.1,
) -> BaselineSamples:
    """Fit-and-simulate on the TRUE graph (P, d, d), graph[p, i, j] = edge i -> j."""
    started = time.perf_counter()
    obs, mask, values = _check_inputs(obs, targets, values, n)
    pairs, _, d = obs.shape
    graph = np.asarray(graph)
    if graph.shape != (pairs, d, d):
        raise ValueError(f"graph must be (P, d, d) = {(pairs, d, d)}, got {graph.shape}")
    errors = _degenerate(obs)
    for p in range(pairs):
        if not is_acyclic(graph[p]):
            errors.setdefault(p, "the given graph has a cycle")
    usable = np.where(np.isin(np.arange(pairs), list(errors)), 0, 1)[:, None, None]
    realised = realised_values(values, n, rng, point_mass, jitter_var)
    samples, ok = fit_and_simulate(np.nan_to_num(obs), graph * usable, mask, realised, rng)
    for p in np.flatnonzero(~ok):
        errors.setdefault(int(p), "the least-squares fit is singular")
    return _finish(samples, errors, started, np.ones(pairs, dtype=int))


# ---------------------------------------------------------------------------------------
# discovery baselines: learn DAG(s) per dataset, then fit and simulate them


def _learn_safely(learn: Callable[..., np.ndarray], obs: np.ndarray, seeds: np.ndarray, kwargs: dict) -> list[np.ndarray | str]:
    """Run `learn(obs (N, d), seed, **kwargs) -> DAGs (K, d, d)` on each dataset; an exception becomes its message."""
    out: list[np.ndarray | str] = []
    for data, seed in zip(obs, seeds):
        try:
            # All-zero genes make the libraries divide by zero; their warnings would flood the log.
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                out.append(learn(data, seed=int(seed), **kwargs))
        except Exception as err:  # a discovery library failing on one dataset must not end the batch
            out.append(f"{type(err).__name__}: {err}")
    return out


def _learn_all(learn: Callable[..., np.ndarray], obs: np.ndarray, seeds: np.ndarray, kwargs: dict, ray_tasks: int) -> list[np.ndarray | str]:
    """Map `_learn_safely` over datasets: in-process, or as `ray_tasks` parallel Ray tasks."""
    if ray_tasks <= 1 or len(obs) <= 1:
        return _learn_safely(learn, obs, seeds, kwargs)
    import ray

    remote = ray.remote(_learn_safely)
    parts = np.array_split(np.arange(len(obs)), min(ray_tasks, len(obs)))
    futures = [remote.remote(learn, obs[idx], seeds[idx], kwargs) for idx in parts]
    return [item for chunk in ray.get(futures) for item in chunk]


def _discovered(
    learn: Callable[..., np.ndarray],
    library: str,
    kwargs: dict,
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    point_mass: bool,
    jitter_var: float,
    ray_tasks: int,
) -> BaselineSamples:
    """Learn DAG(s) per dataset, fit-and-simulate each, uniform mixture over a dataset's DAGs."""
    importlib.import_module(library)  # a first import (scikit-learn...) is not the method's time
    started = time.perf_counter()
    obs, mask, values = _check_inputs(obs, targets, values, n)
    pairs, _, d = obs.shape
    errors = _degenerate(obs)
    todo = np.array([p for p in range(pairs) if p not in errors], dtype=int)
    if not len(todo):  # every dataset degenerate: nothing to learn from
        return _finish(np.full((pairs, n, d), np.nan), errors, started, np.zeros(pairs, dtype=int))
    # The conditions of one causal model share its obs: learn each distinct dataset once.
    _, first, which = np.unique(obs[todo].reshape(len(todo), -1), axis=0, return_index=True, return_inverse=True)
    seeds = rng.integers(2**31, size=len(first))
    learned_once = _learn_all(learn, obs[todo[first]], seeds, kwargs, ray_tasks)
    learned = [learned_once[k] for k in which.reshape(-1)]
    owner, dags = [], []  # one row per (dataset, DAG)
    components = np.zeros(pairs, dtype=int)
    for p, result in zip(todo, learned):
        if isinstance(result, str):
            errors[int(p)] = result
            continue
        components[p] = len(result)
        owner.extend([p] * len(result))
        dags.extend(result)
    samples = np.full((pairs, n, d), np.nan)
    realised = realised_values(values, n, rng, point_mass, jitter_var)  # (P, n)
    if owner:
        owner_arr = np.array(owner)
        sims, ok = fit_and_simulate(obs[owner_arr], np.stack(dags), mask[owner_arr], realised[owner_arr], rng)
        for p in np.unique(owner_arr[~ok]):
            errors.setdefault(int(p), "the least-squares fit is singular")
        start = 0
        for p in np.unique(owner_arr):
            k = components[p]
            # Equal weights: sample i comes from DAG (i mod k), in a random order.
            choice = rng.permutation(np.arange(n) % k)
            samples[p] = sims[start + choice, np.arange(n)]
            start += k
    return _finish(samples, errors, started, components)


def lingam(
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    point_mass: bool = False,
    jitter_var: float = 0.1,
    ray_tasks: int = 0,
) -> BaselineSamples:
    """DirectLiNGAM's DAG per dataset, then linear fit-and-simulate."""
    return _discovered(lingam_dag, "lingam", {}, obs, targets, values, n, rng, point_mass, jitter_var, ray_tasks)


def ges_mec(
    obs: np.ndarray,
    targets: np.ndarray,
    values: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    point_mass: bool = False,
    jitter_var: float = 0.1,
    ray_tasks: int = 0,
    max_dags: int = MAX_MEC_DAGS,
) -> BaselineSamples:
    """GES's equivalence class per dataset (up to max_dags DAGs), uniform mixture of fit-and-simulate."""
    return _discovered(ges_dags, "causallearn.search.ScoreBased.GES", {"max_dags": max_dags}, obs, targets, values, n, rng, point_mass, jitter_var, ray_tasks)


# Name -> method, as `jobs/evaluate.py --methods` spells them.
BASELINES: dict[str, Callable[..., BaselineSamples]] = {
    "baseline": conditional_mvn,
    "no_effect": no_effect,
    "oracle_graph": oracle_graph,
    "lingam": lingam,
    "ges_mec": ges_mec,
}
