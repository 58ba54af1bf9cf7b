"""Baselines: conditioning is exact at a source and wrong at a sink, the oracle sits near the
noise floor, GES's class of a bivariate model is a two-DAG mixture, shapes and target values
hold, and failures are counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activa_ray.config import DataConfig
from activa_ray.data.simulate import simulate
from activa_ray.eval import baselines
from activa_ray.eval.baselines import BASELINES, conditional_gaussian, conditional_mvn, ges_mec, oracle_graph
from activa_ray.eval.metrics import mmd


def _chain(rng: np.random.Generator, size: int) -> np.ndarray:
    """Linear Gaussian chain V0 -> V1 -> V2, (size, 3)."""
    v0 = rng.normal(0, 1.0, size)
    v1 = 1.5 * v0 + rng.normal(0, 0.5, size)
    v2 = -1.0 * v1 + rng.normal(0, 0.5, size)
    return np.stack([v0, v1, v2], axis=1)


def test_conditioning_is_exact_at_a_source_and_wrong_at_a_sink() -> None:
    rng = np.random.default_rng(0)
    obs = _chain(rng, 5000)[None]
    value = np.array([2.0])
    # do(V0 = 2): V1 = 3 + N(0, .25), V2 = -3 + N(0, .25 + .25)
    source = conditional_mvn(obs, np.array([[1, 0, 0]]), value, 5000, rng, point_mass=True).samples[0]
    assert source[:, 0] == pytest.approx(2.0)
    assert source[:, 1].mean() == pytest.approx(3.0, abs=0.05)
    assert source[:, 2].mean() == pytest.approx(-3.0, abs=0.05)
    assert np.cov(source[:, 1:].T) == pytest.approx(np.array([[0.25, -0.25], [-0.25, 0.5]]), abs=0.04)
    # do(V2 = 2) leaves V0, V1 at their observational means 0; conditioning drags them along.
    sink = conditional_mvn(obs, np.array([[0, 0, 1]]), value, 5000, rng, point_mass=True).samples[0]
    assert abs(sink[:, 1].mean()) > 1.0
    assert abs(sink[:, 0].mean()) > 0.5


def test_the_conditional_law_is_the_one_conditional_mvn_samples_from() -> None:
    rng = np.random.default_rng(2)
    obs = np.stack([_chain(rng, 5000), _chain(rng, 5000)[:, ::-1]])  # (2, 5000, 3): V0 a source, then a sink
    targets, values = np.array([[1, 0, 0], [1, 1, 0]]), np.array([2.0, -1.0])
    law = conditional_gaussian(obs, targets.astype(bool), values)
    # do(V0 = 2) on the chain: E = (2, 3, -3); conditioning two targets fixes both at -1.
    assert law.mean[0] == pytest.approx([2.0, 3.0, -3.0], abs=0.05)
    assert law.mean[1, :2] == pytest.approx([-1.0, -1.0])
    assert law.ok.all()
    samples = conditional_mvn(obs, targets, values, 20000, rng, point_mass=True).samples
    for pair in range(2):
        assert samples[pair].mean(0) == pytest.approx(law.mean[pair], abs=0.03)
        assert np.cov(samples[pair].T) == pytest.approx(law.cov[pair], abs=0.03)


def test_every_method_returns_the_right_shape_with_the_target_at_its_value() -> None:
    batch = simulate(DataConfig(d=3, n_samples=40), np.random.default_rng(1), 3)
    models, conditions, d = batch["targets"].shape
    obs = np.repeat(batch["obs"], conditions, axis=0)
    targets = batch["targets"].reshape(-1, d)
    values = batch["values"].reshape(-1)
    graph = np.repeat(batch["graph"], conditions, axis=0)
    mask = targets.astype(bool)
    for name, method in BASELINES.items():
        extra = {"graph": graph} if name == "oracle_graph" else {}
        exact = method(obs, targets, values, 25, np.random.default_rng(2), point_mass=True, **extra)
        assert exact.samples.shape == (models * conditions, 25, d), name
        assert exact.failures == 0, (name, exact.errors)
        assert np.all(exact.samples.transpose(0, 2, 1)[mask] == 5.0), name
        jittered = method(obs, targets, values, 400, np.random.default_rng(3), jitter_var=0.1, **extra)
        held = jittered.samples.transpose(0, 2, 1)[mask]  # (P, n): the targets' realised values
        assert held.mean() == pytest.approx(5.0, abs=0.03), name
        assert held.var() == pytest.approx(0.1, rel=0.1), name


def test_oracle_graph_sits_near_the_noise_floor_on_linear_gaussian_data() -> None:
    # 300 observational samples, evaluated on 30 interventional ones: with equal sizes the
    # least-squares error, extrapolated to the value 5 (about ten noise scales out of the
    # observed range), adds as much as the sampling noise itself.
    n_obs, n = 300, 30
    d = 3
    batch = simulate(DataConfig(d=d, n_samples=n_obs), np.random.default_rng(4), 60, with_ref=True)
    conditions = batch["targets"].shape[1]
    result = oracle_graph(
        np.repeat(batch["obs"], conditions, axis=0),
        batch["targets"].reshape(-1, d),
        batch["values"].reshape(-1),
        n,
        np.random.default_rng(5),
        graph=np.repeat(batch["graph"], conditions, axis=0),
    )
    truth = torch.from_numpy(batch["int"].reshape(-1, n_obs, d)[:, :n])
    floor = mmd(truth, torch.from_numpy(batch["int_ref"].reshape(-1, n_obs, d)[:, :n])).mean().item()
    oracle = mmd(truth, torch.from_numpy(result.samples)).mean().item()
    conditioning = mmd(
        truth,
        torch.from_numpy(
            conditional_mvn(np.repeat(batch["obs"], conditions, axis=0), batch["targets"].reshape(-1, d),
                            batch["values"].reshape(-1), n, np.random.default_rng(6)).samples
        ),
    ).mean().item()
    assert oracle < 1.5 * floor
    assert conditioning > 1.5 * floor


def test_ges_mec_on_a_bivariate_gaussian_edge_is_an_equal_two_dag_mixture() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 3000)
    y = 2.0 * x + rng.normal(0, 0.5, 3000)
    obs = np.stack([x, y], axis=1)[None]
    result = ges_mec(obs, np.array([[1, 0]]), np.array([5.0]), 1000, rng, point_mass=True)
    assert result.components.tolist() == [2]
    moved = result.samples[0, :, 1]
    # X -> Y: Y ~ 10 + N(0, .25); Y -> X: Y keeps its observational law N(0, 4.25).
    near_effect = np.abs(moved - 10.0) < 2.0
    assert near_effect.mean() == pytest.approx(0.5, abs=0.02)
    assert moved[~near_effect].mean() == pytest.approx(0.0, abs=0.3)


def test_a_singular_dataset_is_counted_not_a_crash() -> None:
    batch = simulate(DataConfig(d=3, n_samples=40), np.random.default_rng(9), 4)
    obs = batch["obs"].astype(np.float64)
    obs[1] = 2.0  # a constant dataset: no fit can use it
    targets = np.tile(np.array([[1, 0, 0]]), (4, 1))
    values = np.full(4, 5.0)
    for name, method in BASELINES.items():
        extra = {"graph": batch["graph"]} if name == "oracle_graph" else {}
        result = method(obs, targets, values, 20, np.random.default_rng(10), **extra)
        if name == "no_effect":  # needs no fit
            assert result.failures == 0
            continue
        assert result.failures == 1, name
        assert result.failed.tolist() == [False, True, False, False], name
        assert "variance" in result.errors[1]
        assert np.isnan(result.samples[1]).all()
        assert np.isfinite(result.samples[[0, 2, 3]]).all(), name


def test_all_datasets_degenerate_is_counted_not_a_crash() -> None:
    obs = np.full((2, 30, 3), 2.0)
    for name in ("lingam", "ges_mec"):
        result = BASELINES[name](obs, np.tile([[1, 0, 0]], (2, 1)), np.full(2, 5.0), 10, np.random.default_rng(0))
        assert result.failures == 2 and np.isnan(result.samples).all(), name
        assert all("variance" in message for message in result.errors.values()), name


def test_a_library_exception_is_counted_not_raised() -> None:
    # DirectLiNGAM's adaptive lasso refuses fewer samples than variables.
    obs = np.random.default_rng(11).normal(size=(2, 3, 4))
    result = baselines.lingam(obs, np.tile([[0, 1, 0, 0]], (2, 1)), np.full(2, 5.0), 10, np.random.default_rng(0))
    assert result.failures == 2
    assert all("ValueError" in message for message in result.errors.values())
    assert np.isnan(result.samples).all()


def test_bad_inputs_raise_clear_errors() -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(2, 10, 3))
    with pytest.raises(ValueError, match="targets must be"):
        conditional_mvn(obs, np.ones((2, 2)), np.zeros(2), 5, rng)
    with pytest.raises(ValueError, match="at least one intervened"):
        conditional_mvn(obs, np.zeros((2, 3)), np.zeros(2), 5, rng)
    with pytest.raises(ValueError, match="graph must be"):
        oracle_graph(obs, np.eye(3)[:2], np.zeros(2), 5, rng, graph=np.zeros((2, 2, 2)))


@pytest.mark.ray
def test_ray_tasks_give_the_same_answer_as_in_process(ray_cluster) -> None:
    batch = simulate(DataConfig(d=3, n_samples=40), np.random.default_rng(12), 4)
    args = (batch["obs"], np.tile([[1, 0, 0]], (4, 1)), np.full(4, 5.0), 20)
    local = ges_mec(*args, np.random.default_rng(13))
    remote = ges_mec(*args, np.random.default_rng(13), ray_tasks=2)
    assert np.array_equal(local.samples, remote.samples, equal_nan=True)
    assert local.components.tolist() == remote.components.tolist()
