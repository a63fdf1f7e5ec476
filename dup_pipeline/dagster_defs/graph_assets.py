"""The cross-set asset: a dataset's images searched in another dataset's index (run mode 3)."""

import dagster as dg
import polars as pl

from dup_pipeline.core.features import load_features
from dup_pipeline.core.similarity import GRAPH_VERSION, cross_similarity
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.metadata import file_metadata, markdown_table
from dup_pipeline.dagster_defs.scan_assets import OWNERS, dataset_resource, resource_key


def build_cross_asset(dataset: str, compare_to: str) -> dg.AssetsDefinition:
    """``<dataset>/cross_similarity``: which images of ``dataset`` duplicate images of ``compare_to``."""

    @dg.asset(key=[dataset, "cross_similarity"], deps=[[dataset, "feature_matrix"], [compare_to, "faiss_index"]],
              group_name=dataset, owners=OWNERS, code_version=GRAPH_VERSION, kinds={"faiss", "csv"},
              required_resource_keys={resource_key(dataset), resource_key(compare_to)}, output_required=False,
              description=f"Images of {dataset} that duplicate or nearly duplicate images of {compare_to} "
              "(run mode 3, the train/test leakage check): cross_similarity.csv in this dataset's work_dir. "
              f"Not materialized while {compare_to} has no index or {dataset} no good images.")
    @holding_work_dir(dataset)
    def cross(context: dg.AssetExecutionContext):
        ds = dataset_resource(context, dataset)
        config, work = ds.pipeline_config(), ds.workdir()
        ref_work = dataset_resource(context, compare_to).workdir()
        if not ref_work.faiss_index.exists():
            context.log.warning(f"cross_similarity not computed: {compare_to} has no faiss index yet "
                                f"({ref_work.faiss_index}); materialize {compare_to} first")
            return
        features = load_features(work)
        if not features.matrix.shape[0]:
            context.log.warning(f"cross_similarity not computed: {dataset} has no good images")
            return
        pairs = cross_similarity(ref_work, pl.read_parquet(ref_work.manifest), load_features(ref_work), work,
                                 features, config.graph, config.threads, out=work)
        yield dg.Output(None, metadata={
            "pairs": pairs.height, "images_with_a_match": pairs["from"].n_unique(), "compare_to": compare_to,
            "preview": markdown_table(pairs), **file_metadata(work.cross_similarity_csv)})

    return cross
