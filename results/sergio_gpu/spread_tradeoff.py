"""Do SERGIO's three metrics agree on how wide a prediction should be? (README, "SERGIO.")

    python results/sergio_gpu/spread_tradeoff.py DATA_DIR [MODELS]

DATA_DIR: `./run generate --config configs/sergio.yaml --out DATA_DIR` (or the OOD config); the first
MODELS (200) test models. Scores against the evaluation's interventional sample `int`, with the target
as in the truth:
  - the shipped `sergio` model's S = 1 samples, shrunk towards their mean by c (c = 1: as predicted);
  - no effect (30 observational cells, eval/baselines.py's), widened around their mean by c.
"""
import sys

import numpy as np
import torch

from activa_ray.data.format import read_shard, shard_paths
from activa_ray.eval.baselines import no_effect
from activa_ray.eval.metrics import energy, mmd, wasserstein
from activa_ray.eval.pairs import flatten_pairs, predict_samples
from activa_ray.predict import load

root = sys.argv[1]
models = int(sys.argv[2]) if len(sys.argv) > 2 else 200
pairs = flatten_pairs(read_shard(shard_paths(root, "test")[0]), models)
truth, obs, targets = np.array(pairs["int"]), pairs["obs"], pairs["targets"].astype(bool)  # a copy: shards are read-only
n_pairs, n, _ = truth.shape
with torch.no_grad():
    predicted = predict_samples(load("sergio").model, obs, pairs["targets"], pairs["values"], n, 1,
                                torch.Generator().manual_seed(0), 64, torch.device("cpu"))  # (P, n, d)
unmoved = no_effect(obs, pairs["targets"], pairs["values"], n, np.random.default_rng(0), point_mass=True).samples  # (P, n, d)


def score(name: str, samples: np.ndarray) -> None:
    x = torch.as_tensor(np.where(targets[:, None, :], truth, samples), dtype=torch.float32)
    y = torch.as_tensor(truth, dtype=torch.float32)
    print(f"{name:26s} MMD {mmd(x, y).nanmean():.3f}  WSD {wasserstein(x, y).nanmean():.3f}  ERG {energy(x, y).nanmean():.3f}")


def scaled(samples: np.ndarray, factor: float) -> np.ndarray:
    centre = samples.mean(1, keepdims=True)
    return centre + factor * (samples - centre)


print(f"{n_pairs} pairs")
for factor in (1.0, 0.8, 0.6, 0.4):
    score(f"ACTIVA shrunk x{factor}", scaled(predicted, factor))
for factor in (1.0, 1.25, 1.5):
    score(f"no effect widened x{factor}", scaled(unmoved, factor))
