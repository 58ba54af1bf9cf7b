"""Linear additive SCMs (paper appendix A.1), simulated for many models per call.

V_j = sum_i beta_ij V_i + eps_j. In matrix form one sample row x (1, d) solves x = x W + e, so
x = e (I - W)^-1 = e A, where A[i, j] sums the weight products of all directed paths i ~> j
(A = I + W + W^2 + ..., finite because W is nilpotent on a DAG). Every condition of every
model is then one small matmul of its noise (N, d) with its own A: no loop over models,
samples or variables.

do(V_t = v) removes the edges into t. Every path through t splits at t into i ~> t and t ~> j,
so the intervened path matrix is the rank-1 update A_t = A - (A[:, t] - e_t) A[t, :]: row t
keeps A[t, :] (t's own "noise" slot carries the realised value v + jitter) and no path enters
t any more. Non-descendants of t have A[:, j] untouched, so they keep their observational law.
Multi-target interventions apply the update once per target.
"""

from __future__ import annotations

import numpy as np

from activa_ray.data.config import LinearSCMConfig
from activa_ray.data.graphs import er_acyclify, er_ordered


def draw_weights(rng: np.random.Generator, graph: np.ndarray, low: float, high: float) -> np.ndarray:
    """beta_ij ~ U([-high, -low] U [low, high]) on the edges of `graph` (M, d, d); 0 elsewhere."""
    magnitude = rng.uniform(low, high, size=graph.shape)
    sign = np.where(rng.random(graph.shape) < 0.5, -1.0, 1.0)
    return np.where(graph == 1, magnitude * sign, 0.0).astype(np.float32)


def path_matrix(weights: np.ndarray) -> np.ndarray:
    """(I - W)^-1 for a batch of DAG weight matrices (..., d, d), as the product
    (I + W)(I + W^2)(I + W^4)... (exact once 2^k >= d, W being nilpotent)."""
    d = weights.shape[-1]
    power = weights
    paths = np.eye(d, dtype=weights.dtype) + weights
    reach = 2
    while reach < d:
        power = power @ power
        paths = paths + paths @ power
        reach *= 2
    return paths


def intervention_targets(
    rng: np.random.Generator, n_models: int, d: int, n_values: int, per_intervention: int
) -> np.ndarray:
    """Target indices int64 (M, C, K), C = d * n_values, K = per_intervention.

    K = 1: condition c intervenes on variable c % d with value index c // d (every variable,
    for every value). K > 1: each condition's K targets are a uniformly random K-subset."""
    if per_intervention == 1:
        single = np.tile(np.arange(d), n_values)  # (C,)
        return np.broadcast_to(single[None, :, None], (n_models, d * n_values, 1)).copy()
    keys = rng.random((n_models, d * n_values, d))
    return np.argsort(keys, axis=2)[:, :, :per_intervention]


