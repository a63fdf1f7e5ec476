"""The code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

import dagster as dg

from dup_pipeline.dagster_defs.automation import (
    build_audit_job,
    build_audit_schedule,
    build_new_images_sensor,
)
from dup_pipeline.dagster_defs.checks import build_checks
from dup_pipeline.dagster_defs.datasets import datasets_from_environment
from dup_pipeline.dagster_defs.executors import executor_from_environment
from dup_pipeline.dagster_defs.graph_assets import build_graph_assets
from dup_pipeline.dagster_defs.label_assets import build_label_assets
from dup_pipeline.dagster_defs.report_assets import build_report_asset
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import (
    build_scan_assets,
    range_partitions,
    resource_key,
)


def build_dataset_definitions(name: str, dataset: DatasetResource) -> dg.Definitions:
    """Assets, jobs and resources auditing one dataset (asset keys and group named after it)."""
    assets = build_scan_assets(name) + build_graph_assets(name, dataset.compare_to)
    if dataset.has_labels:
        assets += build_label_assets(name)
    assets.append(build_report_asset(name, dataset.has_labels))
    manifest = dg.AssetSelection.assets([name, "file_manifest"])
    ranges = dg.AssetSelection.assets([name, "bad_files"], [name, "image_stats"], [name, "features"])
    index = dg.AssetSelection.assets([name, "faiss_index"])
    graph = index | dg.AssetSelection.assets([name, "similarity"], [name, "outliers"], [name, "components"],
                                             [name, "pagerank_degree"])
    if dataset.has_labels:
        graph = graph | dg.AssetSelection.assets([name, "label_issues"], [name, "leakage"])
    graph = graph | dg.AssetSelection.assets([name, "report"])
    tables = dg.AssetSelection.assets([name, "dataset_bad_files"], [name, "dataset_image_stats"],
                                      [name, "feature_matrix"])
    jobs = [
        dg.define_asset_job(f"{name}_manifest_job", selection=manifest,
                            description="Scan the input and register the offset-range partitions."),
        dg.define_asset_job(f"{name}_scan_ranges_job", selection=ranges, partitions_def=range_partitions(name),
                            description="Decode one offset range once: bad files, image statistics and embeddings."),
        dg.define_asset_job(f"{name}_tables_job", selection=tables,
                            description="Assemble dataset-wide tables, fastdup CSVs and the feature matrix from the ranges."),
        dg.define_asset_job(f"{name}_similarity_job", selection=graph,
                            description="Run mode 2: index, similarity, outliers, components and pagerank from "
                            "the existing features (no decoding)."),
        dg.define_asset_job(f"{name}_similarity_existing_index_job", selection=graph - index,
                            description="Run mode 4: similarity, outliers, components and pagerank from the "
                            "existing features and the existing index."),
    ]
    if dataset.compare_to:
        jobs.append(dg.define_asset_job(
            f"{name}_cross_similarity_job", selection=dg.AssetSelection.assets([name, "cross_similarity"]),
            description=f"Run mode 3: search {name}'s features in {dataset.compare_to}'s index."))
    audit_job = build_audit_job(name, dataset.compare_to)
    jobs.append(audit_job)
    return dg.Definitions(
        assets=assets, asset_checks=build_checks(name, dataset), jobs=jobs,
        schedules=[build_audit_schedule(name, dataset, audit_job)],
        sensors=[build_new_images_sensor(name, audit_job)],
        resources={resource_key(name): dataset},
    )


def build_definitions(datasets: dict[str, DatasetResource], executor: dg.ExecutorDefinition | None = None,
                      ) -> dg.Definitions:
    """One code location auditing every dataset side by side."""
    merged = dg.Definitions.merge(*(build_dataset_definitions(n, d) for n, d in datasets.items()))
    return dg.Definitions.merge(merged, dg.Definitions(executor=executor or executor_from_environment()))


defs = build_definitions(datasets_from_environment())
