"""Linear SCM simulator: the batch contract, intervention values, closed-form moments, Beta noise."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from activa_ray.data.config import DataConfig, LinearSCMConfig
from activa_ray.ranges import ConfigError
from activa_ray.data.graphs import is_acyclic
from activa_ray.data.scm import simulate_linear
from activa_ray.data.kinds import intervention_table
from activa_ray.data.simulate import check_data_config, shard_seed, simulate, split_sizes, stream_rng


def descendants(graph: np.ndarray) -> np.ndarray:
    """reach[i, j]: a directed path i ~> j of length >= 1 (independent of the simulator's algebra)."""
    d = len(graph)
    reach = graph.astype(bool)
    for _ in range(d):
        reach = reach | (reach.astype(int) @ graph.astype(int) > 0)
    return reach


def closed_form(weights: np.ndarray, target: int | None, value: float, noise_var: float, jitter_var: float):
    """Mean and covariance of x = e (I - W_t)^-1 under do(V_target = value + N(0, jitter_var))."""
    d = len(weights)
    w = weights.astype(np.float64).copy()
    noise_mean = np.zeros(d)
    noise_cov = np.full(d, noise_var)
    if target is not None:
        w[:, target] = 0.0
        noise_mean[target] = value
        noise_cov[target] = jitter_var
    paths = np.linalg.inv(np.eye(d) - w)
    return noise_mean @ paths, paths.T @ np.diag(noise_cov) @ paths


def test_batch_contract_shapes_and_dtypes():
    cfg = LinearSCMConfig(intervention_values=[5.0, -2.0])
    batch = simulate_linear(np.random.default_rng(0), 7, 4, 11, cfg, with_ref=True)
    m, c, n, d = 7, 8, 11, 4
    expected = {
        "obs": ((m, n, d), np.float32),
        "int": ((m, c, n, d), np.float32),
        "int_ref": ((m, c, n, d), np.float32),
        "targets": ((m, c, d), np.uint8),
        "values": ((m, c), np.float32),
        "value_index": ((m, c), np.int32),
        "graph": ((m, d, d), np.uint8),
        "weights": ((m, d, d), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert batch[key].shape == shape and batch[key].dtype == dtype, key
    assert batch["var_names"].shape == (m, d) and batch["var_names"][3].tolist() == ["V0", "V1", "V2", "V3"]
    # Condition c = value_index * d + target: every variable, for every value.
    assert (batch["targets"].sum(axis=2) == 1).all()
    assert np.array_equal(np.argmax(batch["targets"][0], axis=1), np.tile(np.arange(d), 2))
    assert np.array_equal(batch["value_index"][0], np.repeat([0, 1], d))
    assert np.array_equal(batch["values"][0], np.repeat(np.float32([5.0, -2.0]), d))
    # Weights live exactly on the edges, with |beta| in [0.5, 2].
    assert is_acyclic(batch["graph"]).all()
    on_edges = np.abs(batch["weights"][batch["graph"] == 1])
    assert ((on_edges >= 0.5) & (on_edges <= 2.0)).all()
    assert (batch["weights"][batch["graph"] == 0] == 0).all()
    assert np.isfinite(batch["int"]).all()


def test_the_intervened_variable_is_the_value_plus_jitter():
    cfg = LinearSCMConfig(intervention_values=[5.0, -3.0], jitter_var=0.1)
    batch = simulate_linear(np.random.default_rng(1), 1500, 3, 20, cfg)
    intervened = np.einsum("mcnd,mcd->mcn", batch["int"], batch["targets"].astype(np.float32))  # (M, C, N)
    for index, value in enumerate([5.0, -3.0]):
        samples = intervened[batch["value_index"] == index].ravel()
        standard_error = np.sqrt(0.1 / samples.size)
        assert abs(samples.mean() - value) < 5 * standard_error
        assert abs(samples.var() - 0.1) < 5 * 0.1 * np.sqrt(2 / samples.size)
        assert stats.kstest(samples - value, stats.norm(scale=np.sqrt(0.1)).cdf).pvalue > 1e-3


def test_gaussian_means_and_covariances_match_the_closed_form():
    d, n, noise_std, jitter = 4, 20_000, 0.5, 0.1
    cfg = LinearSCMConfig(edge_prob=0.5, noise_std=noise_std, jitter_var=jitter)
    batch = simulate_linear(np.random.default_rng(2), 12, d, n, cfg)
    assert batch["graph"].sum(axis=(1, 2)).max() >= 3  # some models have real structure
    for m in range(12):
        conditions = [(None, batch["obs"][m])] + [(t, batch["int"][m, t]) for t in range(d)]
        for target, samples in conditions:
            mean, cov = closed_form(batch["weights"][m], target, 5.0, noise_std**2, jitter)
            samples = samples.astype(np.float64)
            sd = np.sqrt(np.diag(cov))
            assert np.all(np.abs(samples.mean(axis=0) - mean) < 5 * sd / np.sqrt(n) + 1e-4), (m, target)
            # Var of a sample covariance entry: (S_ii S_jj + S_ij^2) / n for Gaussians.
            cov_se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / n)
            assert np.all(np.abs(np.cov(samples, rowvar=False) - cov) < 5 * cov_se + 1e-4), (m, target)


def test_non_descendants_keep_their_observational_law():
    d = 5
    cfg = LinearSCMConfig(edge_prob=0.4)
    batch = simulate_linear(np.random.default_rng(3), 40, d, 4000, cfg)
    checked_non_desc = checked_desc = 0
    for m in range(40):
        reach = descendants(batch["graph"][m])
        for t in range(d):
            for j in range(d):
                if j == t:
                    continue
                p = stats.ks_2samp(batch["obs"][m, :, j], batch["int"][m, t, :, j]).pvalue
                if not reach[t, j]:
                    assert p > 1e-5, (m, t, j)
                    checked_non_desc += 1
                elif batch["graph"][m, t, j] and reach[:, j].sum() == 1:
                    # j's only cause is t: do(t = 5) moves j by beta * (5 - E[V_t]) with |beta| >= 0.5.
                    assert p < 1e-10, (m, t, j)
                    checked_desc += 1
    assert checked_non_desc > 100 and checked_desc > 5


def test_beta_noise_moments():
    # Without edges each variable is its own noise term.
    fixed = LinearSCMConfig(edge_prob=0.0, noise="beta", beta_param_low=0.7, beta_param_high=0.7)
    batch = simulate_linear(np.random.default_rng(4), 20, 3, 2000, fixed)
    samples = batch["obs"].ravel()
    law = stats.beta(0.7, 0.7)
    assert samples.min() >= 0 and samples.max() <= 1
    assert abs(samples.mean() - law.mean()) < 5 * law.std() / np.sqrt(samples.size)
    assert abs(samples.var() - law.var()) < 0.003
    assert stats.kstest(samples, law.cdf).pvalue > 1e-3

    # alpha_j, beta_j ~ U(0.5, 2) per model and variable: method-of-moments estimates stay in
    # that range (up to sampling error) and differ across variables; interventions keep them.
    varying = LinearSCMConfig(edge_prob=0.0, noise="beta", beta_param_low=0.5, beta_param_high=2.0)
    batch = simulate_linear(np.random.default_rng(5), 30, 3, 20_000, varying)
    mean = batch["obs"].mean(axis=1)  # (M, d)
    var = batch["obs"].var(axis=1)
    total = mean * (1 - mean) / var - 1  # alpha + beta
    alpha, beta = mean * total, (1 - mean) * total
    assert (alpha > 0.4).all() and (alpha < 2.3).all() and (beta > 0.4).all() and (beta < 2.3).all()
    assert alpha.std() > 0.2
    # Variable 1 under do(V_0): same Beta law as observed.
    assert stats.ks_2samp(batch["obs"][0, :, 1], batch["int"][0, 0, :, 1]).pvalue > 1e-4


def test_multi_target_interventions():
    cfg = LinearSCMConfig(targets_per_intervention=2, intervention_values=[5.0, 1.0], edge_prob=0.5)
    batch = simulate_linear(np.random.default_rng(6), 200, 5, 50, cfg)
    assert batch["targets"].shape == (200, 10, 5)
    assert (batch["targets"].sum(axis=2) == 2).all()
    m, c, t = np.nonzero(batch["targets"])
    realised = batch["int"][m, c, :, t]  # (pairs, N)
    assert np.abs(realised.mean(axis=1) - batch["values"][m, c]).max() < 6 * np.sqrt(0.1 / 50)
    # A variable whose parents are all targets is a fixed function of them plus its own noise.
    weights = batch["weights"]
    for mi, ci in zip(*np.nonzero(batch["targets"].sum(axis=2) == 2)):
        targets = np.nonzero(batch["targets"][mi, ci])[0]
        for j in range(5):
            parents = np.nonzero(batch["graph"][mi, :, j])[0]
            if j in targets or len(parents) == 0 or not set(parents) <= set(targets):
                continue
            x = batch["int"][mi, ci]
            residual = x[:, j] - x[:, parents] @ weights[mi, parents, j]
            assert abs(residual.std() - 0.5) < 0.25
            return
    pytest.fail("no condition whose non-target variable has only target parents")


def test_reference_draws_are_independent_and_leave_the_rest_unchanged():
    cfg = LinearSCMConfig()
    plain = simulate_linear(np.random.default_rng(8), 50, 3, 30, cfg)
    with_ref = simulate_linear(np.random.default_rng(8), 50, 3, 30, cfg, with_ref=True)
    for key in plain:
        assert np.array_equal(plain[key], with_ref[key]), key
    assert not np.allclose(with_ref["int"], with_ref["int_ref"])
    intervened = np.einsum("mcnd,mcd->mcn", with_ref["int_ref"], with_ref["targets"].astype(np.float32))
    assert abs(intervened.mean() - 5.0) < 0.01


def test_simulate_dispatches_on_kind_and_checks_the_config():
    data = DataConfig(kind="linear-beta", d=3, n_samples=10, linear=LinearSCMConfig(edge_prob=0.0))
    batch = simulate(data, np.random.default_rng(0), 5)
    assert batch["obs"].min() >= 0  # Beta noise (no edges: V = eps), whatever data.linear.noise says
    data = dataclasses.replace(data, kind="linear-gauss")
    assert simulate(data, np.random.default_rng(0), 5)["obs"].min() < 0
    assert intervention_table(data) == [5.0]
    assert intervention_table(dataclasses.replace(data, kind="sergio")) == [0.0]
    bad = dataclasses.replace(data, linear=LinearSCMConfig(edge_prob=1.5, targets_per_intervention=4))
    with pytest.raises(ConfigError, match=r"data\.linear\.edge_prob.*data\.linear\.targets_per_intervention"):
        check_data_config(bad)


def test_split_sizes_of_the_presets():
    assert split_sizes(DataConfig(n_models=30_000, test_frac=0.1, val_frac=0.02)) == {
        "train": 26_460, "val": 540, "test": 3_000,
    }
    assert sum(split_sizes(DataConfig(n_models=10_001)).values()) == 10_001


def test_seed_streams_are_disjoint():
    data = DataConfig(seed=5)
    keys = [(split, i) for split in ("train", "val", "test") for i in range(20)]
    states = {key: tuple(shard_seed(data, *key).generate_state(4)) for key in keys}
    assert len(set(states.values())) == len(states)
    stream = {tuple(stream_rng(5, rank, step).integers(0, 2**63, 4)) for rank in range(4) for step in range(20)}
    shards = {tuple(np.random.default_rng(shard_seed(data, *key)).integers(0, 2**63, 4)) for key in keys}
    assert len(stream) == 80 and not stream & shards
