"""Known gene-regulatory networks and the modularity-greedy subgraph sampler (Marbach et al. 2009).

The networks ship as package data (`networks/`, see its README for the attribution). Each is
parsed once per process; sampling a d-gene module never builds the dense modularity matrix
B = A - k kᵀ / 2m: for a 0/1 membership vector s, sᵀBs = sᵀAs - (sᵀk)² / 2m, and adding one
candidate gene c to the set changes sᵀAs by 2·(links from c into the set).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from activa_ray.ranges import ConfigError

NETWORK_DIR = Path(__file__).resolve().parent / "networks"
NETWORK_FILES = {
    "ecoli": "ecoli_transcriptional_network_regulonDB_6_7.tsv",
    "yeast": "yeast_transcriptional_network_Balaji2006.tsv",
}
# Candidates are ranked by the modularity of the set with them added; the next gene is drawn
# uniformly among the best floor(TOP_FRACTION * |candidates|) + 1.
TOP_FRACTION = 0.2


@dataclass(frozen=True)
class Network:
    """A parsed GRN. Gene i is `genes[i]`; edges are regulator -> target."""

    name: str
    genes: np.ndarray  # (n,) str
    regulators: np.ndarray  # (E,) int32, self-loops included as in the file
    targets: np.ndarray  # (E,) int32
    directed: sp.csr_matrix  # (n, n) uint8, directed[i, j] = 1 for i -> j, self-loops included
    skeleton: sp.csr_matrix  # (n, n) int32, undirected, symmetric 0/1, no self-loops
    degree: np.ndarray  # (n,) float64, skeleton degree k
    n_undirected_edges: int  # m, edges of the skeleton
    component_size: np.ndarray  # (n,) int64, genes in each gene's connected component
    start_genes: np.ndarray  # (n_reg,) int64, genes regulating at least one other gene

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def largest_component(self) -> int:
        return int(self.component_size.max())


@functools.lru_cache(maxsize=None)
def load_network(name: str) -> Network:
    """Parse a shipped network ("ecoli" or "yeast"), once per process.

    E. coli's third column (the sign) is dropped: SERGIO draws its own signs.
    """
    if name not in NETWORK_FILES:
        raise ConfigError(
            f"data.sergio.networks: unknown network {name!r}; expected any of {sorted(NETWORK_FILES)}"
        )
    path = NETWORK_DIR / NETWORK_FILES[name]
    regulator_names, target_names = [], []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{path}:{line_no}: expected regulator<TAB>target, got {line!r}")
        regulator_names.append(fields[0])
        target_names.append(fields[1])
    genes, codes = np.unique(np.array(regulator_names + target_names), return_inverse=True)
    n_edges = len(regulator_names)
    regulators = codes[:n_edges].astype(np.int32)
    targets = codes[n_edges:].astype(np.int32)
    n = len(genes)

    ones = np.ones(n_edges, dtype=np.uint8)
    directed = sp.csr_matrix((ones, (regulators, targets)), shape=(n, n))
    directed.sum_duplicates()
    directed.data[:] = 1
    # A gene regulating itself says nothing about which module it belongs to.
    between = regulators != targets
    skeleton = sp.csr_matrix(
        (np.ones(2 * between.sum(), dtype=np.int32),
         (np.concatenate([regulators[between], targets[between]]),
          np.concatenate([targets[between], regulators[between]]))),
        shape=(n, n),
    )
    skeleton.sum_duplicates()
    skeleton.data[:] = 1  # i -> j and j -> i are one undirected edge
    skeleton.sort_indices()
    degree = np.asarray(skeleton.sum(axis=1)).ravel().astype(np.float64)
    _, labels = connected_components(skeleton, directed=False)
    component_size = np.bincount(labels)[labels]
    start_genes = np.unique(regulators[between]).astype(np.int64)
    return Network(
        name=name,
        genes=genes,
        regulators=regulators,
        targets=targets,
        directed=directed,
        skeleton=skeleton,
        degree=degree,
        n_undirected_edges=int(skeleton.nnz // 2),
        component_size=component_size,
        start_genes=start_genes,
    )


def _greedy_module(rng: np.random.Generator, network: Network, d: int) -> np.ndarray:
    """Grow a d-gene module from a random regulator by modularity; gene indices in order of entry."""
    # Start only where the connected component can hold d genes, so the neighbours never run out
    # and the module is always connected (E. coli has components of 6-14 genes).
    starts = network.start_genes[network.component_size[network.start_genes] >= d]
    start = int(starts[rng.integers(len(starts))])
    indptr, indices = network.skeleton.indptr, network.skeleton.indices
    two_m = 2.0 * network.n_undirected_edges
    in_module = np.zeros(network.n_genes, dtype=bool)
    links = np.zeros(network.n_genes, dtype=np.int64)  # skeleton edges from each gene into the module
    members = [start]
    in_module[start] = True
    links[indices[indptr[start]:indptr[start + 1]]] += 1
    module_degree = network.degree[start]  # sᵀk
    while len(members) < d:
        candidates = np.flatnonzero((links > 0) & ~in_module)
        # Q(s + e_c) · 2m = sᵀAs + 2·links_c − (sᵀk + k_c)² / 2m; sᵀAs is the same for every candidate.
        score = 2.0 * links[candidates] - (module_degree + network.degree[candidates]) ** 2 / two_m
        n_best = int(TOP_FRACTION * len(candidates)) + 1
        best = candidates[np.argsort(-score, kind="stable")[:n_best]]
        chosen = int(best[rng.integers(n_best)])
        members.append(chosen)
        in_module[chosen] = True
        links[indices[indptr[chosen]:indptr[chosen + 1]]] += 1
        module_degree += network.degree[chosen]
    return np.array(members, dtype=np.int64)


def _induced_subgraph(network: Network, members: np.ndarray) -> np.ndarray:
    """Directed edges among `members` as (d, d) uint8, self-loops dropped (scipy's fancy
    indexing costs more than the whole module search)."""
    d = len(members)
    by_index = np.argsort(members)
    sorted_members = members[by_index]
    indptr, indices = network.directed.indptr, network.directed.indices
    induced = np.zeros((d, d), dtype=np.uint8)
    for source, gene in enumerate(members):
        targets = indices[indptr[gene]:indptr[gene + 1]]
        slot = np.minimum(np.searchsorted(sorted_members, targets), d - 1)
        inside = sorted_members[slot] == targets
        induced[source, by_index[slot[inside]]] = 1
    np.fill_diagonal(induced, 0)
    return induced


def _drop_back_edges(rng: np.random.Generator, graph: np.ndarray) -> np.ndarray:
    """Make a (d, d) 0/1 digraph acyclic by removing the back edges of a DFS from a random start."""
    d = len(graph)
    acyclic = graph.copy()
    state = np.zeros(d, dtype=np.int8)  # 0 unseen, 1 on the DFS stack, 2 finished
    roots = np.concatenate([[rng.integers(d)], rng.permutation(d)])
    for root in roots:
        if state[root]:
            continue
        state[root] = 1
        stack = [(int(root), iter(np.flatnonzero(acyclic[root])))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state[child] == 1:
                acyclic[node, child] = 0  # an edge back into the stack closes a cycle
            elif state[child] == 0:
                state[child] = 1
                stack.append((int(child), iter(np.flatnonzero(acyclic[child]))))
    return acyclic


def sample_subgraph(rng: np.random.Generator, network: Network, d: int) -> tuple[np.ndarray, np.ndarray]:
    """A random connected d-gene module of `network` as a DAG.

    Returns graph uint8 (d, d) with graph[i, j] = 1 for gene i -> gene j (every edge an edge of the
    source network, self-loops dropped, cycles broken) and the genes' names (d,), in random order.
    """
    if not 1 <= d <= network.largest_component:
        raise ConfigError(
            f"data.d: a subgraph of the {network.name} network needs 1 <= d <= "
            f"{network.largest_component} (its largest connected component), got {d}"
        )
    members = _greedy_module(rng, network, d)
    induced = _induced_subgraph(network, members)
    graph = _drop_back_edges(rng, induced)
    order = rng.permutation(d)
    return graph[np.ix_(order, order)], network.genes[members[order]]
