"""Random DAGs: acyclicity, the paper's edge density, agreement with a literal reference."""

import networkx as nx
import numpy as np
import pytest
from scipy import stats

from activa_ray.data.graphs import er_acyclify, er_ordered, is_acyclic, topological_order


@pytest.mark.parametrize("d", [1, 2, 3, 5, 8, 12])
@pytest.mark.parametrize("make", [er_acyclify, er_ordered])
def test_graphs_are_acyclic_without_self_loops(make, d):
    graph = make(np.random.default_rng(d), 2000, d, 0.3)
    assert graph.shape == (2000, d, d) and graph.dtype == np.uint8
    assert set(np.unique(graph)) <= {0, 1}
    assert not graph[:, np.arange(d), np.arange(d)].any()
    assert is_acyclic(graph).all()
    for g in graph[:50]:
        assert nx.is_directed_acyclic_graph(nx.DiGraph(g))


def test_two_variables_have_no_edge_about_half_the_time():
    # ER over the ordered pairs (0,1), (1,0): no edge with prob 0.7^2 = 0.49, one edge otherwise
    # (both present is a 2-cycle, and one random edge goes).
    graph = er_acyclify(np.random.default_rng(0), 40_000, 2, 0.3)
    edges = graph.sum(axis=(1, 2))
    assert edges.max() == 1
    assert abs((edges == 0).mean() - 0.49) < 0.015
    # Neither direction is favoured.
    assert abs(graph[:, 0, 1].mean() - graph[:, 1, 0].mean()) < 0.015


def reference_acyclify(rng: np.random.Generator, d: int, p: float) -> np.ndarray:
    """The paper's procedure, literally: ER graph, then remove uniformly random edges while cyclic."""
    present = rng.random((d, d)) < p
    np.fill_diagonal(present, False)
    g = nx.DiGraph()
    g.add_nodes_from(range(d))
    g.add_edges_from(zip(*np.nonzero(present)))
    while not nx.is_directed_acyclic_graph(g):
        edges = list(g.edges)
        g.remove_edge(*edges[rng.integers(len(edges))])
    return nx.to_numpy_array(g, nodelist=range(d), dtype=np.uint8)


def test_acyclify_matches_the_literal_procedure_in_distribution():
    d, p, n = 4, 0.4, 3000
    ours = er_acyclify(np.random.default_rng(1), n, d, p)
    ref_rng = np.random.default_rng(2)
    ref = np.stack([reference_acyclify(ref_rng, d, p) for _ in range(n)])
    # Number of edges per model: same distribution.
    counts = np.arange(d * (d - 1) + 1)
    ours_hist = np.array([(ours.sum(axis=(1, 2)) == k).sum() for k in counts])
    ref_hist = np.array([(ref.sum(axis=(1, 2)) == k).sum() for k in counts])
    keep = (ours_hist + ref_hist) > 0
    assert stats.chi2_contingency(np.stack([ours_hist[keep], ref_hist[keep]])).pvalue > 1e-3
    # Every ordered pair is an edge equally often.
    assert np.abs(ours.mean(axis=0) - ref.mean(axis=0)).max() < 0.05


def test_er_ordered_edge_density():
    d, p = 8, 0.3
    graph = er_ordered(np.random.default_rng(0), 5000, d, p)
    assert abs(graph.sum(axis=(1, 2)).mean() - p * d * (d - 1) / 2) < 0.1
    # The causal order is random: every ordered pair appears equally often.
    off_diagonal = graph.mean(axis=0)[~np.eye(d, dtype=bool)]
    assert np.abs(off_diagonal - p / 2).max() < 0.03


def test_topological_order_respects_edges_and_flags_cycles():
    graph = er_acyclify(np.random.default_rng(3), 300, 6, 0.5)
    order, complete = topological_order(graph)
    assert complete.all()
    position = np.argsort(order, axis=1)
    m, i, j = np.nonzero(graph)
    assert (position[m, i] < position[m, j]).all()

    cycle = np.zeros((2, 3, 3), dtype=np.uint8)
    cycle[:, 0, 1] = cycle[:, 1, 2] = 1
    cycle[0, 2, 0] = 1  # model 0: 0 -> 1 -> 2 -> 0
    assert is_acyclic(cycle).tolist() == [False, True]
    assert is_acyclic(cycle[1]) is True


def test_graphs_are_a_function_of_the_generator():
    a = er_acyclify(np.random.default_rng(7), 100, 5, 0.3)
    b = er_acyclify(np.random.default_rng(7), 100, 5, 0.3)
    assert np.array_equal(a, b)
