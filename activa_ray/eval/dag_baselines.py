"""The references that use a causal graph: linear mechanisms fitted by least squares on a DAG (the true
one, DirectLiNGAM's, or every DAG of GES's equivalence class) and the intervention simulated from them
with resampled residuals. Their DAGs come from eval/discovery.py; the registry is eval/baselines.py."""

from __future__ import annotations

import importlib
import time
import warnings
from typing import Callable

import numpy as np

from activa_ray.data.graphs import is_acyclic
from activa_ray.eval.baseline_samples import (RIDGE, BaselineSamples, check_inputs, degenerate, finish, realised_values,
                                              solve_each)
from activa_ray.eval.discovery import MAX_MEC_DAGS, ges_dags, lingam_dag


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
    solved, ok = solve_each(system, rhs)
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
    obs, mask, values = check_inputs(obs, targets, values, n)
    pairs, _, d = obs.shape
    graph = np.asarray(graph)
    if graph.shape != (pairs, d, d):
        raise ValueError(f"graph must be (P, d, d) = {(pairs, d, d)}, got {graph.shape}")
    errors = degenerate(obs)
    for p in range(pairs):
        if not is_acyclic(graph[p]):
            errors.setdefault(p, "the given graph has a cycle")
    usable = np.where(np.isin(np.arange(pairs), list(errors)), 0, 1)[:, None, None]
    realised = realised_values(values, n, rng, point_mass, jitter_var)
    samples, ok = fit_and_simulate(np.nan_to_num(obs), graph * usable, mask, realised, rng)
    for p in np.flatnonzero(~ok):
        errors.setdefault(int(p), "the least-squares fit is singular")
    return finish(samples, errors, started, np.ones(pairs, dtype=int))


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
    obs, mask, values = check_inputs(obs, targets, values, n)
    pairs, _, d = obs.shape
    errors = degenerate(obs)
    todo = np.array([p for p in range(pairs) if p not in errors], dtype=int)
    if not len(todo):  # every dataset degenerate: nothing to learn from
        return finish(np.full((pairs, n, d), np.nan), errors, started, np.zeros(pairs, dtype=int))
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
    return finish(samples, errors, started, components)


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
