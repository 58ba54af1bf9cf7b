"""Evaluation benchmarks.

- `metrics_3000x8`: every metric (MMD, WSD, ERG, 100-permutation energy test) for 3,000 test
  models x 8 conditions at d=8, N=30 with `all_metrics`; `x_reference_loop` = the time of a
  per-pair loop over the reference libraries (POT emd2, dcor energy_distance and dcor's
  100-resample energy_test, a numpy MMD), measured on a subset and extrapolated, / ours.
- `baselines_d8`: ms per (dataset, intervention) query of each baseline on d=8, N=30 linear
  Gaussian models, beside ACTIVA's amortized ms per query (an untrained gauss8-sized model:
  the time does not depend on the weights).
"""

from __future__ import annotations

import time

import numpy as np
import torch

PAIRS, N, D = 3000 * 8, 30, 8
REFERENCE_SUBSET = 60


def _reference_pair(x: np.ndarray, y: np.ndarray, seed: int) -> None:
    import dcor
    import ot

    weights = np.full(len(x), 1 / len(x))
    ot.emd2(weights, weights, ot.dist(x, y, metric="euclidean"))
    dcor.energy_distance(x, y)
    dcor.homogeneity.energy_test(x, y, num_resamples=100, random_state=seed)
    pooled = np.vstack([x, y])
    dist = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))
    sigma = np.median(dist[np.triu_indices(len(pooled), 1)])
    kernel = np.exp(-dist**2 / (2 * sigma**2))
    n = len(x)
    kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def metrics_3000x8() -> dict:
    from activa_ray.eval.metrics import all_metrics

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(PAIRS, N, D, generator=generator)
    y = torch.randn(PAIRS, N, D, generator=generator) * 1.2 + 0.3
    started = time.perf_counter()
    all_metrics(x, y, permutations=100, generator=generator)
    seconds = time.perf_counter() - started

    xs, ys = x[:REFERENCE_SUBSET].double().numpy(), y[:REFERENCE_SUBSET].double().numpy()
    _reference_pair(xs[0], ys[0], 0)  # imports and JIT warm-up are not the loop's time
    started = time.perf_counter()
    for p in range(REFERENCE_SUBSET):
        _reference_pair(xs[p], ys[p], p)
    reference = (time.perf_counter() - started) * PAIRS / REFERENCE_SUBSET
    return {
        "pairs": PAIRS,
        "seconds": round(seconds, 2),
        "reference_loop_seconds_extrapolated": round(reference, 1),
        "x_reference_loop": round(reference / seconds, 1),
        "threads": torch.get_num_threads(),
    }


def baselines_d8() -> dict:
    from activa_ray.config import DataConfig
    from activa_ray.data.simulate import simulate
    from activa_ray.eval.baselines import BASELINES
    from activa_ray.eval.pairs import flatten_pairs, predict_samples
    from activa_ray.model.activa import Activa
    from activa_ray.model.config import PRESETS

    models = 40
    batch = simulate(DataConfig(d=D, n_samples=N), np.random.default_rng(0), models)
    pairs = flatten_pairs(batch)
    count = len(pairs["obs"])
    figures: dict = {"queries": count, "models": models}
    ms: dict[str, float] = {}
    for name, method in BASELINES.items():
        extra = {"graph": pairs["graph"]} if name == "oracle_graph" else {}
        # Warm-up on one model's queries (library imports, first-call overheads).
        method(pairs["obs"][:D], pairs["targets"][:D], pairs["values"][:D], N, np.random.default_rng(0),
               **({"graph": pairs["graph"][:D]} if extra else {}))
        result = method(pairs["obs"], pairs["targets"], pairs["values"], N, np.random.default_rng(1), **extra)
        ms[name] = round(1000 * result.seconds / count, 3)
        figures[f"{name}_failures"] = result.failures
    torch.manual_seed(0)
    model = Activa(PRESETS["gauss8"]).eval()
    generator = torch.Generator().manual_seed(0)
    predict_samples(model, pairs["obs"][:8], pairs["targets"][:8], pairs["values"][:8], N, 1, generator, 256, torch.device("cpu"))
    for s in (1, 50):
        started = time.perf_counter()
        predict_samples(model, pairs["obs"], pairs["targets"], pairs["values"], N, s, generator, 256, torch.device("cpu"))
        ms[f"activa_s{s}"] = round(1000 * (time.perf_counter() - started) / count, 3)
    figures["ms_per_dataset"] = ms
    figures["note"] = "ms per (dataset, intervention) query; lingam/ges_mec learn each model's graph once for its 8 queries"
    return figures


def units(data: str, model: str, n_models: int = 250) -> dict:
    """How much `model` leans on units (varsortability): MMD / WSD / ERG on the first `n_models` test models
    of configs/<data>.yaml, as simulated and with every non-target variable rescaled by a log-uniform
    factor in [0.2, 5] (predictions mapped back), beside the conditional baseline."""
    from pathlib import Path

    from activa_ray.config import load_config
    from activa_ray.data.simulate import shard_rng, simulate
    from activa_ray.eval.pairs import flatten_pairs
    from activa_ray.eval.rescale import scale_sensitivity
    from activa_ray.model.io import load_model
    from activa_ray.pretrained import resolve

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{data}.yaml")
    network, _ = load_model(resolve(model))
    pairs = flatten_pairs(simulate(cfg.data, shard_rng(cfg.data, "test", 0), n_models))
    result = scale_sensitivity(network, pairs)
    return {"pairs": len(pairs["obs"]), **{f"{scale}_{method}": {k: round(v, 3) for k, v in scores.items()}
                                           for scale, by_method in result.items() for method, scores in by_method.items()}}


def units_gauss8() -> dict:
    """The shipped Gauss 8 specialist on Gauss 8 test models."""
    return units("gauss8", "gauss8")


def units_universal() -> dict:
    """The universal model, which standardises every variable, on the same models: rescaling should change nothing."""
    return units("gauss8", "universal")


def units_beta8() -> dict:
    """The shipped Beta 8 specialist on Beta 8 test models."""
    return units("beta8", "beta8")


def units_universal_beta8() -> dict:
    """The universal model on the Beta 8 test models of units_beta8."""
    return units("beta8", "universal")


BENCHES = {"units_gauss8": units_gauss8, "units_universal": units_universal, "units_beta8": units_beta8,
           "units_universal_beta8": units_universal_beta8, "metrics_3000x8": metrics_3000x8, "baselines_d8": baselines_d8}
