"""The similarity stage over the feature matrix: faiss index, kNN pairs, outliers, components.

Everything is written into work_dir with fastdup's file names and shapes (manifest indexes in
``from``/``to``/``__id``), plus Parquet tables with file names. A rerun with the same features
and parameters recomputes nothing; new images appended to the matrix are added to the existing
index instead of rebuilding it.
"""

import hashlib
import json
import warnings
from dataclasses import dataclass, replace

import faiss
import numpy as np
import polars as pl

from dup_pipeline.core.atomic import atomic_path, write_csv, write_json, write_parquet
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.features import FeatureMatrix, unchanged_rows
from dup_pipeline.core.graph import (
    connected_components,
    knn_pairs,
    outliers,
    pagerank_degree,
)
from dup_pipeline.core.index import (
    AUTO_EXACT_BELOW,
    AUTO_IGNORED_PARAMS,
    AUTO_MODE,
    AUTO_PARAMS,
    FLAT_MODE,
    FlatMatrix,
    add_rows,
    auto_faiss_mode,
    apply_params,
    batch_rows,
    _rows,
    build_index,
    check_index_settings,
    format_params,
    load_index,
    parse_params,
    save_index,
    search,
    write_flat_index,
)
from dup_pipeline.core.manifest import exact_duplicate_groups
from dup_pipeline.core.rerank import (
    RERANK_FACTOR,
    pair_similarities,
    search_queries,
    search_reranked,
)
from dup_pipeline.core.workdir import WorkDir

GRAPH_VERSION = "2"
DISTANCES = ("cosine", "euclidean", "squared_euclidean", "manhattan")


