"""SERGIO with knockouts (activa_ray/data/sergio.py): dynamics, knockouts, parameter ranges, schema, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from activa_ray.config import ConfigError, load_config
from activa_ray.data.config import SergioConfig
from activa_ray.data.grn import NETWORK_DIR, NETWORK_FILES
from activa_ray.data.sergio import GRNParams, gene_levels, sample_params, simulate_expression, simulate_sergio

OOD = SergioConfig(
    interaction_low=3.0, interaction_high=7.0, sign_beta=0.5, basal_low=0.5, basal_high=2.0,
    hill=[1.5, 2.5], decay=[0.5, 1.5], noise_scale=[0.5, 1.5],
)


def replicated(graph: np.ndarray, interaction: np.ndarray, basal: np.ndarray, replicates: int,
               hill: float = 2.0, decay: float = 0.8, noise_scale: float = 1.0) -> GRNParams:
    """The same GRN and parameters as `replicates` datasets."""
    def tile(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a, (replicates, *a.shape)).copy()

    return GRNParams(
        tile(graph.astype(np.uint8)), tile(interaction.astype(float)), tile(basal.astype(float)),
        np.full(replicates, hill), np.full(replicates, decay), np.full(replicates, noise_scale),
    )


def test_batch_schema_and_edges_of_the_source_network():
    batch = simulate_sergio(np.random.default_rng(0), 12, 8, 30, SergioConfig(), with_ref=True)
    m, d, n = 12, 8, 30
    expected = {
        "obs": ((m, n, d), np.float32), "int": ((m, d, n, d), np.float32), "int_ref": ((m, d, n, d), np.float32),
        "targets": ((m, d, d), np.uint8), "values": ((m, d), np.float32), "value_index": ((m, d), np.int32),
        "graph": ((m, d, d), np.uint8),
    }
    for key, (shape, dtype) in expected.items():
        assert batch[key].shape == shape and batch[key].dtype == dtype, key
    assert batch["var_names"].shape == (m, d)
    assert np.array_equal(batch["targets"], np.broadcast_to(np.eye(d, dtype=np.uint8), (m, d, d)))
    assert not batch["values"].any() and not batch["value_index"].any()
    edges = set()
    for name in NETWORK_FILES:
        lines = (NETWORK_DIR / NETWORK_FILES[name]).read_text().splitlines()
        edges |= {tuple(line.split("\t")[:2]) for line in lines if line.strip()}
    for graph, names in zip(batch["graph"], batch["var_names"]):
        assert all((names[i], names[j]) in edges for i, j in zip(*np.nonzero(graph)))
    assert (batch["obs"] >= 0).all() and np.isfinite(batch["obs"]).all()


@pytest.mark.parametrize("technical_noise", [False, True])
def test_knocked_out_genes_are_exactly_zero(technical_noise):
    d = 8
    batch = simulate_sergio(
        np.random.default_rng(1), 30, d, 30, SergioConfig(technical_noise=technical_noise), with_ref=True
    )
    genes = np.arange(d)
    for key in ("int", "int_ref"):
        assert np.all(batch[key][:, genes, :, genes] == 0.0)
        others = batch[key].copy()
        others[:, genes, :, genes] = 1.0
        assert (others > 0).mean() > 0.3  # the other genes are expressed
    if technical_noise:
        assert np.array_equal(batch["int"], np.round(batch["int"]))  # Poisson counts


def test_master_regulator_matches_a_long_run_of_its_own_sde():
    """b/λ = 0.25 is small: the max(0, ·) clamp lifts the mean well above it."""
    basal, decay, noise_scale, dt = 0.2, 0.8, 1.0, 0.01
    replicates, d = 100, 2
    params = replicated(np.zeros((d, d)), np.zeros((d, d)), np.full(d, basal), replicates,
                        decay=decay, noise_scale=noise_scale)
    cells = simulate_expression(np.random.default_rng(2), params, np.zeros((1, d), dtype=bool), 300, dt)
    per_dataset = cells.mean(axis=2).ravel()  # independent simulations

    # The same SDE with its two noise terms, many chains, long after the start.
    rng = np.random.default_rng(3)
    chains, steps, burn_in = 400, 10_000, 1_000
    x = np.full(chains, basal / decay)
    total = np.zeros(chains)
    for step in range(steps):
        xi1, xi2 = rng.standard_normal((2, chains))
        x = np.maximum(0.0, x + dt * (basal - decay * x)
                       + np.sqrt(dt) * noise_scale * (np.sqrt(basal) * xi1 + np.sqrt(decay * x) * xi2))
        if step >= burn_in:
            total += x
    per_chain = total / (steps - burn_in)
    error = np.hypot(per_dataset.std() / np.sqrt(per_dataset.size), per_chain.std() / np.sqrt(chains))
    assert abs(per_dataset.mean() - per_chain.mean()) < 4 * error
    assert per_dataset.mean() > basal / decay + 0.15


def test_noise_free_limit_reaches_the_half_response_steady_state():
    """With q -> 0 a master sits at b/λ; a child's half-response is its regulator's mean, so H = 1/2
    and the child sits at Σ|k|/(2λ), activators and repressors alike. A silenced activator gives 0,
    a silenced repressor 1. Half-responses are re-estimated per condition, so a grandchild keeps
    |k|/(2λ) whatever the knockout upstream does to its regulator's level."""
    decay, k01, k02, k31, k14 = 0.8, 3.0, 2.0, 1.5, 4.0
    graph = np.zeros((5, 5))
    interaction = np.zeros((5, 5))
    # 0 -> 1, 0 -| 2, 3 -> 1, 1 -> 4
    for regulator, target, k in [(0, 1, k01), (0, 2, -k02), (3, 1, k31), (1, 4, k14)]:
        graph[regulator, target], interaction[regulator, target] = 1, k
    basal = np.array([0.6, 0, 0, 0.9, 0])
    params = replicated(graph, interaction, basal, 2, decay=decay, noise_scale=1e-9)
    conditions = np.zeros((3, 5), dtype=bool)
    conditions[1, 0] = True
    conditions[2, 3] = True
    cells = simulate_expression(np.random.default_rng(4), params, conditions, 20)  # (2, 3, 20, 5)
    expected = {
        0: [0.6 / decay, (k01 + k31) / (2 * decay), k02 / (2 * decay), 0.9 / decay, k14 / (2 * decay)],
        1: [0.0, k31 / (2 * decay), k02 / decay, 0.9 / decay, k14 / (2 * decay)],
        2: [0.6 / decay, k01 / (2 * decay), k02 / (2 * decay), 0.0, k14 / (2 * decay)],
    }
    for condition, levels in expected.items():
        np.testing.assert_allclose(cells[:, condition], np.broadcast_to(levels, (2, 20, 5)), atol=1e-6)
    assert np.all(cells[:, 1, :, 0] == 0.0) and np.all(cells[:, 2, :, 3] == 0.0)


