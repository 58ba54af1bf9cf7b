"""Random DAGs for many models at once: batched adjacency matrices, graph[m, i, j] = 1 for i -> j."""

from __future__ import annotations

import numpy as np


def er_acyclify(rng: np.random.Generator, n_models: int, d: int, p: float) -> np.ndarray:
    """The paper's procedure: a directed Erdős–Rényi graph over ordered pairs (i, j), i != j,
    each edge present with probability `p`, then uniformly random edges removed until no
    cycle is left. Returns uint8 (M, d, d).

    Removing uniformly random edges one at a time removes a prefix of a uniformly random
    ordering of the edges and stops at the first acyclic remainder. Equivalently: insert the
    edges in a (reversed, hence also uniform) random order and stop at the first edge that
    would close a cycle. That is what runs here, for all models in lock step, with the
    reflexive transitive closure kept per model so each insertion is a constant-size check.
    """
    present = rng.random((n_models, d, d)) < p  # (M, d, d)
    present[:, np.arange(d), np.arange(d)] = False
    # Random insertion order per model: present edges first, in random order.
    keys = rng.random((n_models, d * d))
    keys[~present.reshape(n_models, d * d)] = np.inf
    order = np.argsort(keys, axis=1)  # (M, d*d) flat edge indices
    n_present = present.reshape(n_models, -1).sum(axis=1)  # (M,)

    graph = np.zeros((n_models, d, d), dtype=np.uint8)
    reach = np.broadcast_to(np.eye(d, dtype=bool), (n_models, d, d)).copy()  # reach[m, i, j]: path i ~> j
    inserting = np.ones(n_models, dtype=bool)  # models that have not yet hit a cycle-closing edge
    models = np.arange(n_models)
    for step in range(int(n_present.max(initial=0))):
        src, dst = np.divmod(order[:, step], d)  # (M,), (M,)
        active = inserting & (step < n_present)
        closes_cycle = reach[models, dst, src]
        inserting &= ~(active & closes_cycle)
        add = np.flatnonzero(active & ~closes_cycle)
        if add.size == 0:
            continue
        graph[add, src[add], dst[add]] = 1
        # Everything that reaches src now reaches everything dst reaches.
        reaches_src = reach[add, :, src[add]]  # (K, d)
        reached_from_dst = reach[add, dst[add], :]  # (K, d)
        reach[add] |= reaches_src[:, :, None] & reached_from_dst[:, None, :]
    return graph


def er_ordered(rng: np.random.Generator, n_models: int, d: int, p: float) -> np.ndarray:
    """Plain random-order ER DAG: a uniformly random causal order per model and every pair
    that respects it linked with probability `p`. Returns uint8 (M, d, d)."""
    upper = np.triu(rng.random((n_models, d, d)) < p, k=1)  # edges along the order 0 < 1 < ... < d-1
    perm = np.argsort(rng.random((n_models, d)), axis=1)  # (M, d): node perm[m, k] takes place k
    # graph[m, perm[k], perm[l]] = upper[m, k, l]
    graph = np.zeros((n_models, d, d), dtype=np.uint8)
    models = np.arange(n_models)[:, None, None]
    graph[models, perm[:, :, None], perm[:, None, :]] = upper
    return graph


def topological_order(graph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kahn's algorithm in lock step over models. Takes (M, d, d); returns `order` int64 (M, d)
    (each step takes the lowest-numbered source left) and `complete` bool (M,), False where a
    cycle stopped the sort (the rest of that row of `order` is then meaningless)."""
    graph = np.asarray(graph).astype(bool)
    n_models, d, _ = graph.shape
    in_degree = graph.sum(axis=1).astype(np.int64)  # (M, d)
    done = np.zeros((n_models, d), dtype=bool)
    order = np.zeros((n_models, d), dtype=np.int64)
    complete = np.ones(n_models, dtype=bool)
    models = np.arange(n_models)
    for step in range(d):
        ready = (in_degree == 0) & ~done  # (M, d)
        complete &= ready.any(axis=1)
        node = np.argmax(ready, axis=1)  # lowest ready index; 0 for stuck models, masked below
        order[:, step] = node
        take = complete
        done[models[take], node[take]] = True
        in_degree[take] -= graph[models[take], node[take]]
    return order, complete


def is_acyclic(graph: np.ndarray) -> np.ndarray:
    """bool (M,) for a batch (M, d, d), or a bool scalar for a single (d, d) graph."""
    graph = np.asarray(graph)
    if graph.ndim == 2:
        return bool(topological_order(graph[None])[1][0])
    return topological_order(graph)[1]
