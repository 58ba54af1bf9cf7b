"""How much of the score is the sampler, and how much is knowing which variables move?

    python results/universal_longer/sampling.py SHARDS_DIR MODEL [--models 100]

For the first test models of SHARDS_DIR (one prior sample per query, as the evaluation's S = 1), MMD /
WSD / ERG on all variables, on the target's descendants and on the rest (the other coordinates zeroed
in both sample sets, as the evaluation's roles) for:
- fresh: the prediction sampled with fresh noise (`GaussianMixture.sample`, what the evaluation does);
- transported: the observational rows pushed through the Gaussian optimal-transport map from their own
  mean and covariance to the prediction's, x' = μ' + A (x − m), A = S^-1/2 (S^1/2 Σ' S^1/2)^1/2 S^-1/2:
  the same law up to its first two moments, with the rows' own shape and less sampling noise;
- the conditional baseline, fresh (`baselines.conditional_mvn`, as evaluated) and transported;
- hybrid at a fraction f: the variables whose predicted mean moves more than f times the target's move
  (both in observational SDs) take the baseline's conditional mean and covariance block, the rest keep the prediction (transported):
  ACTIVA says which variables move, the regression says by how much.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from activa_ray.data.format import read_shard, shard_paths
from activa_ray.eval.baselines import conditional_gaussian, conditional_mvn, observational_moments, realised_values
from activa_ray.eval.metrics import mean_scores
from activa_ray.eval.pairs import descendant_masks, flatten_pairs
from activa_ray.predict import load

JITTER_VAR = 0.1  # the simulator's spread of the realised value around the query's


def symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """(..., d, d) symmetric positive semi-definite -> its symmetric square root."""
    eigenvalues, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def transported(obs: np.ndarray, mean: np.ndarray, cov: np.ndarray, targets: np.ndarray, values: np.ndarray, n: int,
                rng) -> np.ndarray:
    """n observational rows per pair pushed through the Gaussian OT map to N(mean, cov) -> (P, n, d)."""
    obs_mean, obs_cov = observational_moments(obs)
    free = ~targets
    cov = cov * free[:, :, None] * free[:, None, :]  # the targets are set below, not transported
    root = symmetric_sqrt(obs_cov)
    inverse_root = np.linalg.inv(root)
    transport = inverse_root @ symmetric_sqrt(root @ cov @ root) @ inverse_root  # (P, d, d)
    pairs, size = obs.shape[:2]
    rows = np.argsort(rng.random((pairs, size)), axis=1)[:, :n] if n <= size else rng.integers(size, size=(pairs, n))
    chosen = np.take_along_axis(obs, rows[:, :, None], axis=1)  # (P, n, d)
    moved = mean[:, None] + (chosen - obs_mean[:, None]) @ np.swapaxes(transport, -1, -2)
    return np.where(targets[:, None], realised_values(values, n, rng, False, JITTER_VAR)[:, :, None], moved)


def scores(samples: np.ndarray, truth: torch.Tensor, roles: dict[str, np.ndarray]) -> str:
    x = torch.tensor(samples, dtype=torch.float64)
    parts = []
    for role, mask in roles.items():
        keep = mask.any(1)
        zeroed = torch.tensor(mask[keep, None, :].astype(np.float64))
        found = mean_scores(x[keep] * zeroed, truth[keep] * zeroed)
        parts.append(f"{role} {found['mmd']:.3f} / {found['wsd']:.3f} / {found['erg']:.3f}")
    return "   ".join(parts)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("model")
    parser.add_argument("--models", type=int, default=100)
    args = parser.parse_args()
    pairs = flatten_pairs(read_shard(shard_paths(args.shards, "test")[0]), args.models)
    obs, values = pairs["obs"].astype(np.float64), pairs["values"].astype(np.float64)
    targets = pairs["targets"].astype(bool)
    n = pairs["int"].shape[1]
    truth = torch.tensor(pairs["int"], dtype=torch.float64)
    descendants, others = descendant_masks(pairs["graph"], pairs["targets"])
    roles = {"all": np.ones_like(targets), "descendants": descendants, "others": others}

    model = load(args.model).model
    generator = torch.Generator().manual_seed(0)
    mixture = model.predict(torch.tensor(obs).float(), torch.tensor(targets).float(),
                            torch.zeros(len(obs), dtype=torch.long), prior_samples=1,
                            generator=generator, values=torch.tensor(values).float())
    tril = mixture.scale_tril[:, 0].double().numpy()
    predicted = mixture.means[:, 0].double().numpy(), tril @ np.swapaxes(tril, -1, -2)  # one component at S = 1
    law = conditional_gaussian(obs, targets, values)
    conditional = law.mean, law.cov

    rng = np.random.default_rng(0)
    print(f"{args.shards}, first {args.models} models ({len(obs)} pairs), MMD / WSD / ERG, S = 1")
    print(f"{'ACTIVA fresh':28s}", scores(mixture.sample(n, generator=generator).double().numpy(), truth, roles))
    print(f"{'ACTIVA transported':28s}", scores(transported(obs, *predicted, targets, values, n, rng), truth, roles))
    print(f"{'baseline fresh':28s}", scores(conditional_mvn(obs, targets, values, n, rng).samples, truth, roles))
    print(f"{'baseline transported':28s}", scores(transported(obs, *conditional, targets, values, n, rng), truth, roles))
    obs_mean, obs_std = obs.mean(1), obs.std(1)
    target_move = (np.abs(values[:, None] - obs_mean) / obs_std)[targets]  # (P,)
    for fraction in (0.05, 0.1, 0.2, 0.4):
        moves = np.abs(predicted[0] - obs_mean) / obs_std > fraction * target_move[:, None]  # (P, d)
        mean = np.where(moves, conditional[0], predicted[0])
        cov = np.where(moves[:, :, None] & moves[:, None, :], conditional[1], predicted[1])
        print(f"{f'hybrid > {fraction}, transported':28s}",
              scores(transported(obs, mean, cov, targets, values, n, rng), truth, roles))


if __name__ == "__main__":
    main()
