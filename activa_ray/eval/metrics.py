"""Distances between two sets of joint d-dimensional samples, batched over P pairs.

Every function takes `x` (P, n, d) and `y` (P, m, d) torch tensors (CPU or GPU) and returns
one value per pair (P,). The definitions (those of the paper's evaluation, made exact):

- `mmd`: sqrt(max(MMD_b^2, 0)), biased V-statistic, RBF kernel exp(-|a-b|^2 / 2 s^2) with the
  bandwidth s = median Euclidean distance between distinct pooled samples.
- `wasserstein`: exact 1-Wasserstein with Euclidean cost. Equal sizes: an optimal assignment
  (scipy's `linear_sum_assignment`, per pair). Unequal sizes: the transport LP, solved exactly
  by scipy's HiGHS.
- `energy`: E|X-Y| - 1/2 E|X-X'| - 1/2 E|Y-Y'| (V-statistics), half of `dcor.energy_distance`.
- `energy_permutation_test`: p = (1 + #{permuted energy >= observed}) / (1 + permutations).

A pair holding any non-finite value (a baseline that failed on that dataset) gets NaN in
every metric instead of poisoning its neighbours.

The energy statistic is a quadratic form in the pooled distance matrix D (L = n + m):
with w = [1/n]*n + [-1/m]*m, energy = -1/2 w^T D w. A permutation only permutes w, so all
permutations of all pairs are one batched matrix product against D.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

METRIC_NAMES = ("mmd", "wsd", "erg", "perm_p")

# Pairs per chunk: bounds memory at about chunk * L^2 * (permutations + few) floats.
DEFAULT_CHUNK = 512


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"metrics take torch tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"metrics expect x (P, n, d) and y (P, m, d), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y hold different numbers of pairs: {x.shape[0]} vs {y.shape[0]}")
    if x.shape[2] != y.shape[2]:
        raise ValueError(f"x and y have different dimension d: {x.shape[2]} vs {y.shape[2]}")
    if x.shape[1] < 1 or y.shape[1] < 1:
        raise ValueError(f"each set needs at least one sample, got n={x.shape[1]}, m={y.shape[1]}")
    if x.device != y.device:
        raise ValueError(f"x and y are on different devices: {x.device} vs {y.device}")


def _finite_pairs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (finite (P,) bool, x, y) with non-finite pairs zeroed so they compute harmlessly."""
    finite = torch.isfinite(x).flatten(1).all(1) & torch.isfinite(y).flatten(1).all(1)  # (P,)
    if bool(finite.all()):
        return finite, x, y
    keep = finite[:, None, None]
    return finite, torch.where(keep, x, 0.0), torch.where(keep, y, 0.0)


