"""SERGIO steady-state single-cell expression with gene knockouts.

Written from the SERGIO paper (Dibaeinia & Sinha 2020), in pure
numpy with an explicit rng, batched over many datasets: all conditions of all datasets of a
chunk advance through the Euler–Maruyama steps together, one regulatory level at a time.

Two facts make the batch cheap. A regulator's half-response h_j is the mean of its own sampled
cells, so once its trajectory is done its Hill curve over time is fixed, the same for every
child; a child's production rate P_i(s) = Σ_j k_ij H_j(s) (+ repressor offsets) is then known
for all steps before the child is simulated, one sparse product per level. And the "dpd" noise
√P ξ₁ + √(λx) ξ₂ of two independent normals has the law of √(P + λx) ξ: one normal per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from activa_ray.data.config import SergioConfig
from activa_ray.data.grn import load_network, sample_subgraph
from activa_ray.ranges import ConfigError, low_high_problems, range_problems

STEPS_PER_CELL = 15  # steps per gene: 15 · n_cells + 10 · level
STEPS_PER_LEVEL = 10
# States (datasets × conditions × genes × steps) simulated at once; bounds memory to ~0.2 GB.
CHUNK_STATES = 1 << 22

# Technical-noise presets of single-cell platforms (SERGIO paper supplement; networks/README.md).
# Tuples hold one column per variant; one variant is drawn per dataset.
PLATFORMS: dict[str, dict[str, float | tuple[float, ...]]] = {
    "10x": {
        "outlier_prob": 0.01,
        "outlier_mean": (3.0, 3.0, 5.0),
        "outlier_scale": 1.0,
        "lib_size_mean": (6.0, 6.0, 4.5),
        "lib_size_scale": (0.3, 0.4, 0.7),
        "dropout_shape": 8.0,
        "dropout_percentile": (74.0, 82.0, 45.0),
    },
}


@dataclass
class GRNParams:
    """Kinetic parameters of B datasets of d genes (graph[b, i, j] = 1 for regulator i -> target j)."""

    graph: np.ndarray  # (B, d, d) uint8
    interaction: np.ndarray  # (B, d, d) float64: signed k_ij of edge i -> j, 0 without an edge
    basal: np.ndarray  # (B, d) float64: production of master regulators, 0 for the others
    hill: np.ndarray  # (B,) float64: Hill coefficient n
    decay: np.ndarray  # (B,) float64: λ
    noise_scale: np.ndarray  # (B,) float64: q

    def __len__(self) -> int:
        return len(self.graph)

    def select(self, index: slice | np.ndarray) -> GRNParams:
        return GRNParams(
            self.graph[index], self.interaction[index], self.basal[index],
            self.hill[index], self.decay[index], self.noise_scale[index],
        )


def check_config(cfg: SergioConfig, d: int) -> None:
    """Raise one ConfigError (a ValueError) line naming every field that cannot simulate d-gene datasets."""
    problems = range_problems(cfg, "data.sergio") + low_high_problems(cfg, "data.sergio", ("interaction", "basal"))
    if not cfg.networks:
        problems.append("data.sergio.networks=[]: must list at least one of ['ecoli', 'yeast']")
    for name in cfg.networks:
        network = load_network(name)  # raises for an unknown name, naming data.sergio.networks
        if not 1 <= d <= network.largest_component:
            problems.append(
                f"data.d={d}: must be in [1, {network.largest_component}] for the {name} network "
                "(data.sergio.networks; its largest connected component)"
            )
    for field in ("hill", "decay", "noise_scale"):
        values = getattr(cfg, field)
        if not values or min(values) <= 0:
            problems.append(f"data.sergio.{field}={values}: must be a non-empty list of positive numbers")
    if cfg.platform not in PLATFORMS:
        problems.append(f"data.sergio.platform={cfg.platform!r}: must be one of {sorted(PLATFORMS)}")
    if problems:
        raise ConfigError("; ".join(problems))


def sample_params(rng: np.random.Generator, graphs: np.ndarray, cfg: SergioConfig) -> GRNParams:
    """Draw the kinetic parameters of every dataset from the ranges of `cfg`. graphs: (B, d, d)."""
    n_models, d, _ = graphs.shape
    edges = graphs.astype(bool)
    strength = rng.uniform(cfg.interaction_low, cfg.interaction_high, size=(n_models, d, d))
    activator_prob = rng.beta(cfg.sign_beta, cfg.sign_beta, size=(n_models, d, 1))  # one per regulator
    sign = np.where(rng.random((n_models, d, d)) < activator_prob, 1.0, -1.0)
    master = ~edges.any(axis=1)  # (B, d): genes without regulators
    basal = rng.uniform(cfg.basal_low, cfg.basal_high, size=(n_models, d)) * master
    return GRNParams(
        graph=graphs.astype(np.uint8),
        interaction=np.where(edges, strength * sign, 0.0),
        basal=basal,
        hill=rng.choice(np.asarray(cfg.hill, dtype=np.float64), size=n_models),
        decay=rng.choice(np.asarray(cfg.decay, dtype=np.float64), size=n_models),
        noise_scale=rng.choice(np.asarray(cfg.noise_scale, dtype=np.float64), size=n_models),
    )


def gene_levels(graph: np.ndarray) -> np.ndarray:
    """Length of each gene's longest path to a sink (sinks: 0). graph: (B, d, d) DAGs -> (B, d)."""
    d = graph.shape[-1]
    edges = graph.astype(bool)
    level = np.zeros(graph.shape[:-1], dtype=np.int64)
    for _ in range(d):  # a DAG's longest path has < d edges
        level = np.where(edges, level[:, None, :] + 1, 0).max(axis=2)
    return level


