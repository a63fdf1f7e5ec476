"""Asset checks: bad files, duplicates, isolated images, wrong labels and leakage against limits."""

import json

import dagster as dg
import numpy as np
import polars as pl

from dup_pipeline.core.label_issues import label_error_rate
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import dataset_resource, resource_key


def _result(ds: DatasetResource, name: str, value: float, limit: float, **metadata: object) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if name in ds.failing_checks else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(passed=bool(value <= limit), severity=severity,
                               metadata={name: value, "limit": limit, **metadata})


def build_checks(dataset: str, settings: DatasetResource) -> list[dg.AssetChecksDefinition]:
    """The checks of one dataset (label checks only when it has labels)."""
    key = {resource_key(dataset)}
    blocking = settings.blocking_checks

    @dg.asset_check(asset=dg.AssetKey([dataset, "dataset_bad_files"]), name="bad_fraction", blocking=blocking,
                    required_resource_keys=key, description="Bad files / all files <= max_bad_fraction.")
    def bad_fraction(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        ds = dataset_resource(context, dataset)
        work = ds.workdir()
        files = pl.scan_parquet(work.manifest).select(pl.len()).collect().item()
        bad = pl.read_parquet(work.bad_files_parquet)
        return _result(ds, "bad_fraction", bad.height / max(files, 1), ds.max_bad_fraction, bad_files=bad.height,
                       files=files)

    @dg.asset_check(asset=dg.AssetKey([dataset, "similarity"]), name="duplicate_fraction", blocking=blocking,
                    required_resource_keys=key,
                    description="Images in similar pairs (>= threshold) / images <= max_duplicate_fraction.")
    def duplicate_fraction(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        ds = dataset_resource(context, dataset)
        work = ds.workdir()
        pairs = pl.read_csv(work.similarity_csv)
        images = json.loads(work.features_meta.read_text())["count"]
        involved = len(set(pairs["from"].to_list()) | set(pairs["to"].to_list()))
        return _result(ds, "duplicate_fraction", involved / max(images, 1), ds.max_duplicate_fraction,
                       images_in_pairs=involved, pairs=pairs.height)

    @dg.asset_check(asset=dg.AssetKey([dataset, "outliers"]), name="isolated_fraction", blocking=blocking,
                    required_resource_keys=key,
                    description="Images whose nearest neighbour is below isolation_similarity / images "
                    "<= max_isolated_fraction.")
    def isolated_fraction(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        ds = dataset_resource(context, dataset)
        knn = np.load(ds.workdir().knn)
        rows, sims, ids = knn["rows"], knn["sims"], knn["ids"]
        others = np.where((ids >= 0) & (ids != rows[:, None]), sims, -np.inf)
        nearest = others.max(axis=1) if others.size else np.empty(0)
        isolated = int((nearest < ds.isolation_similarity).sum())
        return _result(ds, "isolated_fraction", isolated / max(len(rows), 1), ds.max_isolated_fraction,
                       isolated_images=isolated, isolation_similarity=ds.isolation_similarity)

    checks = [bad_fraction, duplicate_fraction, isolated_fraction]
    if settings.has_labels:
        @dg.asset_check(asset=dg.AssetKey([dataset, "label_issues"]), name="label_error_rate", blocking=blocking,
                        required_resource_keys=key,
                        description="Likely wrong labels / judged labeled images <= max_label_error_rate.")
        def label_error(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            ds = dataset_resource(context, dataset)
            issues = pl.read_parquet(ds.workdir().label_issues_parquet)
            return _result(ds, "label_error_rate", label_error_rate(issues), ds.max_label_error_rate,
                           likely_wrong=int((issues["status"] == "wrong").sum()))

        @dg.asset_check(asset=dg.AssetKey([dataset, "leakage"]), name="leakage_pairs", blocking=blocking,
                        required_resource_keys=key,
                        description="Near-duplicate pairs across splits <= max_leakage_pairs.")
        def leakage_pairs(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            ds = dataset_resource(context, dataset)
            pairs = pl.read_csv(ds.workdir().leakage_csv)
            return _result(ds, "leakage_pairs", pairs.height, ds.max_leakage_pairs)

        checks += [label_error, leakage_pairs]
    return checks
