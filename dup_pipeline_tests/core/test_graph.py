import networkx as nx
import numpy as np
import polars as pl
import pytest

from dup_pipeline.core import graph as g
from dup_pipeline.core.index import build_index, search


def pairs_df(edges: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(edges, schema=["from", "to", "distance"], orient="row")


# Two triangles {0,1,2} and {3,4,5} joined by a weak edge, and a singleton 6.
TRIANGLES = pairs_df(
    [(0, 1, 0.99), (1, 2, 0.98), (0, 2, 0.97), (3, 4, 1.0), (4, 5, 0.97), (5, 3, 0.97), (2, 3, 0.5)]
)


def test_knn_pairs_dedups_drops_self_and_sorts():
    sims = np.array(
        [[1.0, 0.95, 0.5], [1.0, 0.96, 0.2], [1.0, 0.91, np.nan], [0.99, 1.0, 0.1]], dtype=np.float32
    )
    ids = np.array([[0, 1, 2], [1, 0, 3], [2, 3, -1], [2, 3, 0]])
    pairs = g.knn_pairs(sims, ids, threshold=0.9)
    assert pairs.columns == ["from", "to", "distance"]
    assert pairs.rows() == [(2, 3, pytest.approx(0.99)), (0, 1, pytest.approx(0.96))]


def test_knn_pairs_merges_exact_groups():
    sims = np.array([[1.0, 0.93], [1.0, 0.93], [1.0, 0.2], [1.0, 0.2]], dtype=np.float32)
    ids = np.array([[0, 1], [1, 0], [2, 3], [3, 2]])
    pairs = g.knn_pairs(sims, ids, threshold=0.9, exact_groups=[[1, 0], [2, 4, 3, 4], [5]])
    assert pairs.rows() == [(0, 1, 1.0), (2, 3, 1.0), (2, 4, 1.0), (3, 4, 1.0)]
    with pytest.raises(ValueError, match="threshold"):
        g.knn_pairs(sims, ids, threshold=np.nan)
    with pytest.raises(ValueError, match="equal shape"):
        g.knn_pairs(sims, ids[:, :1], 0.9)


def test_outliers_one_row_per_image_far_vectors_first():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((20, 32))
    x = np.concatenate(
        [np.repeat(centers, 10, axis=0) + 0.05 * rng.standard_normal((200, 32)), rng.standard_normal((5, 32))]
    ).astype(np.float32)
    sims, ids = search(build_index(x, "Flat"), x, k=5)
    out = g.outliers(sims, ids, lower_threshold=5 / 205)
    assert out.columns == ["outlier", "nearest", "distance"]
    assert sorted(out["outlier"].to_list()) == [200, 201, 202, 203, 204]
    assert out["distance"].is_sorted()
    full = g.outliers(sims, ids, lower_threshold=1.0)
    assert full["outlier"].n_unique() == len(full) == 205
    assert full["outlier"].head(5).sort().to_list() == [200, 201, 202, 203, 204]
    assert (full["outlier"] != full["nearest"]).all()
    assert g.outliers(sims, ids, lower_threshold=0.0).is_empty()
    with pytest.raises(ValueError, match=r"lower_threshold must be a fraction in \[0, 1\]"):
        g.outliers(sims, ids, lower_threshold=5)


def test_connected_components_on_known_graph():
    cc, info = g.connected_components(TRIANGLES, 7, ccthreshold=0.96)
    assert cc.columns == ["__id", "component_id", "count", "mean_distance", "min_distance", "max_distance"]
    assert cc["__id"].to_list() == list(range(7))
    assert cc["component_id"].to_list() == [0, 0, 0, 1, 1, 1, 2]
    assert cc["count"].to_list() == [3, 3, 3, 3, 3, 3, 1]
    assert info.rows() == [
        (0, 3, pytest.approx(0.98), pytest.approx(0.97), pytest.approx(0.99)),
        (1, 3, pytest.approx(0.98), pytest.approx(0.97), pytest.approx(1.0)),
        (2, 1, None, None, None),
    ]
    # Same graph in another id space (e.g. manifest ids), nodes given as an array.
    mapped = TRIANGLES.with_columns(pl.col("from") + 100, pl.col("to") + 100)
    cc2, _ = g.connected_components(mapped, np.arange(106, 99, -1), ccthreshold=0.96)
    assert cc2["__id"].to_list() == list(range(106, 99, -1))
    assert cc2["count"].to_list() == [1, 3, 3, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="not in nodes"):
        g.connected_components(TRIANGLES, 5)
    with pytest.raises(ValueError, match="unique ids"):
        g.connected_components(TRIANGLES, np.array([0, 1, 1]))


def test_chained_component_reports_min_exact_similarity():
    theta = np.arccos(0.98)  # consecutive points on an arc: similarity 0.98, ends far apart
    angles = theta * np.arange(10)
    x = np.zeros((12, 16), dtype=np.float32)
    x[:10, 0], x[:10, 1] = np.cos(angles), np.sin(angles)
    x[10, 2] = x[11, 3] = 1.0
    sims, ids = search(build_index(x, "Flat"), x, k=3)
    pairs = g.knn_pairs(sims, ids, threshold=0.9)
    cc, info = g.connected_components(pairs, 12, ccthreshold=0.96, features=x)
    assert cc["count"].to_list() == [10] * 10 + [1, 1]
    chain = info.row(0, named=True)
    assert chain["min_distance"] == pytest.approx(0.98, abs=1e-5)
    assert chain["min_exact_similarity"] == pytest.approx(np.cos(9 * theta), abs=1e-5)
    assert chain["min_exact_similarity"] < 0.96 and not chain["exact_sampled"]
    assert info["min_exact_similarity"].to_list()[1:] == [None, None]
    _, sampled = g.connected_components(pairs, 12, ccthreshold=0.96, features=x, max_exact=4)
    assert sampled.row(0, named=True)["exact_sampled"]
    assert sampled.row(0, named=True)["min_exact_similarity"] >= chain["min_exact_similarity"] - 1e-6


def test_pagerank_degree_matches_networkx():
    star = pairs_df([(0, leaf, 0.95) for leaf in range(1, 6)])
    graph = pl.concat([star, TRIANGLES.with_columns(pl.col("from") + 6, pl.col("to") + 6)])
    result = g.pagerank_degree(graph, 13, threshold=0.96)
    assert result.columns == ["__id", "pagerank", "degree", "weighted_degree"]
    assert result["degree"].to_list() == [0] * 6 + [2, 2, 2, 2, 2, 2, 0]
    result = g.pagerank_degree(graph, 13, threshold=0.9)
    assert result["degree"].to_list() == [5, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0]
    assert result["weighted_degree"][0] == pytest.approx(4.75)
    assert result["pagerank"].arg_max() == 0
    assert result["pagerank"].sum() == pytest.approx(1.0)
    reference = nx.Graph()
    reference.add_nodes_from(range(13))
    reference.add_weighted_edges_from(graph.filter(pl.col("distance") >= 0.9).rows())
    expected = nx.pagerank(reference, tol=1e-10, max_iter=1000)
    np.testing.assert_allclose(
        g.pagerank_degree(graph, 13, threshold=0.9, tol=1e-10)["pagerank"], [expected[i] for i in range(13)]
    )
    with pytest.raises(ValueError, match="damping must be in"):
        g.pagerank_degree(graph, 13, threshold=0.9, damping=1.0)
    with pytest.raises(RuntimeError, match="did not converge in max_iter=3"):
        g.pagerank_degree(graph, 13, threshold=0.9, max_iter=3)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        g.pagerank_degree(graph, 13, threshold=0.0)