def test_knockout_shifts_descendants_and_leaves_non_descendants_alone():
    """Half-responses follow each condition's means, so a child's mean barely moves while its
    regulator stays expressed; the shifts below come from regulators silenced outright."""
    # 0 -> 1 (activator), 1 -> 2 (activator), 3 -| 2 (repressor), 4 -> 5 (activator)
    d = 6
    graph = np.zeros((d, d))
    interaction = np.zeros((d, d))
    for regulator, target, k in [(0, 1, 3.0), (1, 2, 4.0), (3, 2, -2.0), (4, 5, 3.0)]:
        graph[regulator, target], interaction[regulator, target] = 1, k
    basal = np.array([0.8, 0, 0, 0.6, 0.7, 0])
    params = replicated(graph, interaction, basal, 300)
    conditions = np.zeros((3, d), dtype=bool)
    conditions[1, 1] = True  # knock out 1: descendants {2}
    conditions[2, 0] = True  # knock out 0: descendants {1, 2}
    cells = simulate_expression(np.random.default_rng(5), params, conditions, 30)  # (R, 3, N, d)
    means = cells.mean(axis=2)  # (R, 3, d): one independent value per replicate
    first_cell = cells[:, :, 0]
    for condition, knocked, descendants in [(1, 1, {2}), (2, 0, {1, 2})]:
        for gene in set(range(d)) - descendants - {knocked}:
            assert stats.ttest_ind(means[:, 0, gene], means[:, condition, gene]).pvalue > 1e-3, (condition, gene)
            assert stats.ks_2samp(first_cell[:, 0, gene], first_cell[:, condition, gene]).pvalue > 1e-3
        for gene in descendants:
            assert stats.ttest_ind(means[:, 0, gene], means[:, condition, gene]).pvalue < 1e-8, (condition, gene)
    assert np.all(cells[:, 2, :, 1] == 0.0)  # 1 lost its only (activating) input
    # 2 keeps only its repressor: production 2·(1 − H_3) instead of 4·H_1 + 2·(1 − H_3)
    assert means[:, 1, 2].mean() < 0.6 * means[:, 0, 2].mean()


def test_mean_expression_is_of_the_order_the_paper_reports():
    """Paper: 2.16 (test, 8 genes) and 3.71 (OOD, 11 genes); a 5,000-model run gave about 2.16 and 3.8."""
    in_distribution = simulate_sergio(np.random.default_rng(6), 150, 8, 30, SergioConfig())
    assert 1.7 < in_distribution["obs"].mean() < 2.7
    ood = simulate_sergio(np.random.default_rng(7), 100, 11, 30, OOD)
    assert 3.0 < ood["obs"].mean() < 4.7


