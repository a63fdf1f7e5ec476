"""Benchmark kNN index + similarity graph: HNSW vs Flat on random unit vectors with planted duplicates.

Each (n, mode) measurement runs in a fresh process so ``ru_maxrss`` is that run's own peak RSS.
Recall@k of each mode is measured against exact (Flat) neighbours of ``--recall-queries`` sampled
rows; a full exact self-kNN is only run for n <= ``--flat-max-n`` (it is O(n^2 d): 1M x 1280 would
take many hours on 2 cores). Random high-dimensional vectors are the worst case for HNSW recall@k
(all neighbours are almost equidistant); the planted-pair recall is the duplicate-detection metric.
Writes nothing to disk.

    python benchmarks/bench_graph.py --n 100000 --dim 1280 --k 10 --threads 2    # ~12 min on 2 cores
    python benchmarks/bench_graph.py --n 100000 1000000 --dim 128                # ~40 min on 2 cores

1M x 1280 does not fit a 15-minute budget on 2 cores: extrapolating the 100k x 1280 and 1M x 128
runs, HNSW32 needs ~20 min to build and ~30 min to self-search at efSearch=16 (~10 GiB RSS).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import faiss
import numpy as np

from dup_pipeline.core import graph
from dup_pipeline.core.index import build_index, search


def make_data(n: int, dim: int, dup_frac: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random unit vectors; ``dup_frac * n`` rows are near-copies (cosine ~0.98) of other rows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    for start in range(0, n, 65_536):  # chunked: no full-size temporaries
        x[start : start + 65_536] /= np.linalg.norm(x[start : start + 65_536], axis=1, keepdims=True)
    rows = rng.choice(n, size=2 * int(dup_frac * n), replace=False).reshape(2, -1)
    noise = rng.standard_normal((rows.shape[1], dim), dtype=np.float32)
    noise *= 0.2 / np.linalg.norm(noise, axis=1, keepdims=True)
    x[rows[1]] = x[rows[0]] + noise
    x[rows[1]] /= np.linalg.norm(x[rows[1]], axis=1, keepdims=True)
    return x, np.sort(rows, axis=0).T


def query_rows(n: int, count: int) -> np.ndarray:
    return np.sort(np.random.default_rng(1).choice(n, size=min(count, n), replace=False))


def drop_self(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """First k neighbour ids of each query row, excluding the row itself."""
    return np.array([[i for i in r if i != q][:k] for r, q in zip(ids, rows)])


def run_mode(args: argparse.Namespace, n: int, mode: str, sample_only: bool = False) -> list[dict]:
    """Build once, then self-search + graph per ``--search-param``, in its own process.

    ``sample_only``: search only the recall sample (exact ground truth when full Flat is too slow).
    """
    x, planted = make_data(n, args.dim, args.dup_frac)
    rows = query_rows(n, args.recall_queries)
    t = time.perf_counter()
    index = build_index(
        x, mode, faiss_param="" if mode == "Flat" else args.build_param, num_threads=args.threads
    )
    build_s = time.perf_counter() - t
    results = []
    for param in [""] if mode == "Flat" else args.search_param:
        faiss.ParameterSpace().set_index_parameters(index, param)
        out: dict = {"n": n, "mode": f"{mode} {param}".strip(), "build_s": build_s}
        t = time.perf_counter()
        if sample_only:
            _, ids = search(index, x[rows], args.k + 1, num_threads=args.threads)
            out["search_s"] = (time.perf_counter() - t) * n / len(rows)
            out["note"] = f"search_s extrapolated from {len(rows)} queries"
            out["sample_ids"] = drop_self(ids, rows, args.k)
        else:
            sims, ids = search(index, x, args.k + 1, num_threads=args.threads)
            out["search_s"] = time.perf_counter() - t
            out["sample_ids"] = drop_self(ids[rows], rows, args.k)
            t = time.perf_counter()
            pairs = graph.knn_pairs(sims, ids, args.threshold)
            _, info = graph.connected_components(pairs, n, args.ccthreshold, features=x)
            graph.pagerank_degree(pairs, n, args.threshold)
            graph.outliers(sims, ids)
            out["graph_s"] = time.perf_counter() - t
            found = set(pairs.select("from", "to").iter_rows())
            out["planted_recall"] = np.mean([tuple(p) in found for p in planted.tolist()])
            out["pairs"] = len(pairs)
            out["components>1"] = int((info["count"] > 1).sum())
        out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        results.append(out)
    return results


def isolated(args: argparse.Namespace, n: int, mode: str, sample_only: bool = False) -> list[dict]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_mode, args, n, mode, sample_only).result()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, nargs="+", default=[100_000], help="dataset sizes, e.g. 100000 1000000"
    )
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["HNSW32", "Flat"])
    parser.add_argument(
        "--build-param", default="", help="faiss_param for non-Flat builds, e.g. efConstruction=80"
    )
    parser.add_argument(
        "--search-param",
        nargs="+",
        default=["efSearch=16", "efSearch=128"],
        help="non-Flat search params to compare",
    )
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--ccthreshold", type=float, default=0.96)
    parser.add_argument(
        "--dup-frac", type=float, default=0.01, help="fraction of rows planted as near-duplicates"
    )
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument(
        "--flat-max-n", type=int, default=200_000, help="above this, Flat searches only the sample"
    )
    args = parser.parse_args()

    print(
        f"dim={args.dim} k={args.k} threads={args.threads} build_param={args.build_param!r} "
        f"threshold={args.threshold} ccthreshold={args.ccthreshold} dup_frac={args.dup_frac}"
    )
    columns = [
        "n",
        "mode",
        "build_s",
        "search_s",
        "graph_s",
        "peak_rss_gb",
        "recall@k",
        "planted_recall",
        "pairs",
        "components>1",
    ]
    widths = [7, 19, 8, 8, 7, 11, 8, 14, 6, 12]
    print(" | ".join(c.rjust(w) for c, w in zip(columns, widths)), flush=True)
    for n in args.n:
        exact = isolated(args, n, "Flat", sample_only=True)[0]["sample_ids"]
        for mode in args.modes:
            for run in isolated(args, n, mode, sample_only=mode == "Flat" and n > args.flat_max_n):
                run["recall@k"] = np.mean(
                    [len(set(a) & set(e)) / args.k for a, e in zip(run["sample_ids"], exact)]
                )
                cells = [
                    f"{run[c]:.3f}" if isinstance(run.get(c), float) else str(run.get(c, "-"))
                    for c in columns
                ]
                note = f"  ({run['note']})" if "note" in run else ""
                print(" | ".join(cell.rjust(w) for cell, w in zip(cells, widths)) + note, flush=True)


if __name__ == "__main__":
    main()
