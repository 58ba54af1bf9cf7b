"""Structure learning for the discovery baselines: a DAG from DirectLiNGAM, or every DAG of GES's
Markov equivalence class (orient an undirected edge each way, close under Meek's rules, keep the
completions with the class's v-structures). `lingam_dag` and `ges_dags` take one dataset (N, d) and
return DAGs (K, d, d) with graph[i, j] = edge i -> j; eval/baselines.py fits and simulates them."""

from __future__ import annotations

import numpy as np

from activa_ray.data.graphs import is_acyclic

# The most DAGs `ges_dags` returns per dataset; a larger class is truncated (random branch order).
MAX_MEC_DAGS = 64



def lingam_dag(obs: np.ndarray, seed: int = 0) -> np.ndarray:
    """DirectLiNGAM's DAG for one dataset (N, d) -> (1, d, d), graph[i, j] = edge i -> j."""
    import lingam

    model = lingam.DirectLiNGAM(random_state=seed)
    model.fit(obs)
    # lingam's adjacency_matrix_[i, j] is the effect of j on i.
    return (np.abs(model.adjacency_matrix_) > 0).T[None].astype(np.uint8)


def _v_structures(directed: np.ndarray, adjacent: np.ndarray) -> set[tuple[int, int, int]]:
    """{(a, c, b): a -> c <- b, a < b not adjacent}."""
    found = set()
    for c in range(len(directed)):
        parents = np.flatnonzero(directed[:, c])
        for i, a in enumerate(parents):
            for b in parents[i + 1:]:
                if not adjacent[a, b]:
                    found.add((int(a), c, int(b)))
    return found


def _meek_closure(directed: np.ndarray, undirected: np.ndarray) -> bool:
    """Apply Meek's rules R1-R3 in place until nothing changes. False if a cycle appears."""
    d = len(directed)
    changed = True
    while changed:
        changed = False
        adjacent = directed | directed.T | undirected
        for a, b in zip(*np.nonzero(np.triu(undirected))):
            for x, y in ((a, b), (b, a)):
                # R1: z -> x - y, z not adjacent to y.  R2: x -> z -> y.  R3: x - z1 -> y <- z2 - x, z1, z2 not adjacent.
                r1 = any(directed[z, x] and not adjacent[z, y] for z in range(d))
                r2 = any(directed[x, z] and directed[z, y] for z in range(d))
                spouses = [z for z in range(d) if undirected[x, z] and directed[z, y]]
                r3 = any(not adjacent[z1, z2] for i, z1 in enumerate(spouses) for z2 in spouses[i + 1:])
                if r1 or r2 or r3:
                    undirected[x, y] = undirected[y, x] = False
                    directed[x, y] = True
                    changed = True
                    break
            if changed:
                break
    return is_acyclic(directed)


def mec_dags(cpdag_directed: np.ndarray, cpdag_undirected: np.ndarray, rng: np.random.Generator, max_dags: int = MAX_MEC_DAGS) -> np.ndarray:
    """The DAGs of a CPDAG's Markov equivalence class, (K, d, d), K <= max_dags.

    Orient one undirected edge each way (in random order), close under Meek's rules, recurse;
    keep the acyclic completions with exactly the CPDAG's v-structures.
    """
    directed0 = cpdag_directed.astype(bool)
    undirected0 = cpdag_undirected.astype(bool)
    adjacent = directed0 | directed0.T | undirected0
    required = _v_structures(directed0, adjacent)
    found: list[np.ndarray] = []

    def branch(directed: np.ndarray, undirected: np.ndarray) -> None:
        if len(found) >= max_dags:
            return
        edges = np.argwhere(np.triu(undirected))
        if len(edges) == 0:
            if is_acyclic(directed) and _v_structures(directed, adjacent) == required:
                found.append(directed.astype(np.uint8))
            return
        a, b = edges[0]
        for x, y in ((a, b), (b, a))[:: rng.choice([1, -1])]:
            new_directed, new_undirected = directed.copy(), undirected.copy()
            new_directed[x, y] = True
            new_undirected[x, y] = new_undirected[y, x] = False
            if _meek_closure(new_directed, new_undirected):
                branch(new_directed, new_undirected)

    if _meek_closure(directed0.copy(), undirected0.copy()):
        branch(directed0.copy(), undirected0.copy())
    if not found:
        raise ValueError("the CPDAG has no consistent DAG extension")
    return np.stack(found)


def ges_dags(obs: np.ndarray, seed: int = 0, max_dags: int = MAX_MEC_DAGS) -> np.ndarray:
    """GES (BIC) on one dataset (N, d) -> the DAGs of its equivalence class (K, d, d)."""
    from causallearn.search.ScoreBased.GES import ges

    graph = ges(obs, score_func="local_score_BIC")["G"].graph
    # causal-learn: graph[j, i] = 1 and graph[i, j] = -1 is i -> j; -1 both ways is i - j.
    directed = (graph.T == 1) & (graph == -1)
    undirected = (graph == -1) & (graph.T == -1)
    return mec_dags(directed, undirected, np.random.default_rng(seed), max_dags)