@dataclass(frozen=True)
class GraphConfig:
    """fastdup's similarity parameters, with defaults chosen for the default model.

    ``threshold``: pairs at or above it are listed (0.8, calibrated on real photographs with planted
    copies for EfficientNet-Lite0 fp32 and int8 with the centre crop: pair precision 1.0, 99.8% of the
    images with a copy found; docs/calibration.md). ``ccthreshold``: edges at or above it join
    components (0.8: no component joins different photographs there). ``lower_threshold``: the
    fraction of images with the weakest nearest neighbour reported as outliers (fastdup's 0.05).
    ``nearest_neighbors_k``: neighbours searched per image (bounds the size of a duplicate group
    that is listed completely). ``faiss_mode="auto"`` picks the index by
    the number of vectors (:func:`dup_pipeline.core.index.auto_faiss_mode`); see :meth:`resolved`.
    """

    faiss_mode: str = AUTO_MODE
    faiss_param: str = ""
    distance: str = "cosine"
    nearest_neighbors_k: int = 10
    threshold: float = 0.8
    ccthreshold: float = 0.8
    lower_threshold: float = 0.05
    run_cc: bool = True
    run_pagerank: bool = True
    run_degree: bool = True

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ConfigError(f"distance must be one of {', '.join(DISTANCES)}, got {self.distance!r}")
        if not isinstance(self.nearest_neighbors_k, int) or self.nearest_neighbors_k < 1:
            raise ConfigError(f"nearest_neighbors_k must be a positive integer, got {self.nearest_neighbors_k!r}")
        for name in ("threshold", "ccthreshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if not 0 <= self.lower_threshold < 1:
            raise ConfigError(f"lower_threshold must be in [0, 1), got {self.lower_threshold!r}")
        params = parse_params(self.faiss_param)  # every faiss value checked before any work
        if self.faiss_mode == AUTO_MODE:
            allowed = AUTO_PARAMS + AUTO_IGNORED_PARAMS
            if set(params) - set(allowed):
                raise ConfigError(f"faiss_param with faiss_mode='auto' may set only {', '.join(allowed)} "
                                  f"(the IVF's applied when auto picks it), got {self.faiss_param!r}; "
                                  "name a faiss_mode to set others")
            if ignored := sorted(set(params) & set(AUTO_IGNORED_PARAMS)):
                warnings.warn(f"faiss_param {', '.join(ignored)} has no effect with faiss_mode='auto' (exact Flat "
                              f"below {AUTO_EXACT_BELOW:,} images, PCA-IVF above); set faiss_mode='HNSW32' to use "
                              "it", stacklevel=3)

    def resolved(self, n: int, dim: int) -> "GraphConfig":
        """This config with ``auto`` replaced by the concrete mode for ``n`` vectors of ``dim``, keeping
        the faiss_param (``AUTO_PARAMS``) only for an IVF; any other faiss_mode is kept as is."""
        if self.faiss_mode != AUTO_MODE:
            return self
        mode = auto_faiss_mode(n, dim, self.distance)
        params = {k: v for k, v in parse_params(self.faiss_param).items() if k in AUTO_PARAMS and "IVF" in mode}
        return replace(self, faiss_mode=mode, faiss_param=format_params(params))

    @property
    def search_params(self) -> str:
        """``faiss_param`` over defaults that keep near-duplicate recall high: HNSW's efSearch=64 (faiss's
        16 missed 11-27% of planted pairs in benchmarks/bench_graph.py), IVF's nprobe=16, nprobe=32 after a
        PCA (100% of planted copies at 1M with re-ranking, docs/benchmarks.md)."""
        mode = self.faiss_mode
        defaults = {"efSearch": 64.0} if mode.startswith("HNSW") else (
            {"nprobe": 16.0} if mode.startswith("IVF") else (
                {"nprobe": 32.0} if mode.startswith("PCA") and ",IVF" in mode else {}))
        return format_params({**defaults, **parse_params(self.faiss_param)})

    @property
    def index_tag(self) -> dict:
        """What the index's content depends on (search-time parameters such as efSearch do not)."""
        params = parse_params(self.faiss_param)
        build = [format_params({k: v}) for k, v in params.items() if k.endswith("efConstruction")]
        return {"faiss_mode": self.faiss_mode, "distance": self.distance, "build_params": build}


@dataclass(frozen=True)
class GraphResult:
    """The similarity stage's tables (manifest indexes in every id column)."""

    similarity: pl.DataFrame
    outliers: pl.DataFrame
    components: pl.DataFrame | None
    components_info: pl.DataFrame | None
    ranks: pl.DataFrame | None
    recomputed: bool
    index_rows_added: int


def update_index(work: WorkDir, features: FeatureMatrix, config: GraphConfig, num_threads: int | None = None,
                 ) -> tuple[faiss.Index | FlatMatrix, int]:
    """Load, extend or build ``faiss.index`` for the matrix; return the index to search and the rows added now.

    The index is extended when its rows are still the matrix's first rows, checked with the
    per-range digests of ``features.json`` (:func:`unchanged_rows`), else rebuilt. A ``Flat`` index is
    streamed to the file from the matrix and never held: the matrix is searched in place (:func:`open_index`).
    """
    n = features.matrix.shape[0]
    config = config.resolved(*features.matrix.shape)
    flat = config.faiss_mode == FLAT_MODE
    tag = {**config.index_tag, "model_id": features.model_id}
    state = json.loads(work.index_meta.read_text()) if work.index_meta.exists() else {}
    old_rows = state.get("rows", 0)
    index = None
    if (work.faiss_index.exists() and state.get("tag") == tag and 0 < old_rows <= n
            and unchanged_rows(state.get("ranges", []), features) >= old_rows):
        index = load_index(work.faiss_index, mapped=flat)  # a Flat file's vectors are not read: only its size
        if index.ntotal != old_rows:  # killed between saving the index and its state: rebuild
            index = None
        elif old_rows == n:
            return FlatMatrix(features.matrix, config.distance) if flat else index, 0
    if flat:
        added = n - old_rows if index is not None else n
        write_flat_index(features.matrix, work.faiss_index, config.distance)  # replaces the mapped file by rename
        index = FlatMatrix(features.matrix, config.distance)
    else:
        if index is not None:
            added = add_rows(index, features.matrix, old_rows, config.distance, num_threads)
        else:
            index = build_index(features.matrix, config.faiss_mode, config.distance, config.search_params,
                                num_threads=num_threads)
            added = n
        save_index(index, work.faiss_index)
    write_json({"tag": tag, "rows": n, "ranges": list(features.ranges)}, work.index_meta)
    return index, added


def open_index(work: WorkDir, matrix: np.ndarray, config: GraphConfig) -> faiss.Index | FlatMatrix:
    """The index of ``work`` (built for ``config``, resolved) ready to search: an exact ``Flat`` one searches
    ``matrix`` in place (:class:`FlatMatrix`, no copy of the vectors); any other is read from ``faiss.index``
    with the search parameters applied."""
    if config.faiss_mode == FLAT_MODE:
        check_index_settings(matrix.shape[1], FLAT_MODE, config.distance, config.search_params)  # Flat takes none
        return FlatMatrix(matrix, config.distance)
    index = load_index(work.faiss_index)
    apply_params(index, config.faiss_mode, config.search_params)
    return index


def with_names(df: pl.DataFrame, names: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    for id_column, name_column in columns.items():
        df = df.join(names.rename({"index": id_column, "filename": name_column}), on=id_column, how="left")
    return df


def _names(manifest: pl.DataFrame) -> pl.DataFrame:
    return manifest.select("index", pl.col("path").alias("filename"))


def _digest(*parts: object) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def _fresh(path, fingerprint: str) -> bool:
    return path.exists() and json.loads(path.read_text()).get("fingerprint") == fingerprint


@dataclass(frozen=True)
class Neighbours:
    """kNN of every matrix row, in manifest indexes: ``ids[i, j]`` is the j-th neighbour of ``rows[i]``.

    ``rows`` (the manifest index of each matrix row) is sorted, as the feature matrix is.
    """

    rows: np.ndarray
    sims: np.ndarray
    ids: np.ndarray
    fingerprint: str

    def as_row_space(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sims, ids)`` with ids as matrix rows (-1 kept), for the graph functions."""
        position = np.clip(np.searchsorted(self.rows, self.ids), 0, max(len(self.rows) - 1, 0))
        found = (self.ids >= 0) & (self.rows[position] == self.ids) if len(self.rows) else self.ids >= 0
        return self.sims, np.where(found, position, -1)


def _to_manifest(df: pl.DataFrame, rows: np.ndarray, columns: tuple[str, ...]) -> pl.DataFrame:
    return df.with_columns(pl.Series(c, rows[df[c].to_numpy()], dtype=pl.Int64) for c in columns)


def find_neighbours(
    work: WorkDir, manifest: pl.DataFrame, features: FeatureMatrix, config: GraphConfig = GraphConfig(),
    num_threads: int | None = None,
) -> Neighbours:
    """Search every image's ``nearest_neighbors_k`` neighbours in ``faiss.index`` (cached in ``knn.npz``).

    Every mode is re-ranked: ``RERANK_FACTOR`` times as many candidates as listed are scored exactly on
    the feature matrix (:func:`search_reranked`), so every similarity is exact and equal ones are listed
    by row (HNSW may return any of several equal candidates). When rows were only appended since
    ``knn.npz`` was written (same settings, earlier rows unchanged by the per-range digests) only the new
    rows are searched, and each earlier row's list is merged with its exact best among the new rows
    (:func:`_add_neighbours`): with an exact index (Flat) the lists are those a full search gives.
    """
    state = json.loads(work.index_meta.read_text())
    config = config.resolved(*features.matrix.shape)
    settings = _digest(GRAPH_VERSION, state["tag"], config.nearest_neighbors_k, config.search_params,
                       RERANK_FACTOR)
    fingerprint = _digest(settings, state, json.loads(work.features_meta.read_text()))
    if _fresh(work.knn_meta, fingerprint):
        data = np.load(work.knn)
        return Neighbours(data["rows"], data["sims"], data["ids"], fingerprint)
    index = open_index(work, features.matrix, config)
    n = features.matrix.shape[0]
    k = min(config.nearest_neighbors_k + 1, max(n, 1))
    rows = features.index["index"].to_numpy()
    earlier = _earlier_neighbours(work, settings, features, k)
    if earlier is not None:
        sims, ids = _add_neighbours(index, features.matrix, *earlier, k, config, num_threads)
    else:
        sims, ids = search_reranked(index, features.matrix, k, RERANK_FACTOR, config.distance,
                                    num_threads=num_threads)
    manifest_ids = np.where(ids >= 0, rows[np.clip(ids, 0, None)], -1) if n else ids
    with atomic_path(work.knn) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, rows=rows, sims=sims, ids=manifest_ids)
    write_json({"fingerprint": fingerprint, "settings": settings, "rows": n, "ranges": list(features.ranges)},
               work.knn_meta)
    return Neighbours(rows, sims, manifest_ids, fingerprint)


# a similarity from a matrix product or a faiss search may differ from the pair-by-pair one in the last bits
MERGE_SLACK = 1e-4
# appended rows compared with every earlier row (m x new x d) only up to max(1,000, 5% of m): beyond, one
# full search costs less (100k + 5k: 6.4e11 multiply-adds, seconds; 1M + 50k: ~10 min, a third of the search)
INCREMENTAL_MIN_ROWS = 1_000
INCREMENTAL_MAX_FRACTION = 0.05


def _earlier_neighbours(work: WorkDir, settings: str, features: FeatureMatrix, k: int,
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sims, ids)`` (ids as matrix rows) of ``knn.npz`` when it lists the first rows of ``features``,
    unchanged, with the current settings and ``k``, and rows were appended since (not more than
    ``INCREMENTAL_MAX_FRACTION`` of them, or ``INCREMENTAL_MIN_ROWS``); else None."""
    try:
        meta = json.loads(work.knn_meta.read_text())
        data = np.load(work.knn)
        before, sims, ids = data["rows"], data["sims"], data["ids"]
    except (OSError, ValueError, KeyError):
        return None
    m, n = meta.get("rows", 0), features.matrix.shape[0]
    few = n - m <= max(INCREMENTAL_MIN_ROWS, INCREMENTAL_MAX_FRACTION * m)
    if (meta.get("settings") != settings or not 0 < m < n or not few or sims.shape != (m, k)
            or len(before) != m or unchanged_rows(meta.get("ranges", []), features) < m):
        return None
    position = np.searchsorted(before, ids)  # earlier rows' neighbours are earlier rows: same positions
    return sims, np.where(ids >= 0, np.clip(position, 0, m - 1), -1)


def _add_neighbours(index: faiss.Index | FlatMatrix, matrix: np.ndarray, sims: np.ndarray, ids: np.ndarray, k: int,
                    config: GraphConfig, num_threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour lists of all rows from those of the first ``m`` rows (``sims``, ``ids``) after rows
    were appended (``index`` holds every row): the new rows are searched in the index, and every earlier
    row is compared with every new row (m x new x d multiply-adds, the new rows held in memory); a row's
    list changes only where a new row beats its last neighbour, and then takes the new rows' exact
    similarities (:func:`pair_similarities`) and is re-sorted as :func:`rerank` sorts."""
    m, n, distance = sims.shape[0], matrix.shape[0], config.distance
    new_sims, new_ids = search_reranked(index, matrix, k, RERANK_FACTOR, distance, num_threads=num_threads,
                                        first=m)
    fresh = None if distance == "cosine" else build_index(matrix[m:], "Flat", distance)
    new = _rows(matrix, slice(m, n), distance)  # prepared as rerank prepares candidate rows
    width, step = min(k, n - m), max(1, min(batch_rows(matrix.shape[1]), batch_rows(n - m)))  # 64 MiB scores
    last = np.where(np.isnan(sims[:, -1]), -np.inf, sims[:, -1]) - MERGE_SLACK
    for start in range(0, m, step):
        block = slice(start, min(m, start + step))
        q = _rows(matrix, block, distance)
        if fresh is None:  # cosine: one matrix product (the new rows are few), candidates by it
            score = q @ new.T
            hit = np.flatnonzero(score.max(axis=1) >= last[block])
            part = np.argpartition(-score[hit], width - 1, axis=1) if width < n - m else None
            candidates = part[:, :width] if part is not None else np.tile(np.arange(n - m), (len(hit), 1))
        else:
            found, candidates = search(fresh, matrix[block], width, distance, num_threads=num_threads)
            hit = np.flatnonzero(np.nan_to_num(found[:, 0], nan=-np.inf) >= last[block])
            candidates = candidates[hit]
        if not hit.size:
            continue
        rows = start + hit
        exact = pair_similarities(q[hit], new, np.maximum(candidates, 0), distance)
        both_sims = np.concatenate([sims[rows], np.where(candidates >= 0, exact, np.nan)], axis=1)
        both_ids = np.concatenate([ids[rows], np.where(candidates >= 0, candidates + m, -1)], axis=1)
        by_id, by_sim = np.where(both_ids < 0, n, both_ids), np.where(np.isnan(both_sims), np.inf, -both_sims)
        order = np.lexsort((by_id, by_sim), axis=1)[:, :k]  # best first, equal similarities by row
        sims[rows] = np.take_along_axis(both_sims, order, 1)
        ids[rows] = np.take_along_axis(both_ids, order, 1)
    return np.concatenate([sims, new_sims]), np.concatenate([ids, new_ids])


def similarity_table(work: WorkDir, manifest: pl.DataFrame, knn: Neighbours, config: GraphConfig = GraphConfig(),
                     threshold: float | None = None) -> pl.DataFrame:
    """Pairs ``from,to,distance`` (manifest indexes, ``from < to``, each pair once, most similar first).

    Byte-identical files (same content hash) are always paired at distance 1.0, even when the
    approximate search missed them.
    """
    sims, ids = knn.as_row_space()
    position = {int(m): r for r, m in enumerate(knn.rows)}
    groups = [[position[i] for i in g if i in position] for g in exact_duplicate_groups(manifest)["indexes"].to_list()]
    pairs = knn_pairs(sims, ids, config.threshold if threshold is None else threshold, groups)
    pairs = _to_manifest(pairs, knn.rows, ("from", "to"))
    return pairs.select(
        pl.min_horizontal("from", "to").alias("from"), pl.max_horizontal("from", "to").alias("to"), "distance",
    ).sort(["distance", "from", "to"], descending=[True, False, False])


def write_similarity(work: WorkDir, manifest: pl.DataFrame, knn: Neighbours, config: GraphConfig = GraphConfig(),
                     ) -> pl.DataFrame:
    """``similarity.csv`` (fastdup's columns) and ``similarity.parquet`` (with file names)."""
    pairs = similarity_table(work, manifest, knn, config)
    write_csv(pairs, work.similarity_csv)
    write_parquet(with_names(pairs, _names(manifest), {"from": "filename_from", "to": "filename_to"}),
                  work.similarity_parquet)
    return pairs


def write_outliers(work: WorkDir, manifest: pl.DataFrame, knn: Neighbours, config: GraphConfig = GraphConfig(),
                   ) -> pl.DataFrame:
    """``outliers.csv`` (``outlier,nearest,distance``, one row per image, most isolated first) and Parquet."""
    sims, ids = knn.as_row_space()
    out = _to_manifest(outliers(sims, ids, config.lower_threshold), knn.rows, ("outlier", "nearest"))
    write_csv(out, work.outliers_csv)
    write_parquet(with_names(out, _names(manifest), {"outlier": "filename_outlier", "nearest": "filename_nearest"}),
                  work.outliers_parquet)
    return out


def write_components(work: WorkDir, manifest: pl.DataFrame, features: FeatureMatrix, knn: Neighbours,
                     config: GraphConfig = GraphConfig()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Components of the graph of pairs at or above ``ccthreshold``, verified with exact similarities."""
    pairs = similarity_table(work, manifest, knn, config, threshold=config.ccthreshold)
    cc, info = connected_components(pairs, knn.rows, config.ccthreshold, features.matrix, config.distance)
    write_csv(cc, work.components_csv)
    write_csv(info, work.components_info_csv)
    write_parquet(with_names(cc, _names(manifest), {"__id": "filename"}), work.components_parquet)
    return cc, info


def write_ranks(work: WorkDir, manifest: pl.DataFrame, knn: Neighbours, config: GraphConfig = GraphConfig(),
                ) -> pl.DataFrame:
    """PageRank and degree of every image in the graph of pairs at or above ``threshold``."""
    pairs = similarity_table(work, manifest, knn, config)
    ranks = pagerank_degree(pairs, knn.rows, config.threshold)
    if not config.run_pagerank:
        ranks = ranks.drop("pagerank")
    if not config.run_degree:
        ranks = ranks.drop("degree", "weighted_degree")
    write_parquet(with_names(ranks, _names(manifest), {"__id": "filename"}), work.ranks_parquet)
    return ranks


def cross_similarity(
    work: WorkDir, manifest: pl.DataFrame, train: FeatureMatrix, test_work: WorkDir, test: FeatureMatrix,
    config: GraphConfig = GraphConfig(), num_threads: int | None = None, out: WorkDir | None = None,
) -> pl.DataFrame:
    """Pairs between new images (``from``: test manifest index) and the images indexed in ``work`` (``to``).

    Written to ``cross_similarity.csv`` / ``.parquet`` in ``out`` (default ``work``): the train/test
    leakage table.
    """
    out = out or work
    config = config.resolved(*train.matrix.shape)
    index = open_index(work, train.matrix, config)
    k = min(config.nearest_neighbors_k, max(index.ntotal, 1))
    if test.matrix.shape[0]:  # exact similarities with an approximate index, as in find_neighbours
        sims, ids = search_queries(index, train.matrix, test.matrix, k, config.faiss_mode, config.distance,
                                   num_threads)
    else:  # every new file was bad: no pairs
        sims, ids = np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    train_rows = train.index["index"].to_numpy()
    test_rows = np.broadcast_to(test.index["index"].to_numpy()[:, None], ids.shape)
    keep = (ids >= 0) & (sims >= config.threshold)
    pairs = pl.DataFrame({"from": test_rows[keep], "to": train_rows[ids[keep]], "distance": sims[keep]}).sort(
        ["distance", "from", "to"], descending=[True, False, False])
    test_names = _names(pl.read_parquet(test_work.manifest)).rename({"index": "from", "filename": "filename_from"})
    named = pairs.join(test_names, on="from", how="left").join(
        _names(manifest).rename({"index": "to", "filename": "filename_to"}), on="to", how="left")
    write_csv(pairs, out.cross_similarity_csv)
    write_parquet(named, out.cross_similarity_parquet)
    return named