@pytest.mark.parametrize("cfg", [SergioConfig(), OOD], ids=["in-distribution", "ood"])
def test_parameters_respect_the_ranges(cfg):
    rng = np.random.default_rng(8)
    graphs = np.triu(rng.random((400, 8, 8)) < 0.3, 1).astype(np.uint8)
    params = sample_params(rng, graphs, cfg)
    edges = graphs.astype(bool)
    strength = np.abs(params.interaction)
    assert np.all(strength[~edges] == 0)
    assert strength[edges].min() >= cfg.interaction_low and strength[edges].max() <= cfg.interaction_high
    master = ~edges.any(axis=1)
    assert np.all(params.basal[~master] == 0)
    assert params.basal[master].min() >= cfg.basal_low and params.basal[master].max() <= cfg.basal_high
    assert set(params.hill) == set(cfg.hill)
    assert set(params.decay) == set(cfg.decay) and set(params.noise_scale) == set(cfg.noise_scale)
    assert 0.3 < (params.interaction[edges] > 0).mean() < 0.7


def test_sign_probability_is_drawn_once_per_regulator():
    """Beta(a, a) with small a puts each regulator's P(activator) near 0 or 1: its targets share a sign."""
    rng = np.random.default_rng(9)
    graphs = np.zeros((500, 6, 6), dtype=np.uint8)
    graphs[:, 0, 1:] = 1
    uniform = sample_params(rng, graphs, SergioConfig(sign_beta=0.02)).interaction[:, 0, 1:]
    mixed = sample_params(rng, graphs, SergioConfig(sign_beta=1.0)).interaction[:, 0, 1:]

    def same_sign(k: np.ndarray) -> float:  # share of regulators whose 5 edges agree in sign
        return float(np.mean(np.all(k > 0, axis=1) | np.all(k < 0, axis=1)))

    assert same_sign(uniform) > 0.9 and same_sign(mixed) < 0.5


def test_levels_are_longest_paths_to_a_sink():
    graph = np.zeros((1, 5, 5), dtype=np.uint8)
    for regulator, target in [(0, 1), (1, 2), (0, 2), (3, 2)]:
        graph[0, regulator, target] = 1
    assert gene_levels(graph).tolist() == [[2, 1, 0, 1, 0]]


def test_deterministic_per_seed_and_independent_of_the_reference_draw():
    cfg = SergioConfig(technical_noise=True)
    first = simulate_sergio(np.random.default_rng(10), 6, 8, 20, cfg, with_ref=True)
    again = simulate_sergio(np.random.default_rng(10), 6, 8, 20, cfg, with_ref=True)
    for key in first:
        assert np.array_equal(first[key], again[key]), key
    without_ref = simulate_sergio(np.random.default_rng(10), 6, 8, 20, cfg)
    for key in without_ref:
        assert np.array_equal(first[key], without_ref[key]), key
    assert not np.array_equal(first["int"], first["int_ref"])
    other = simulate_sergio(np.random.default_rng(11), 6, 8, 20, cfg)
    assert not np.array_equal(first["obs"], other["obs"])


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match=r"data\.d.*ecoli"):
        simulate_sergio(np.random.default_rng(0), 2, 2000, 30, SergioConfig(networks=["ecoli"]))
    with pytest.raises(ConfigError, match=r"data\.sergio\.networks.*'human'"):
        simulate_sergio(np.random.default_rng(0), 2, 8, 30, SergioConfig(networks=["yeast", "human"]))
    with pytest.raises(ConfigError, match=r"data\.sergio\.hill"):
        simulate_sergio(np.random.default_rng(0), 2, 8, 30, SergioConfig(hill=[]))


@pytest.mark.parametrize(
    ("path", "d", "n_models"), [("configs/paper/sergio.yaml", 8, 15000), ("configs/paper/sergio_ood.yaml", 11, 1800)]
)
def test_presets_load(path, d, n_models):
    cfg = load_config(Path(__file__).resolve().parents[1] / path)
    assert cfg.data.kind == "sergio" and cfg.data.d == d and cfg.data.n_models == n_models
    assert cfg.data.n_samples == 30 and not cfg.data.sergio.technical_noise
    assert cfg.model.intervention_values == [0.0] and cfg.model.point_mass_interventions
    batch = simulate_sergio(np.random.default_rng(0), 2, d, 30, cfg.data.sergio)
    assert batch["int"].shape == (2, d, 30, d)
