"""Structure learning: the Markov equivalence class enumeration counts the class, and DirectLiNGAM
finds the causal direction under non-Gaussian noise."""

from __future__ import annotations

import numpy as np

from activa_ray.eval.discovery import lingam_dag, mec_dags


def test_mec_enumeration_counts_the_class() -> None:
    rng = np.random.default_rng(0)
    none = np.zeros((3, 3), dtype=bool)
    chain = none.copy()
    chain[0, 1] = chain[1, 0] = chain[1, 2] = chain[2, 1] = True  # 0 - 1 - 2: three DAGs, no collider
    dags = mec_dags(none, chain, rng)
    assert len(dags) == 3
    assert not any(dag[0, 1] and dag[2, 1] for dag in dags)
    complete = ~np.eye(3, dtype=bool)  # undirected triangle: all 3! orders
    assert len(mec_dags(none, complete, rng)) == 6
    complete5 = ~np.eye(5, dtype=bool)  # 120 DAGs, capped
    assert len(mec_dags(np.zeros((5, 5), dtype=bool), complete5, rng, max_dags=10)) == 10
    collider = none.copy()
    collider[0, 1] = collider[2, 1] = True  # 0 -> 1 <- 2 is its own class
    assert len(mec_dags(collider, none, rng)) == 1


def test_lingam_finds_the_causal_direction_under_beta_noise() -> None:
    rng = np.random.default_rng(8)
    x = rng.beta(0.5, 0.5, 3000)
    y = 1.5 * x + rng.beta(0.6, 1.5, 3000)
    assert lingam_dag(np.stack([x, y], axis=1))[0].tolist() == [[0, 1], [0, 0]]
    assert lingam_dag(np.stack([y, x], axis=1))[0].tolist() == [[0, 0], [1, 0]]