def _pooled_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between all pooled samples, (P, L, L) with L = n + m."""
    pooled = torch.cat([x, y], dim=1)  # (P, L, d)
    # The matmul shortcut loses the exact zeros of identical points; the direct form keeps them.
    return torch.cdist(pooled, pooled, compute_mode="donot_use_mm_for_euclid_dist")


def _median_distinct(dist: torch.Tensor) -> torch.Tensor:
    """Median (numpy convention: mean of the two middle values) over i < j entries, (P,)."""
    length = dist.shape[-1]
    rows, cols = torch.triu_indices(length, length, offset=1, device=dist.device)
    upper = dist[:, rows, cols]  # (P, L(L-1)/2)
    count = upper.shape[1]
    low = torch.kthvalue(upper, (count + 1) // 2, dim=1).values
    if count % 2:
        return low
    high = torch.kthvalue(upper, count // 2 + 1, dim=1).values
    return 0.5 * (low + high)


def _mmd_from_distances(dist: torch.Tensor, n: int) -> torch.Tensor:
    bandwidth = _median_distinct(dist)  # (P,)
    # All pooled samples identical: any bandwidth gives MMD 0; avoid 0/0.
    bandwidth = torch.where(bandwidth > 0, bandwidth, torch.ones_like(bandwidth))
    kernel = torch.exp(-dist.square() / (2 * bandwidth.square())[:, None, None])  # (P, L, L)
    kxx = kernel[:, :n, :n].mean((1, 2))
    kyy = kernel[:, n:, n:].mean((1, 2))
    kxy = kernel[:, :n, n:].mean((1, 2))
    return (kxx + kyy - 2 * kxy).clamp_min(0).sqrt()


def _energy_weights(n: int, m: int, like: torch.Tensor) -> torch.Tensor:
    """w with energy = -1/2 w^T D w, (L,)."""
    return torch.cat([like.new_full((n,), 1.0 / n), like.new_full((m,), -1.0 / m)])


def _energy_from_distances(dist: torch.Tensor, n: int) -> torch.Tensor:
    xy = dist[:, :n, n:].mean((1, 2))
    xx = dist[:, :n, :n].mean((1, 2))
    yy = dist[:, n:, n:].mean((1, 2))
    return xy - 0.5 * xx - 0.5 * yy


def _permutation_p(dist: torch.Tensor, n: int, permutations: int, generator: torch.Generator | None) -> torch.Tensor:
    pairs, length, _ = dist.shape
    weights = _energy_weights(n, length - n, dist)  # (L,)
    observed = -0.5 * torch.einsum("l,plk,k->p", weights, dist, weights)  # (P,)
    # Independent permutations for every pair: argsort of uniform noise. (P, R, L)
    noise = torch.rand(pairs, permutations, length, generator=generator, device=dist.device, dtype=dist.dtype)
    if noise.device.type == "cpu":
        # numpy's vectorised sort is several times faster than torch's on short CPU rows.
        order = torch.from_numpy(np.argsort(noise.numpy(), axis=-1))
    else:
        order = noise.argsort(dim=-1)
    permuted = weights[order]  # (P, R, L)
    statistic = -0.5 * (torch.bmm(permuted, dist) * permuted).sum(-1)  # (P, R)
    # Float rounding must not split ties (identical samples: every statistic is 0 up to rounding).
    tolerance = 1e-5 * dist.mean((1, 2))[:, None]
    exceed = (statistic >= observed[:, None] - tolerance).sum(1)
    return (1.0 + exceed.to(dist.dtype)) / (1.0 + permutations)


def _chunks(pairs: int, chunk: int):
    for start in range(0, pairs, chunk):
        yield slice(start, min(start + chunk, pairs))


def _per_chunk(x: torch.Tensor, y: torch.Tensor, chunk: int, fn) -> torch.Tensor:
    _check_pair(x, y)
    finite, x, y = _finite_pairs(x, y)
    out = torch.cat([fn(_pooled_distances(x[s], y[s]), x.shape[1]) for s in _chunks(x.shape[0], chunk)]) if x.shape[0] else x.new_zeros(0)
    return torch.where(finite, out, torch.nan)


def mmd(x: torch.Tensor, y: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """sqrt(max(MMD_b^2, 0)) with an RBF kernel and the pooled median bandwidth, (P,)."""
    return _per_chunk(x, y, chunk, _mmd_from_distances)


def energy(x: torch.Tensor, y: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """E|X-Y| - 1/2 E|X-X'| - 1/2 E|Y-Y'| (V-statistics), (P,)."""
    return _per_chunk(x, y, chunk, _energy_from_distances)


def energy_permutation_test(
    x: torch.Tensor,
    y: torch.Tensor,
    permutations: int = 100,
    generator: torch.Generator | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """p-value of the energy statistic under random relabelling of the pooled samples, (P,)."""
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    return _per_chunk(x, y, chunk, lambda dist, n: _permutation_p(dist, n, permutations, generator))


def _transport_lp(cost: np.ndarray) -> float:
    """Exact optimal transport between uniform weights on the rows and columns of `cost` (n, m)."""
    n, m = cost.shape
    # Variables: the plan pi (n*m, row-major). Rows sum to 1/n, columns to 1/m.
    rows = np.kron(np.eye(n), np.ones((1, m)))
    cols = np.kron(np.ones((1, n)), np.eye(m))
    result = scipy.optimize.linprog(
        cost.ravel(),
        A_eq=np.vstack([rows, cols]),
        b_eq=np.concatenate([np.full(n, 1.0 / n), np.full(m, 1.0 / m)]),
        bounds=(0, None),
        method="highs",
    )
    if not result.success:
        raise RuntimeError(f"transport LP failed: {result.message}")
    return float(result.fun)


def _wasserstein_from_cost(cost: np.ndarray) -> np.ndarray:
    """cost (P, n, m) float64 -> exact W1 per pair (P,)."""
    pairs, n, m = cost.shape
    out = np.empty(pairs)
    for p in range(pairs):
        if n == m:
            rows, cols = scipy.optimize.linear_sum_assignment(cost[p])
            out[p] = cost[p, rows, cols].mean()
        else:
            out[p] = _transport_lp(cost[p])
    return out


def wasserstein(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact 1-Wasserstein distance with Euclidean ground cost, (P,)."""
    _check_pair(x, y)
    finite, x, y = _finite_pairs(x, y)
    cost = torch.cdist(x.double(), y.double(), compute_mode="donot_use_mm_for_euclid_dist")  # (P, n, m)
    values = torch.from_numpy(_wasserstein_from_cost(cost.cpu().numpy())).to(device=x.device, dtype=x.dtype)
    return torch.where(finite, values, torch.nan)


def mean_scores(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Mean MMD, WSD and ERG over the pairs (NaN pairs left out): {"mmd", "wsd", "erg"}."""
    return {name: float(torch.nanmean(fn(x, y))) for name, fn in (("mmd", mmd), ("wsd", wasserstein), ("erg", energy))}


def all_metrics(
    x: torch.Tensor,
    y: torch.Tensor,
    permutations: int = 100,
    generator: torch.Generator | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, torch.Tensor]:
    """Every metric for every pair, sharing one pooled distance matrix per chunk.

    Returns {"mmd", "wsd", "erg", "perm_p"}: each (P,) on x's device, NaN for pairs with
    non-finite samples.
    """
    _check_pair(x, y)
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    finite, x, y = _finite_pairs(x, y)
    n = x.shape[1]
    parts: dict[str, list[torch.Tensor]] = {"mmd": [], "erg": [], "perm_p": [], "wsd": []}
    for s in _chunks(x.shape[0], chunk):
        dist = _pooled_distances(x[s], y[s])  # (p, L, L)
        parts["mmd"].append(_mmd_from_distances(dist, n))
        parts["erg"].append(_energy_from_distances(dist, n))
        parts["perm_p"].append(_permutation_p(dist, n, permutations, generator))
        cross = dist[:, :n, n:].double().cpu().numpy()  # (p, n, m)
        parts["wsd"].append(torch.from_numpy(_wasserstein_from_cost(cross)).to(device=x.device, dtype=x.dtype))
    empty = x.new_zeros(0)
    return {
        name: torch.where(finite, torch.cat(parts[name]) if parts[name] else empty, torch.nan)
        for name in METRIC_NAMES
    }
