"""Definitions of the configured datasets: assets, checks, jobs, schedule and sensor per dataset
(``location.py`` is the code location that ``workspace.yaml`` loads)."""

import dagster as dg

from dup_pipeline.core.stages import STAGES
from dup_pipeline.dagster_defs.automation import build_audit_job, build_audit_schedule, build_new_images_sensor
from dup_pipeline.dagster_defs.checks import build_checks
from dup_pipeline.dagster_defs.executors import executor_from_environment
from dup_pipeline.dagster_defs.graph_assets import build_cross_asset
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import build_scan_assets, resource_key
from dup_pipeline.dagster_defs.stage_assets import build_stage_assets


def _assets(name: str, stage_names: list[str], dataset: DatasetResource) -> dg.AssetSelection:
    outputs = [o for s in STAGES if s.name in stage_names and (dataset.has_labels or not s.needs_labels)
               for o in s.outputs]
    return dg.AssetSelection.assets(*([name, o] for o in outputs))


def build_dataset_definitions(name: str, dataset: DatasetResource) -> dg.Definitions:
    """Assets, jobs, schedule, sensor and resources auditing one dataset (keys and group named after it)."""
    assets = build_scan_assets(name) + build_stage_assets(name, dataset)
    if dataset.compare_to:
        assets.append(build_cross_asset(name, dataset.compare_to))
    graph = [s.name for s in STAGES if s.needs_vectors] + ["report"]
    jobs = [
        dg.define_asset_job(f"{name}_manifest_job", selection=_assets(name, ["file_manifest"], dataset),
                            description="Scan the input and register the offset-range partitions."),
        dg.define_asset_job(f"{name}_scan_ranges_job",
                            selection=dg.AssetSelection.assets([name, "bad_files"], [name, "image_stats"],
                                                               [name, "features"]),
                            description="Decode offset ranges once: bad files, image statistics and embeddings."),
        dg.define_asset_job(f"{name}_tables_job",
                            selection=_assets(name, ["dataset_tables", "image_issues", "feature_matrix"],
                                              dataset),
                            description="Dataset-wide tables, fastdup CSVs, image issues and the feature matrix "
                            "from the ranges."),
        dg.define_asset_job(f"{name}_similarity_job", selection=_assets(name, graph, dataset),
                            description="Run mode 2: index, similarity, outliers, components, pagerank, labels and "
                            "the report from the existing features (no decoding)."),
        dg.define_asset_job(f"{name}_similarity_existing_index_job",
                            selection=_assets(name, [g for g in graph if g != "faiss_index"], dataset),
                            description="Run mode 4: the similarity stage from the existing features and index."),
        build_audit_job(name),
    ]
    if dataset.compare_to:
        jobs.append(dg.define_asset_job(
            f"{name}_cross_similarity_job", selection=dg.AssetSelection.assets([name, "cross_similarity"]),
            description=f"Run mode 3: search {name}'s features in {dataset.compare_to}'s index."))
    return dg.Definitions(
        assets=assets, asset_checks=build_checks(name, dataset), jobs=jobs,
        schedules=[build_audit_schedule(name, dataset)], sensors=[build_new_images_sensor(name)],
        resources={resource_key(name): dataset},
    )


def build_definitions(datasets: dict[str, DatasetResource], executor: dg.ExecutorDefinition | None = None,
                      ) -> dg.Definitions:
    """One code location auditing every dataset side by side."""
    merged = dg.Definitions.merge(*(build_dataset_definitions(n, d) for n, d in datasets.items()))
    return dg.Definitions.merge(merged, dg.Definitions(executor=executor or executor_from_environment()))

