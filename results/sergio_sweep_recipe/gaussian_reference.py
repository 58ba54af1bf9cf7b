"""What a single Gaussian can reach on SERGIO's test pairs (README, "SERGIO with the sweep's recipe").

    python results/sergio_sweep_recipe/gaussian_reference.py DATA_DIR [MODELS]

DATA_DIR: `./run generate --config configs/sergio.yaml --out DATA_DIR`; the first MODELS (300) test models.
For every (model, knockout) pair it scores, against the evaluation's interventional sample `int`:
  - the noise floor: `int_ref`, the simulator's second, independent sample of the same condition;
  - a Gaussian fitted to `int_ref` (the truth's mean and covariance, as well as 30 cells estimate them);
  - no effect: 30 observational cells; and a Gaussian fitted to the observational cells;
on all variables and on the target's non-descendants alone (where nothing should move).
"""

import sys

import numpy as np
import torch

from activa_ray.data.format import read_shard, shard_paths
from activa_ray.eval.baselines import no_effect
from activa_ray.eval.metrics import energy, mmd, wasserstein
from activa_ray.eval.pairs import descendant_masks, flatten_pairs


def gaussian_draws(samples: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(P, N, d) -> (P, n, d): n draws from each set's fitted Gaussian (sample mean and covariance)."""
    d = samples.shape[2]
    return np.stack([rng.multivariate_normal(s.mean(0), np.cov(s, rowvar=False) + 1e-9 * np.eye(d), size=n,
                                             method="eigh") for s in samples])


def main(root: str, models: int) -> None:
    pairs = flatten_pairs(read_shard(shard_paths(root, "test")[0]), models)
    rng = np.random.default_rng(0)
    truth, second, obs = pairs["int"], pairs["int_ref"], pairs["obs"]
    held = pairs["targets"].astype(bool)  # (P, d)
    count, n, _ = truth.shape
    subsample = no_effect(obs, pairs["targets"], pairs["values"], n, rng, point_mass=True).samples
    predictions = {"floor (int_ref)": second, "Gaussian fitted to int_ref": gaussian_draws(second, n, rng),
                   "no effect (obs)": subsample, "Gaussian fitted to obs": gaussian_draws(obs, n, rng)}
    _, non_descendants = descendant_masks(pairs["graph"], held)
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    for name, predicted in predictions.items():
        predicted = np.where(held[:, None, :], truth, predicted)  # the knocked-out gene is exactly 0 in all
        x, y = as_tensor(predicted), as_tensor(truth)
        apart = [wasserstein(x[p:p + 1][:, :, non_descendants[p]], y[p:p + 1][:, :, non_descendants[p]]).item()
                 for p in range(count) if non_descendants[p].any()]
        print(f"{name:27s} MMD {mmd(x, y).mean():.3f}  WSD {wasserstein(x, y).mean():.3f}  "
              f"ERG {energy(x, y).mean():.3f}  non-descendants' WSD {np.mean(apart):.3f}  ({count} pairs)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300)