def simulate_expression(
    rng: np.random.Generator, params: GRNParams, knockouts: np.ndarray, n_cells: int, dt: float = 0.01
) -> np.ndarray:
    """Clean expression of every dataset under every condition.

    knockouts: (C, d) bool, knockouts[c, i] knocks gene i out in condition c (P_i = 0, x0 = 0).
    Returns (B, C, n_cells, d) float64. Every condition is an independent simulation; within
    one, all genes share the cells' time indices.
    """
    n_models, d = params.basal.shape
    n_conditions = len(knockouts)
    window = STEPS_PER_CELL * n_cells
    level = gene_levels(params.graph)  # (B, d)
    top_level = int(level.max())
    has_children = params.graph.astype(bool).any(axis=2)  # (B, d)
    # One set of cell time indices per condition, within the last `window` states of each gene.
    offsets = rng.integers(0, window, size=(n_models, n_conditions, n_cells))
    expression = np.zeros((n_models, n_conditions, n_cells, d))

    # Rows of the (B·C·d)-row tables below: gene i of dataset b under condition c.
    def row(b: np.ndarray, c: np.ndarray, i: np.ndarray) -> np.ndarray:
        return (b * n_conditions + c) * d + i

    # Hill curve H_j(s) of every finished regulator under every condition, for its children;
    # children sit at least one level lower and read only their first window + 10·(level) steps.
    hill_curve = np.zeros((n_models * n_conditions * d, window + STEPS_PER_LEVEL * max(top_level - 1, 0)))
    # H_j at its own mean h_j: 1/2, or 0 for a regulator that is all zeros (no 0/0): for x0.
    hill_at_mean = np.zeros(n_models * n_conditions * d)
    repressor_offset = np.where(params.interaction < 0, -params.interaction, 0.0).sum(axis=1)  # (B, d)
    edge_b, edge_reg, edge_tgt = np.nonzero(params.graph)
    edge_weight = params.interaction[edge_b, edge_reg, edge_tgt]  # activators +|k|, repressors −|k|
    conditions = np.arange(n_conditions)

    for current in range(top_level, -1, -1):
        gene_b, gene_i = np.nonzero(level == current)  # genes at this level, (n_g,)
        n_steps = window + STEPS_PER_LEVEL * current
        # Active simulations, gene-major: (n_g, C) flattened to n_act.
        act_b = np.repeat(gene_b, n_conditions)
        act_i = np.repeat(gene_i, n_conditions)
        act_c = np.tile(conditions, len(gene_b))
        n_act = len(act_b)
        knocked = knockouts[act_c, act_i]  # (n_act,)

        # P_i(s) = repressor offset + basal + Σ_j k_ij H_j(s): one sparse product for the level.
        position = np.full((n_models, d), -1)
        position[gene_b, gene_i] = np.arange(len(gene_b))
        into_level = position[edge_b, edge_tgt] >= 0
        eb, ej, ei, ew = (a[into_level] for a in (edge_b, edge_reg, edge_tgt, edge_weight))
        rows = (position[eb, ei][:, None] * n_conditions + conditions).ravel()  # (n_e · C,)
        cols = row(eb[:, None], conditions, ej[:, None]).ravel()
        parents, cols = np.unique(cols, return_inverse=True)
        weights = sp.csr_matrix(
            (np.repeat(ew, n_conditions), (rows, cols.ravel())), shape=(n_act, len(parents))
        )
        constant = repressor_offset[act_b, act_i] + params.basal[act_b, act_i]  # (n_act,)
        if len(parents):
            production = np.ascontiguousarray((weights @ hill_curve[parents, :n_steps]).T) + constant
        else:  # the top level holds master regulators only
            production = np.tile(constant, (n_steps, 1))  # (T, n_act)
        production[:, knocked] = 0.0
        np.maximum(production, 0.0, out=production)  # rounding: Σ over repressors can dip below 0
        decay = params.decay[act_b]
        start = (constant + weights @ hill_at_mean[parents]) / decay  # steady state at the parents' means
        start[knocked] = 0.0

        trajectory = euler_maruyama(rng, start, production, decay, params.noise_scale[act_b], dt)

        # Cells: the condition's shared time indices within this gene's last `window` states.
        cell_steps = STEPS_PER_LEVEL * current + offsets[act_b, act_c]  # (n_act, N)
        cells = trajectory[cell_steps, np.arange(n_act)[:, None]]  # (n_act, N)
        expression[act_b, act_c, :, act_i] = cells
        half_response = cells.mean(axis=1)  # (n_act,)

        regulator = has_children[act_b, act_i]
        if current == 0 or not regulator.any():
            continue
        reg_rows = row(act_b[regulator], act_c[regulator], act_i[regulator])
        read = n_steps - STEPS_PER_LEVEL  # the steps its children (one level down or more) read
        hill_curve[reg_rows, :read] = hill_response(trajectory[:read, regulator], half_response[regulator],
                                                    params.hill[act_b[regulator]]).T
        hill_at_mean[reg_rows] = np.where(half_response[regulator] > 0, 0.5, 0.0)
    return expression


