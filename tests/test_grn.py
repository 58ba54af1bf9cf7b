"""The shipped GRNs and the modularity-greedy subgraph sampler (activa_ray/data/grn.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from activa_ray.ranges import ConfigError
from activa_ray.data.graphs import is_acyclic
from activa_ray.data.grn import (
    NETWORK_DIR,
    NETWORK_FILES,
    TOP_FRACTION,
    _drop_back_edges,
    _greedy_module,
    load_network,
    sample_subgraph,
)


def source_edges(name: str) -> set[tuple[str, str]]:
    """The network file's edges, read independently of load_network."""
    lines = (NETWORK_DIR / NETWORK_FILES[name]).read_text().splitlines()
    return {tuple(line.split("\t")[:2]) for line in lines if line.strip()}


@pytest.mark.parametrize(
    ("name", "n_genes", "n_edges", "self_loops"), [("ecoli", 1565, 3758, 110), ("yeast", 4441, 12873, 0)]
)
def test_parse_matches_the_files(name, n_genes, n_edges, self_loops):
    network = load_network(name)
    assert network.n_genes == n_genes
    assert len(network.regulators) == n_edges
    assert int((network.regulators == network.targets).sum()) == self_loops  # kept in the parse
    parsed = set(zip(network.genes[network.regulators], network.genes[network.targets]))
    assert parsed == source_edges(name)
    assert network.directed.nnz == n_edges
    skeleton = network.skeleton
    assert (skeleton != skeleton.T).nnz == 0 and skeleton.diagonal().sum() == 0
    assert network.degree.sum() == 2 * network.n_undirected_edges
    assert load_network(name) is network  # parsed once per process


@pytest.mark.parametrize("name", ["ecoli", "yeast"])
@pytest.mark.parametrize("d", [1, 8, 11])
def test_subgraphs_are_connected_acyclic_modules_of_the_network(name, d):
    network = load_network(name)
    edges = source_edges(name)
    rng = np.random.default_rng(0)
    for _ in range(60):
        graph, names = sample_subgraph(rng, network, d)
        assert graph.shape == (d, d) and graph.dtype == np.uint8 and names.shape == (d,)
        assert len(set(names)) == d
        assert not graph.diagonal().any()
        for i, j in zip(*np.nonzero(graph)):
            assert (names[i], names[j]) in edges
        assert is_acyclic(graph)
        n_components, _ = connected_components(graph, directed=False)
        assert n_components == 1


def test_module_growth_follows_the_modularity_ranking():
    """Replay each growth step: the gene added must rank among the best floor(0.2·|candidates|) + 1
    by the modularity of the set with it, computed here from the skeleton's submatrix."""
    network = load_network("yeast")
    skeleton, degree, two_m = network.skeleton, network.degree, 2.0 * network.n_undirected_edges

    def modularity(genes: np.ndarray) -> float:
        inside = skeleton[genes][:, genes].sum()  # sᵀAs
        return (inside - degree[genes].sum() ** 2 / two_m) / two_m

    rng = np.random.default_rng(1)
    for _ in range(5):
        members = _greedy_module(rng, network, 8)
        assert members[0] in set(network.start_genes)
        for step in range(1, len(members)):
            current = members[:step]
            candidates = np.setdiff1d(np.unique(skeleton[current].indices), current)
            scores = np.array([modularity(np.append(current, c)) for c in candidates])
            n_best = int(TOP_FRACTION * len(candidates)) + 1
            cutoff = np.sort(scores)[::-1][n_best - 1]
            chosen_score = scores[candidates == members[step]]
            assert chosen_score.size == 1 and chosen_score[0] >= cutoff - 1e-12


def test_back_edge_removal_keeps_dags_and_breaks_cycles():
    rng = np.random.default_rng(2)
    for _ in range(200):
        d = int(rng.integers(2, 12))
        graph = (rng.random((d, d)) < 0.3).astype(np.uint8)
        np.fill_diagonal(graph, 0)
        acyclic = _drop_back_edges(rng, graph)
        assert is_acyclic(acyclic)
        assert np.all(acyclic <= graph)
        dag = np.triu(graph, 1)
        assert np.array_equal(_drop_back_edges(rng, dag), dag)  # a DFS of a DAG has no back edges


def test_gene_order_is_random():
    network = load_network("ecoli")
    rng = np.random.default_rng(3)
    lower_edges = 0
    for _ in range(50):
        graph, _ = sample_subgraph(rng, network, 8)
        lower_edges += int(np.tril(graph).sum() > 0)
    assert 5 < lower_edges < 50  # neither always topologically sorted nor never


def test_sampling_is_deterministic_per_seed():
    network = load_network("yeast")
    first = [sample_subgraph(np.random.default_rng(7), network, 8) for _ in range(2)]
    assert np.array_equal(first[0][0], first[1][0]) and np.array_equal(first[0][1], first[1][1])
    other = sample_subgraph(np.random.default_rng(8), network, 8)
    assert not np.array_equal(first[0][1], other[1])


def test_bad_requests_name_the_config_field():
    with pytest.raises(ConfigError, match=r"data\.sergio\.networks.*'human'"):
        load_network("human")
    ecoli = load_network("ecoli")
    with pytest.raises(ConfigError, match=r"data\.d.*1477"):
        sample_subgraph(np.random.default_rng(0), ecoli, 1478)
    with pytest.raises(ConfigError, match=r"data\.d"):
        sample_subgraph(np.random.default_rng(0), ecoli, 0)
