"""Metrics: their floors, growth with a shift, symmetry, and agreement with POT, dcor and a
brute-force numpy MMD."""

from __future__ import annotations

import dcor
import numpy as np
import ot
import pytest
import torch

from activa_ray.eval.metrics import all_metrics, energy, energy_permutation_test, mmd, wasserstein


def _pairs(seed: int, pairs: int = 6, n: int = 25, m: int = 25, d: int = 3, shift: float = 0.7):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(pairs, n, d))
    y = rng.normal(size=(pairs, m, d)) * 1.3 + shift
    return x, y


def _numpy_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Straight from the definition: pooled median bandwidth over distinct pairs, V-statistic."""
    pooled = np.vstack([x, y])
    dist = np.sqrt(((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1))
    sigma = np.median(dist[np.triu_indices(len(pooled), k=1)])
    kernel = np.exp(-dist**2 / (2 * sigma**2))
    n = len(x)
    value = kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()
    return float(np.sqrt(max(value, 0.0)))


@pytest.mark.parametrize("n, m", [(25, 25), (20, 31)])
def test_metrics_agree_with_reference_libraries(n: int, m: int) -> None:
    x, y = _pairs(0, n=n, m=m)
    got = all_metrics(torch.from_numpy(x), torch.from_numpy(y), permutations=20, generator=torch.Generator().manual_seed(0))
    for p in range(len(x)):
        cost = ot.dist(x[p], y[p], metric="euclidean")
        assert got["wsd"][p].item() == pytest.approx(ot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), cost), rel=1e-9)
        assert got["erg"][p].item() == pytest.approx(0.5 * dcor.energy_distance(x[p], y[p]), rel=1e-9)
        assert got["mmd"][p].item() == pytest.approx(_numpy_mmd(x[p], y[p]), rel=1e-9)
    # The standalone functions are the same numbers.
    assert torch.allclose(mmd(torch.from_numpy(x), torch.from_numpy(y)), got["mmd"])
    assert torch.allclose(energy(torch.from_numpy(x), torch.from_numpy(y)), got["erg"])
    assert torch.allclose(wasserstein(torch.from_numpy(x), torch.from_numpy(y)), got["wsd"])


def test_float32_inputs_agree_with_reference() -> None:
    x, y = _pairs(1, d=8, n=30, m=30)
    got = all_metrics(torch.from_numpy(x).float(), torch.from_numpy(y).float(), permutations=10)
    for p in range(len(x)):
        assert got["erg"][p].item() == pytest.approx(0.5 * dcor.energy_distance(x[p], y[p]), rel=1e-4)
        assert got["mmd"][p].item() == pytest.approx(_numpy_mmd(x[p], y[p]), rel=1e-4)


def test_identical_samples_sit_at_the_floor() -> None:
    x, _ = _pairs(2)
    x = torch.from_numpy(x)
    got = all_metrics(x, x.clone(), permutations=50)
    for name in ("mmd", "wsd", "erg"):
        assert torch.all(got[name].abs() < 1e-7), name
    # Every permutation ties with the observed statistic.
    assert torch.all(got["perm_p"] == 1.0)


def test_metrics_grow_with_a_shifted_mean() -> None:
    x, base = _pairs(3, pairs=20, shift=0.0)
    x = torch.from_numpy(x)
    previous = None
    for shift in (0.0, 0.5, 1.5, 4.0):
        got = all_metrics(x, torch.from_numpy(base + shift), permutations=20)
        means = {name: got[name].mean().item() for name in ("mmd", "wsd", "erg")}
        if previous is not None:
            for name in means:
                assert means[name] > previous[name], (name, shift)
        previous = means


def test_metrics_are_symmetric() -> None:
    x, y = _pairs(4, n=25, m=18)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    assert torch.allclose(mmd(x, y), mmd(y, x))
    assert torch.allclose(energy(x, y), energy(y, x))
    assert torch.allclose(wasserstein(x, y), wasserstein(y, x))


def test_permutation_test_rejects_a_shift_and_is_uniform_under_the_null() -> None:
    rng = np.random.default_rng(5)
    generator = torch.Generator().manual_seed(0)
    shifted = energy_permutation_test(
        torch.from_numpy(rng.normal(size=(50, 30, 2))), torch.from_numpy(rng.normal(size=(50, 30, 2)) + 1.5),
        permutations=100, generator=generator,
    )
    assert shifted.max().item() <= 2 / 101
    null = energy_permutation_test(
        torch.from_numpy(rng.normal(size=(600, 20, 2))), torch.from_numpy(rng.normal(size=(600, 20, 2))),
        permutations=100, generator=generator,
    )
    assert null.min().item() >= 1 / 101 and null.max().item() <= 1.0
    assert 0.45 < null.mean().item() < 0.55
    assert 0.02 < (null < 0.05).double().mean().item() < 0.09
    assert 0.40 < (null < 0.5).double().mean().item() < 0.60


def test_permutation_test_is_reproducible_with_a_generator() -> None:
    x, y = _pairs(6, shift=0.3)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    first = energy_permutation_test(x, y, generator=torch.Generator().manual_seed(7))
    second = energy_permutation_test(x, y, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_chunking_does_not_change_results() -> None:
    x, y = _pairs(7, pairs=9)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    whole = all_metrics(x, y, permutations=30, generator=torch.Generator().manual_seed(1), chunk=100)
    chunked = all_metrics(x, y, permutations=30, generator=torch.Generator().manual_seed(1), chunk=4)
    for name in ("mmd", "wsd", "erg"):
        assert torch.allclose(whole[name], chunked[name])
    assert chunked["perm_p"].shape == (9,)


def test_a_non_finite_pair_is_nan_and_leaves_the_others_alone() -> None:
    x, y = _pairs(8)
    clean = all_metrics(torch.from_numpy(x), torch.from_numpy(y), permutations=10)
    y[2, 0, 0] = np.nan
    dirty = all_metrics(torch.from_numpy(x), torch.from_numpy(y), permutations=10)
    keep = [0, 1, 3, 4, 5]
    for name in ("mmd", "wsd", "erg", "perm_p"):
        assert torch.isnan(dirty[name][2])
    for name in ("mmd", "wsd", "erg"):
        assert torch.allclose(dirty[name][keep], clean[name][keep])


def test_bad_shapes_raise_clear_errors() -> None:
    x = torch.zeros(4, 10, 3)
    with pytest.raises(ValueError, match="different dimension d"):
        mmd(x, torch.zeros(4, 10, 2))
    with pytest.raises(ValueError, match="different numbers of pairs"):
        energy(x, torch.zeros(3, 10, 3))
    with pytest.raises(ValueError, match=r"\(P, n, d\)"):
        wasserstein(x[0], x[0])
    with pytest.raises(ValueError, match="at least one sample"):
        all_metrics(x, torch.zeros(4, 0, 3))
