"""SERGIO speed: datasets per second of the batched simulator and subgraph samples per second.

Targets: <= 5 ms per 8-gene dataset (1 observational + 8 knockouts, 30 cells each),
amortized over a large batch on one core; <= 20 ms per 8-gene subgraph of the yeast network.
"""

from __future__ import annotations

import time

import numpy as np

from activa_ray.data.config import SergioConfig
from activa_ray.data.grn import load_network, sample_subgraph
from activa_ray.data.sergio import simulate_sergio

OOD = SergioConfig(
    interaction_low=3.0, interaction_high=7.0, sign_beta=0.5, basal_low=0.5, basal_high=2.0,
    hill=[1.5, 2.5], decay=[0.5, 1.5], noise_scale=[0.5, 1.5],
)


def _time_sergio(n_models: int, d: int, cfg: SergioConfig) -> dict:
    simulate_sergio(np.random.default_rng(0), 8, d, 30, cfg)  # parse the networks outside the timing
    start = time.perf_counter()
    batch = simulate_sergio(np.random.default_rng(1), n_models, d, 30, cfg)
    seconds = time.perf_counter() - start
    return {
        "ms_per_dataset": round(1e3 * seconds / n_models, 3),
        "datasets": n_models,
        "seconds": round(seconds, 3),
        "mean_obs_expression": round(float(batch["obs"].mean()), 3),
    }


def sergio_d8() -> dict:
    return _time_sergio(2000, 8, SergioConfig())


def sergio_ood_d11() -> dict:
    return _time_sergio(500, 11, OOD)


def grn_subgraph_yeast_d8() -> dict:
    network = load_network("yeast")
    rng = np.random.default_rng(0)
    n_graphs = 2000
    start = time.perf_counter()
    for _ in range(n_graphs):
        sample_subgraph(rng, network, 8)
    seconds = time.perf_counter() - start
    return {"ms_per_graph": round(1e3 * seconds / n_graphs, 4), "graphs": n_graphs}


BENCHES = {
    "sergio_d8": sergio_d8,
    "sergio_ood_d11": sergio_ood_d11,
    "grn_subgraph_yeast_d8": grn_subgraph_yeast_d8,
}