def euler_maruyama(rng: np.random.Generator, start: np.ndarray, production: np.ndarray, decay: np.ndarray,
                   noise_scale: np.ndarray, dt: float) -> np.ndarray:
    """(T, n) trajectories of n simulations at once from `start` (n,), production rates (T, n), λ and q (n,).

    x <- max(0, (1 − dt λ) x + dt P + √dt q √(λx + P) ξ): the dpd noise in one normal.
    """
    n_steps, n_act = production.shape
    noise = rng.standard_normal((n_steps - 1, n_act))
    noise *= np.sqrt(dt) * noise_scale
    drift_in = dt * production
    keep = 1.0 - dt * decay
    trajectory = np.empty((n_steps, n_act))
    trajectory[0] = start
    spread = np.empty(n_act)
    for step in range(n_steps - 1):
        x, x_next = trajectory[step], trajectory[step + 1]
        np.multiply(decay, x, out=spread)
        spread += production[step]
        np.sqrt(spread, out=spread)
        spread *= noise[step]
        np.multiply(keep, x, out=x_next)
        x_next += drift_in[step]
        x_next += spread
        np.maximum(x_next, 0.0, out=x_next)
    return trajectory


def hill_response(x: np.ndarray, half_response: np.ndarray, power: np.ndarray) -> np.ndarray:
    """H(x) = x^n / (x^n + h^n) of regulators' trajectories x (T, n_reg); 0 where x = h = 0 (no 0/0)."""
    x_n = x**power
    total = x_n + half_response**power
    return np.divide(x_n, total, out=np.zeros_like(x_n), where=total > 0)


