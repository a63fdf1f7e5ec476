"""Assets of the label stage: wrong labels and split leakage (built when a dataset has labels)."""

import dagster as dg
import polars as pl

from dup_pipeline.core.features import load_features
from dup_pipeline.core.label_issues import (
    label_error_rate,
    write_label_issues,
    write_leakage,
)
from dup_pipeline.core.pipeline import store_labels
from dup_pipeline.core.similarity import GRAPH_VERSION, find_neighbours
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.metadata import file_metadata, markdown_table
from dup_pipeline.dagster_defs.scan_assets import OWNERS, dataset_resource, resource_key


def build_label_assets(dataset: str) -> list[dg.AssetsDefinition]:
    """``label_issues`` and ``leakage`` for one dataset."""
    common = {"group_name": dataset, "owners": OWNERS, "code_version": GRAPH_VERSION,
              "required_resource_keys": {resource_key(dataset)}}

    @dg.asset(key=[dataset, "label_issues"], deps=[[dataset, "similarity"], [dataset, "file_manifest"]],
              kinds={"parquet", "csv"}, **common,
              description="For every labeled image, how likely its label is wrong (similarity-weighted vote of its "
              "neighbours' labels), the suggested label and a status (ok / wrong / ambiguous / unsupported): "
              "label_issues.parquet, mislabels.csv (wrong, highest score first), label_conflicts.csv.")
    @holding_work_dir(dataset)
    def label_issues(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        ds = dataset_resource(context, dataset)
        config, work = ds.pipeline_config(), ds.workdir()
        manifest = pl.read_parquet(work.manifest)
        labels = store_labels(config, work, manifest)
        features = load_features(work)
        if not features.matrix.shape[0]:
            context.log.warning("no good images: no label can be judged")
            return dg.MaterializeResult(metadata={"labeled": labels.height, "skipped": "no good images"})
        knn = find_neighbours(work, manifest, features, config.graph, config.threads)
        issues, conflicts = write_label_issues(work, manifest, knn, pl.read_parquet(work.similarity_parquet), labels,
                                               config.label_config)
        wrong = issues.filter(pl.col("status") == "wrong")
        return dg.MaterializeResult(metadata={
            "labeled": issues.height, "likely_wrong": wrong.height,
            "ambiguous": int((issues["status"] == "ambiguous").sum()),
            "label_error_rate": label_error_rate(issues), "label_conflicts": conflicts.height,
            "preview": markdown_table(wrong.drop("neighbours")),
            "csv": dg.MetadataValue.path(str(work.mislabels_csv)), **file_metadata(work.label_issues_parquet)})

    @dg.asset(key=[dataset, "leakage"], deps=[[dataset, "label_issues"], [dataset, "components"]],
              kinds={"csv"}, **common,
              description="Near-duplicate pairs whose images are in different splits (e.g. a test image that "
              "copies a training image) and components spanning splits: leakage.csv, leakage_components.parquet.")
    @holding_work_dir(dataset)
    def leakage(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        ds = dataset_resource(context, dataset)
        work = ds.workdir()
        if not work.similarity_parquet.exists():
            return dg.MaterializeResult(metadata={"skipped": "no similarity table (no good images)"})
        manifest = pl.read_parquet(work.manifest)
        components = pl.read_parquet(work.components_parquet) if work.components_parquet.exists() else None
        crossing, spanning = write_leakage(work, manifest, pl.read_parquet(work.similarity_parquet),
                                           pl.read_parquet(work.labels_parquet), components)
        return dg.MaterializeResult(metadata={
            "pairs_across_splits": crossing.height, "components_across_splits": spanning.height,
            "preview": markdown_table(crossing), **file_metadata(work.leakage_csv)})

    return [label_issues, leakage]