def intervened_paths(paths: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Path matrices after cutting the edges into each target: (M, d, d), (M, C, K) -> (M, C, d, d)."""
    n_models, n_conditions, n_targets = targets.shape
    d = paths.shape[-1]
    cut = np.broadcast_to(paths[:, None], (n_models, n_conditions, d, d)).copy()
    models = np.arange(n_models)[:, None]
    conditions = np.arange(n_conditions)[None, :]
    for k in range(n_targets):
        t = targets[:, :, k]  # (M, C)
        into_t = cut[models, conditions, :, t]  # (M, C, d): paths i ~> t
        into_t[models, conditions, t] -= 1.0  # minus e_t: the trivial path t ~> t stays
        from_t = cut[models, conditions, t, :]  # (M, C, d): paths t ~> j
        cut -= into_t[..., :, None] * from_t[..., None, :]
    return cut


def _draw_noise(rng: np.random.Generator, shape: tuple[int, ...], beta_params: np.ndarray | None) -> np.ndarray:
    """Noise float32 `shape` = (M, ..., N, d): standard normal (its scale lives in the path
    matrices, which saves a pass over the samples), or Beta with parameters (2, M, d) per
    model and variable."""
    if beta_params is None:
        return rng.standard_normal(shape, dtype=np.float32)
    n_models, d = shape[0], shape[-1]
    middle = (1,) * (len(shape) - 2)
    a = beta_params[0].reshape((n_models, *middle, d))
    b = beta_params[1].reshape((n_models, *middle, d))
    return rng.beta(a, b, size=shape).astype(np.float32)


def _interventional_samples(
    rng: np.random.Generator,
    scaled_cut_paths: np.ndarray,
    noise_scale: float,
    targets: np.ndarray,
    nominal: np.ndarray,
    n_samples: int,
    jitter_var: float,
    beta_params: np.ndarray | None,
) -> np.ndarray:
    """One draw of every condition: float32 (M, C, N, d). `scaled_cut_paths` = noise_scale * A_t."""
    n_models, n_conditions, n_targets = targets.shape
    d = scaled_cut_paths.shape[-1]
    noise = _draw_noise(rng, (n_models, n_conditions, n_samples, d), beta_params)
    models = np.arange(n_models)[:, None, None]
    conditions = np.arange(n_conditions)[None, :, None]
    target_slots = noise.transpose(0, 1, 3, 2)  # view (M, C, d, N): [m, c, t] is target t's noise slot
    if beta_params is None:
        # Gaussian noise is drawn standard normal, and a target's own draw is otherwise unused:
        # it serves as the jitter (saves 1/d of the random numbers).
        jitter = target_slots[models, conditions, targets]  # (M, C, K, N)
    else:
        jitter = rng.standard_normal((n_models, n_conditions, n_targets, n_samples), dtype=np.float32)
    # The targets' noise slots carry the realised values, nominal + N(0, jitter_var) per sample,
    # divided by the scale the path matrices multiply back in.
    realised = (nominal[:, :, None, None] + np.float32(np.sqrt(jitter_var)) * jitter) / np.float32(noise_scale)
    target_slots[models, conditions, targets] = realised
    return np.matmul(noise, scaled_cut_paths)


def relative_values(rng: np.random.Generator, obs: np.ndarray, targets: np.ndarray, sd_range: list[float]) -> np.ndarray:
    """Each condition's value: its target's observational sample mean plus u sample stds, u ~ U(sd_range).

    obs (M, N, d), targets (M, C) -> float32 (M, C). The statistics are the ones a standardising
    model computes from the same observational sample, so u is the value it sees.
    """
    models = np.arange(obs.shape[0])[:, None]
    mean, std = obs.mean(1)[models, targets], obs.std(1)[models, targets]  # (M, C)
    u = rng.uniform(sd_range[0], sd_range[1], size=targets.shape)
    return (mean + u * std).astype(np.float32)


def draw_models(rng: np.random.Generator, n_models: int, d: int, cfg: LinearSCMConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """`n_models` random linear SCMs: graph uint8 (M, d, d), weights (M, d, d), Beta noise parameters (2, M, d)
    (None for Gaussian noise) and the scale the Gaussian noise is drawn at (1 for Beta)."""
    make_graph = {"er_acyclify": er_acyclify, "er_ordered": er_ordered}[cfg.graph]
    graph = make_graph(rng, n_models, d, cfg.edge_prob)  # (M, d, d)
    weights = draw_weights(rng, graph, cfg.weight_low, cfg.weight_high)  # (M, d, d)
    beta_params = None
    if cfg.noise == "beta":
        beta_params = rng.uniform(cfg.beta_param_low, cfg.beta_param_high, size=(2, n_models, d))
    return graph, weights, beta_params, cfg.noise_std if beta_params is None else 1.0


def simulate_linear(
    rng: np.random.Generator,
    n_models: int,
    d: int,
    n_samples: int,
    cfg: LinearSCMConfig,
    with_ref: bool = False,
) -> dict[str, np.ndarray]:
    """Simulate `n_models` random linear SCMs: a dict of numpy arrays in the batch contract
    (obs, int, [int_ref], targets, values, value_index, graph, weights, var_names).
    `cfg` is assumed valid (`activa_ray.data.simulate.check_data_config`)."""
    # Gaussian noise is drawn standard normal and scaled later: x = (s z) A = z (s A).
    graph, weights, beta_params, noise_scale = draw_models(rng, n_models, d, cfg)

    value_table = np.asarray(cfg.intervention_values, dtype=np.float32)
    n_values = 1 if cfg.value_sd_range else len(value_table)
    targets = intervention_targets(rng, n_models, d, n_values, cfg.targets_per_intervention)  # (M, C, K)
    n_conditions = targets.shape[1]
    value_index = np.broadcast_to(np.repeat(np.arange(n_values, dtype=np.int32), d), (n_models, n_conditions))

    paths = path_matrix(weights)  # (M, d, d)
    scaled_cut_paths = intervened_paths(paths, targets) * np.float32(noise_scale)  # (M, C, d, d)

    def draw_conditions() -> np.ndarray:  # (M, C, N, d), a fresh draw each call
        return _interventional_samples(
            rng, scaled_cut_paths, noise_scale, targets, nominal, n_samples, cfg.jitter_var, beta_params
        )

    obs_noise = _draw_noise(rng, (n_models, n_samples, d), beta_params)
    obs = np.matmul(obs_noise, paths * np.float32(noise_scale))  # (M, N, d)
    if cfg.value_sd_range:
        nominal = relative_values(rng, obs, targets[:, :, 0], cfg.value_sd_range)  # (M, C)
    else:
        nominal = value_table[value_index]  # (M, C)
    interventional = draw_conditions()  # (M, C, N, d)

    target_mask = np.zeros((n_models, n_conditions, d), dtype=np.uint8)
    np.put_along_axis(target_mask, targets, 1, axis=2)
    batch = {
        "obs": obs,
        "int": interventional,
        "targets": target_mask,
        "values": nominal.astype(np.float32),
        "value_index": value_index.copy(),
        "graph": graph,
        "weights": weights,
        "var_names": np.broadcast_to(np.array([f"V{j}" for j in range(d)]), (n_models, d)).copy(),
    }
    if with_ref:
        batch["int_ref"] = draw_conditions()
    return batch


def simulate_observational(
    rng: np.random.Generator, n_models: int, d: int, n_samples: int, cfg: LinearSCMConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Observational samples only, for learning structure: obs float32 (M, N, d) and graph uint8 (M, d, d)
    of `n_models` random linear SCMs drawn as `simulate_linear` draws them (no interventions simulated)."""
    graph, weights, beta_params, noise_scale = draw_models(rng, n_models, d, cfg)
    noise = _draw_noise(rng, (n_models, n_samples, d), beta_params)
    return np.matmul(noise, path_matrix(weights) * np.float32(noise_scale)), graph