def add_technical_noise(
    rng: np.random.Generator, expression: np.ndarray, variant: np.ndarray, platform: str = "10x"
) -> np.ndarray:
    """Outliers, library size, dropout and Poisson counts, each per condition, in that order.

    expression: (B, C, N, d) clean; variant: (B,) which column of the platform preset each
    dataset uses. Genes that are 0 throughout (knockouts) stay exactly 0. Returns float64 counts.
    """
    preset = PLATFORMS[platform]
    n_models, n_conditions, n_cells, d = expression.shape

    def pick(key: str) -> np.ndarray:  # the dataset's column of a preset value, (B, 1, 1, 1)
        return np.asarray(preset[key])[variant][:, None, None, None]

    # 1. outlier genes, per condition: the whole gene scaled by a log-normal factor
    outlier = rng.random((n_models, n_conditions, 1, d)) < preset["outlier_prob"]
    factor = rng.lognormal(pick("outlier_mean"), preset["outlier_scale"], size=(n_models, n_conditions, 1, d))
    counts = expression * np.where(outlier, factor, 1.0)
    # 2. library size: every cell rescaled to a log-normal total
    library = rng.lognormal(
        pick("lib_size_mean"), pick("lib_size_scale"), size=(n_models, n_conditions, n_cells, 1)
    )
    total = counts.sum(axis=-1, keepdims=True)
    counts = np.divide(counts * library, total, out=np.zeros_like(counts), where=total > 0)
    # 3. dropout: keep with probability sigmoid(shape · (log1p x − the condition's q-th percentile))
    logged = np.log1p(counts)
    percentiles = np.asarray(preset["dropout_percentile"])
    levels = np.percentile(logged.reshape(n_models, n_conditions, -1), percentiles, axis=-1)  # (3, B, C)
    threshold = levels[variant, np.arange(n_models)][:, :, None, None]  # (B, C, 1, 1)
    keep_prob = 1.0 / (1.0 + np.exp(-preset["dropout_shape"] * (logged - threshold)))
    counts = np.where(rng.random(counts.shape) < keep_prob, counts, 0.0)
    # 4. sequencing counts
    return rng.poisson(counts).astype(np.float64)


def _simulate_in_chunks(
    rng: np.random.Generator, params: GRNParams, knockouts: np.ndarray, n_cells: int, cfg: SergioConfig,
    variant: np.ndarray,
) -> np.ndarray:
    """simulate_expression (+ technical noise) over chunks of datasets that fit CHUNK_STATES."""
    n_models, d = params.basal.shape
    states_per_model = len(knockouts) * d * (STEPS_PER_CELL * n_cells + STEPS_PER_LEVEL * (d - 1))
    chunk = max(1, CHUNK_STATES // states_per_model)
    parts = [np.zeros((0, len(knockouts), n_cells, d), dtype=np.float32)]
    for first in range(0, n_models, chunk):
        index = slice(first, first + chunk)
        part = simulate_expression(rng, params.select(index), knockouts, n_cells, cfg.dt)
        if cfg.technical_noise:
            part = add_technical_noise(rng, part, variant[index], cfg.platform)
        parts.append(part.astype(np.float32))
    return np.concatenate(parts)


def simulate_sergio(
    rng: np.random.Generator, n_models: int, d: int, n_samples: int, cfg: SergioConfig, with_ref: bool = False
) -> dict[str, np.ndarray]:
    """Simulate `n_models` SERGIO datasets: observational cells plus a knockout of every gene.

    Returns the batch dict: obs (M, N, d) float32, int (M, C=d, N, d) float32 (condition i knocks
    out gene i), with `with_ref` int_ref (M, C, N, d) (an independent second simulation of every
    knockout of the same GRN and parameters), targets uint8 (M, C, d), values float32 (M, C),
    value_index int32 (M, C), graph uint8 (M, d, d) (graph[m, i, j] = 1 for i -> j), var_names (M, d).
    """
    check_config(cfg, d)
    networks = [load_network(name) for name in cfg.networks]
    which = rng.integers(len(networks), size=n_models)
    graphs = np.zeros((n_models, d, d), dtype=np.uint8)
    names = []
    for m in range(n_models):
        graphs[m], gene_names = sample_subgraph(rng, networks[which[m]], d)
        names.append(gene_names)
    params = sample_params(rng, graphs, cfg)
    variant = rng.integers(len(PLATFORMS[cfg.platform]["outlier_mean"]), size=n_models)
    # Separate streams, so the observational and knockout data do not depend on `with_ref`.
    main_rng, ref_rng = rng.spawn(2)
    knockouts = np.eye(d, dtype=bool)  # (C, d)
    conditions = np.concatenate([np.zeros((1, d), dtype=bool), knockouts])  # observational first
    expression = _simulate_in_chunks(main_rng, params, conditions, n_samples, cfg, variant)
    batch = {
        "obs": expression[:, 0],
        "int": expression[:, 1:],
        "targets": np.broadcast_to(knockouts.astype(np.uint8), (n_models, d, d)).copy(),
        "values": np.zeros((n_models, d), dtype=np.float32),
        "value_index": np.zeros((n_models, d), dtype=np.int32),
        "graph": graphs,
        "var_names": np.array(names, dtype=str).reshape(n_models, d),
    }
    if with_ref:
        batch["int_ref"] = _simulate_in_chunks(ref_rng, params, knockouts, n_samples, cfg, variant)
    return batch
