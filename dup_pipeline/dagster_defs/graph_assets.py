"""Assets of the similarity stage: faiss index, similarity pairs, outliers, components, pagerank/degree."""

import dagster as dg
import numpy as np
import polars as pl

from dup_pipeline.core.features import load_features
from dup_pipeline.core.similarity import (
    GRAPH_VERSION,
    Neighbours,
    cross_similarity,
    find_neighbours,
    update_index,
    write_components,
    write_outliers,
    write_ranks,
    write_similarity,
)
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.checks import images_in_pairs
from dup_pipeline.dagster_defs.metadata import file_metadata, markdown_table
from dup_pipeline.dagster_defs.scan_assets import OWNERS, dataset_resource, resource_key


def build_graph_assets(dataset: str, compare_to: str | None = None) -> list[dg.AssetsDefinition]:
    """The similarity-stage assets of one dataset (and its cross-set asset when ``compare_to`` is set)."""
    key = resource_key(dataset)
    matrix_key = dg.AssetKey([dataset, "feature_matrix"])
    index_key = dg.AssetKey([dataset, "faiss_index"])
    similarity_key = dg.AssetKey([dataset, "similarity"])
    common = {"group_name": dataset, "owners": OWNERS, "code_version": GRAPH_VERSION, "required_resource_keys": {key}}

    def inputs(context: dg.AssetExecutionContext):
        ds = dataset_resource(context, dataset)
        config = ds.pipeline_config()
        work = ds.workdir()
        return config, work, pl.read_parquet(work.manifest), load_features(work)

    def neighbours(context: dg.AssetExecutionContext):
        """Inputs and the kNN (empty when the dataset has no good images, so the tables are written empty)."""
        config, work, manifest, features = inputs(context)
        if not features.matrix.shape[0]:
            context.log.warning(f"{dataset} has no good images (no vectors): writing empty tables")
            knn = Neighbours(np.empty(0, np.int64), np.empty((0, 1), np.float32), np.empty((0, 1), np.int64), "")
        else:
            knn = find_neighbours(work, manifest, features, config.graph, config.threads)
        return config, work, manifest, features, knn

    def skipped(context: dg.AssetExecutionContext, features, *outputs, **metadata) -> dg.MaterializeResult | None:
        """With no vectors there is no graph: remove stale ``outputs`` and say so (else None)."""
        if features.matrix.shape[0]:
            return None
        for path in outputs:
            path.unlink(missing_ok=True)
        context.log.warning(f"{dataset} has no good images (no vectors): {context.asset_key.to_user_string()} skipped")
        return dg.MaterializeResult(metadata={**metadata, "skipped": "no vectors: the dataset has no good images"})

    @dg.asset(key=index_key, deps=[matrix_key], kinds={"faiss"}, **common,
              description="faiss index over the feature matrix (faiss.index): built with index_factory(faiss_mode), "
              "extended in place when images are appended, rebuilt when features or parameters change.")
    @holding_work_dir(dataset)
    def faiss_index(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        config, work, _, features = inputs(context)
        if empty := skipped(context, features, work.faiss_index, work.index_meta, work.knn_meta, vectors=0,
                            added_this_run=0):
            return empty
        index, added = update_index(work, features, config.graph, config.threads)
        return dg.MaterializeResult(metadata={
            "vectors": index.ntotal, "added_this_run": added, "faiss_mode": config.graph.faiss_mode,
            "distance": config.graph.distance, **file_metadata(work.faiss_index)})

    def table_metadata(features, count: str, rows: int, fraction: str, fraction_of: int, parquet, csv) -> dict:
        return {count: rows, fraction: fraction_of / max(features.matrix.shape[0], 1),
                "preview": markdown_table(pl.read_parquet(parquet)), "csv": dg.MetadataValue.path(str(csv)),
                **file_metadata(parquet)}

    @dg.asset(key=similarity_key, deps=[index_key], kinds={"parquet", "csv"}, **common,
              description="Pairs of similar images (similarity >= threshold), each pair once, most similar first: "
              "similarity.csv (from,to,distance; fastdup's shape) and similarity.parquet (with file names). "
              "Byte-identical files are always included.")
    @holding_work_dir(dataset)
    def similarity(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        config, work, manifest, features, knn = neighbours(context)
        pairs = write_similarity(work, manifest, knn, config.graph)
        images = images_in_pairs(pairs)
        return dg.MaterializeResult(metadata={
            "images_in_pairs": images, "threshold": config.graph.threshold,
            **table_metadata(features, "pairs", pairs.height, "duplicate_fraction", images,
                             work.similarity_parquet, work.similarity_csv)})

    @dg.asset(key=[dataset, "outliers"], deps=[index_key], kinds={"parquet", "csv"}, **common,
              description="Images whose nearest neighbour is weakest (lowest lower_threshold fraction), one row per "
              "image: outliers.csv (outlier,nearest,distance) and outliers.parquet.")
    @holding_work_dir(dataset)
    def outliers(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        config, work, manifest, features, knn = neighbours(context)
        out = write_outliers(work, manifest, knn, config.graph)
        return dg.MaterializeResult(metadata=table_metadata(
            features, "outliers", out.height, "outlier_fraction", out.height, work.outliers_parquet, work.outliers_csv))

    @dg.asset(key=[dataset, "components"], deps=[similarity_key], kinds={"scipy", "csv"}, **common,
              description="Connected components of the graph of pairs >= ccthreshold, verified with exact "
              "similarities (min_exact_similarity): connected_components.csv and components_info.csv.")
    @holding_work_dir(dataset)
    def components(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        config, work, manifest, features, knn = neighbours(context)
        if empty := skipped(context, features, work.components_csv, work.components_info_csv,
                            work.components_parquet):
            return empty
        _, info = write_components(work, manifest, features, knn, config.graph)
        groups = info.filter(pl.col("count") > 1)
        return dg.MaterializeResult(metadata={
            "components_with_2_or_more": groups.height, "largest": int(info["count"].max() or 0),
            "preview": markdown_table(groups.sort("count", descending=True)),
            "info_csv": dg.MetadataValue.path(str(work.components_info_csv)),
            **file_metadata(work.components_csv)})

    @dg.asset(key=[dataset, "pagerank_degree"], deps=[similarity_key], kinds={"scipy", "parquet"}, **common,
              description="PageRank and degree of every image in the similarity graph (pagerank_degree.parquet).")
    @holding_work_dir(dataset)
    def pagerank_degree(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        config, work, manifest, features, knn = neighbours(context)
        if empty := skipped(context, features, work.ranks_parquet):
            return empty
        ranks = write_ranks(work, manifest, knn, config.graph)
        order = "pagerank" if "pagerank" in ranks.columns else ranks.columns[-1]
        return dg.MaterializeResult(metadata={
            "images": ranks.height, "preview": markdown_table(ranks.sort(order, descending=True)),
            **file_metadata(work.ranks_parquet)})

    assets = [faiss_index, similarity, outliers, components, pagerank_degree]
    if compare_to:
        other_key = resource_key(compare_to)

        @dg.asset(key=[dataset, "cross_similarity"], deps=[matrix_key, dg.AssetKey([compare_to, "faiss_index"])],
                  group_name=dataset, owners=OWNERS, code_version=GRAPH_VERSION, kinds={"faiss", "csv"},
                  required_resource_keys={key, other_key},
                  description=f"Images of {dataset} that duplicate or nearly duplicate images of {compare_to} "
                  "(run mode 3, the train/test leakage check): cross_similarity.csv in this dataset's work_dir.")
        @holding_work_dir(dataset)
        def cross(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            config, work, _, features = inputs(context)
            reference = dataset_resource(context, compare_to)
            ref_work = reference.workdir()
            pairs = cross_similarity(ref_work, pl.read_parquet(ref_work.manifest), load_features(ref_work), work,
                                     features, config.graph, config.threads, out=work)
            return dg.MaterializeResult(metadata={
                "pairs": pairs.height, "images_with_a_match": pairs["from"].n_unique(),
                "preview": markdown_table(pairs), **file_metadata(work.cross_similarity_csv)})

        assets.append(cross)
    return assets
