"""ImageSearch (fd.search) on an approximate index: exact similarities, ordered like a Flat search."""

import shutil

import numpy as np
import pytest

from dup_pipeline.core.index import search
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.search import ImageSearch
from dup_pipeline.core.similarity import GraphConfig

K = 5


def exact_top(matrix: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of every query with every row (numpy), and each query's k best, best first."""
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    return cosine, -np.sort(-cosine, axis=1)[:, :k]


def _by_query(found, names: list[str], row_of: dict[int, int]) -> list[tuple[list[int], np.ndarray]]:
    """Each query's (matrix rows, similarities) in the order listed."""
    groups = found.partition_by("from", maintain_order=True)
    assert [g["from"][0] for g in groups] == names and all(g.height == K for g in groups)
    return [([row_of[m] for m in g["index"]], g["distance"].to_numpy()) for g in groups]


@pytest.mark.parametrize("mode", ["PCA64,IVF4,Flat", "IVF4,SQ8"])
def test_search_on_an_approximate_index_lists_the_exact_nearest_with_exact_similarities(
        demo_dataset, demo_run, tmp_path, mode):
    """A 64-d PCA or 8-bit codes distort the index's scores: the search re-ranks its candidates on the
    feature matrix and returns what an exact numpy cosine search returns, in the same order."""
    work = tmp_path / "work"
    shutil.copytree(demo_run.work_dir, work)
    run_pipeline(PipelineConfig(demo_dataset.images, str(work),
                                graph=GraphConfig(faiss_mode=mode, faiss_param="nprobe=1")), run_mode=2)
    searcher = ImageSearch(work, K, faiss_param="nprobe=4")  # all lists: only scores approximate
    matrix = np.asarray(searcher.features.matrix)
    row_of = {int(m): r for r, m in enumerate(searcher.features.index["index"])}
    names = list(searcher.features.index["filename"])
    noise = 0.005 * np.random.default_rng(0).standard_normal(matrix.shape)
    # near each image (cosine ~0.98), not in the index
    queries = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True) + noise).astype(np.float32)
    cosine, best = exact_top(matrix, queries, K)

    plain, _ = search(searcher.index, queries, K)  # the index alone
    assert searcher.index.ntotal == len(matrix) and np.nanmax(np.abs(plain - best)) > 1e-3  # 0.034 / 0.0017

    query_names = [f"q{i}" for i in range(len(queries))]
    for i, (rows, sims) in enumerate(_by_query(searcher.vectors(queries, query_names), query_names, row_of)):
        np.testing.assert_allclose(sims, best[i], atol=1e-5)  # the k best, best first
        np.testing.assert_allclose(sims, cosine[i, rows], atol=1e-5)  # each with its own exact similarity

    # as the run searched (nprobe=1 of 4 lists): fewer candidates, every similarity still exact and sorted,
    # the nearest image found for every query
    cut = ImageSearch(work, K)
    for i, (rows, sims) in enumerate(_by_query(cut.vectors(queries, query_names), query_names, row_of)):
        np.testing.assert_allclose(sims, cosine[i, rows], atol=1e-5)
        assert (np.diff(sims) <= 0).all() and sims[0] == pytest.approx(best[i, 0], abs=1e-5)

    _, copy, *_ = demo_dataset.ground_truth()["near_duplicates"][0]
    copy_row = next(r for r, name in enumerate(names) if name.endswith(copy))
    by_file = searcher.image(demo_dataset.images / copy)
    np.testing.assert_allclose(by_file["distance"].to_numpy(), exact_top(matrix, matrix[[copy_row]], K)[1][0],
                               atol=1e-4)
    assert by_file["to"][0].endswith(copy)
