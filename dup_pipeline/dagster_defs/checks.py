"""Asset checks: bad files, duplicates, isolated images, wrong labels and leakage against limits.

Each check is a plain function of the dataset's resource returning a ``dg.AssetCheckResult``; most
read the measure from the checked stage's own summary (``core/stages.py``), so a check and the
asset's metadata always agree. Every run that materializes the checked asset (a manual
materialization or an audit) evaluates its checks.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import numpy as np

from dup_pipeline.core.stages import BY_NAME, StageContext
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import dataset_resource, resource_key


def _result(ds: DatasetResource, name: str, value: float, limit: float, **metadata: object) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if name in ds.failing_checks else dg.AssetCheckSeverity.WARN
    passed = bool(value <= limit)
    if not passed and name in ds.expected_failures:
        metadata["expected"] = "fails on purpose: this dataset plants the problem (expected_failures)"
    return dg.AssetCheckResult(passed=passed, severity=severity, metadata={name: value, "limit": limit, **metadata})


def _measure(ds: DatasetResource, stage: str) -> dict:
    """The checked stage's summary metrics, as its asset's metadata shows them."""
    return BY_NAME[stage].describe(StageContext(ds.pipeline_config()))[0].metrics


def _vector_count(ds: DatasetResource) -> int:
    work = ds.workdir()
    return StageContext(ds.pipeline_config()).features.matrix.shape[0] if work.features_meta.exists() else 0


def bad_fraction(ds: DatasetResource) -> dg.AssetCheckResult:
    m = _measure(ds, "dataset_tables")
    return _result(ds, "bad_fraction", m["bad_fraction"], ds.max_bad_fraction, bad_files=m["bad_files"],
                   files=m["files"])


def duplicate_fraction(ds: DatasetResource) -> dg.AssetCheckResult:
    m = _measure(ds, "similarity")
    return _result(ds, "duplicate_fraction", m["duplicate_fraction"], ds.max_duplicate_fraction,
                   images_in_pairs=m["images_in_pairs"], pairs=m["pairs"])


def isolated_fraction(ds: DatasetResource) -> dg.AssetCheckResult:
    isolated = images = 0
    if _vector_count(ds):  # no vectors: no knn.npz
        knn = np.load(ds.workdir().knn)
        rows, sims, ids = knn["rows"], knn["sims"], knn["ids"]
        others = np.where((ids >= 0) & (ids != rows[:, None]), sims, -np.inf)
        nearest = others.max(axis=1) if others.size else np.empty(0)
        isolated, images = int((nearest < ds.isolation_similarity).sum()), len(rows)
    return _result(ds, "isolated_fraction", isolated / max(images, 1), ds.max_isolated_fraction,
                   isolated_images=isolated, isolation_similarity=ds.isolation_similarity)


def label_error(ds: DatasetResource) -> dg.AssetCheckResult:
    m = _measure(ds, "label_issues")
    return _result(ds, "label_error_rate", m.get("label_error_rate", 0.0), ds.max_label_error_rate,
                   likely_wrong=m["likely_wrong"])


def leakage_pairs(ds: DatasetResource) -> dg.AssetCheckResult:
    return _result(ds, "leakage_pairs", _measure(ds, "leakage")["pairs_across_splits"], ds.max_leakage_pairs)


@dataclass(frozen=True)
class Check:
    name: str
    asset: str  # the checked asset, within the dataset's prefix
    evaluate: Callable[[DatasetResource], dg.AssetCheckResult]
    description: str
    needs_labels: bool = False


CHECKS = (
    Check("bad_fraction", "dataset_bad_files", bad_fraction, "Bad files / all files <= max_bad_fraction."),
    Check("duplicate_fraction", "similarity", duplicate_fraction,
          "Images in similar pairs (>= threshold) / images <= max_duplicate_fraction."),
    Check("isolated_fraction", "outliers", isolated_fraction,
          "Images whose nearest neighbour is below isolation_similarity / images <= max_isolated_fraction."),
    Check("label_error_rate", "label_issues", label_error,
          "Likely wrong labels / judged labeled images <= max_label_error_rate.", needs_labels=True),
    Check("leakage_pairs", "leakage", leakage_pairs, "Near-duplicate pairs across splits <= max_leakage_pairs.",
          needs_labels=True),
)


def dataset_checks(settings: DatasetResource) -> list[Check]:
    """The checks that apply to a dataset (label checks only when it has labels)."""
    return [c for c in CHECKS if settings.has_labels or not c.needs_labels]


def _asset_check(dataset: str, check: Check, blocking: bool) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=dg.AssetKey([dataset, check.asset]), name=check.name, blocking=blocking,
                    required_resource_keys={resource_key(dataset)}, description=check.description)
    def run_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return check.evaluate(dataset_resource(context, dataset))

    return run_check


def build_checks(dataset: str, settings: DatasetResource) -> list[dg.AssetChecksDefinition]:
    """The checks of one dataset as asset checks (label checks only when it has labels)."""
    return [_asset_check(dataset, c, settings.blocking_checks) for c in dataset_checks(settings)]
