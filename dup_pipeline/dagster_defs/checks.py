"""Asset checks: bad files, duplicates, isolated images, wrong labels and leakage against limits.

Each check is a plain function of the dataset's resource returning a ``dg.AssetCheckResult``; the
``@asset_check`` definitions (asset jobs) and the audit job (``evaluate_checks``) both call them.
"""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


def images_in_pairs(pairs: pl.DataFrame) -> int:
    """Distinct images appearing in a ``from,to`` pair table."""
    return len(set(pairs["from"].to_list()) | set(pairs["to"].to_list()))


def _image_count(ds: DatasetResource) -> int:
    meta = ds.workdir().features_meta
    return json.loads(meta.read_text())["count"] if meta.exists() else 0


def bad_fraction(ds: DatasetResource) -> dg.AssetCheckResult:
    work = ds.workdir()
    files = pl.scan_parquet(work.manifest).select(pl.len()).collect().item()
    bad = pl.read_parquet(work.bad_files_parquet)
    return _result(ds, "bad_fraction", bad.height / max(files, 1), ds.max_bad_fraction, bad_files=bad.height,
                   files=files)


def duplicate_fraction(ds: DatasetResource) -> dg.AssetCheckResult:
    work = ds.workdir()
    images = _image_count(ds)
    pairs = pl.read_csv(work.similarity_csv) if images else pl.DataFrame({"from": [], "to": []})
    involved = images_in_pairs(pairs)
    return _result(ds, "duplicate_fraction", involved / max(images, 1), ds.max_duplicate_fraction,
                   images_in_pairs=involved, pairs=pairs.height)


def isolated_fraction(ds: DatasetResource) -> dg.AssetCheckResult:
    isolated = images = 0
    if _image_count(ds):  # no vectors: no knn.npz (see graph_assets.faiss_index)
        knn = np.load(ds.workdir().knn)
        rows, sims, ids = knn["rows"], knn["sims"], knn["ids"]
        others = np.where((ids >= 0) & (ids != rows[:, None]), sims, -np.inf)
        nearest = others.max(axis=1) if others.size else np.empty(0)
        isolated, images = int((nearest < ds.isolation_similarity).sum()), len(rows)
    return _result(ds, "isolated_fraction", isolated / max(images, 1), ds.max_isolated_fraction,
                   isolated_images=isolated, isolation_similarity=ds.isolation_similarity)


def label_error(ds: DatasetResource) -> dg.AssetCheckResult:
    issues = pl.read_parquet(ds.workdir().label_issues_parquet)
    return _result(ds, "label_error_rate", label_error_rate(issues), ds.max_label_error_rate,
                   likely_wrong=int((issues["status"] == "wrong").sum()))


def leakage_pairs(ds: DatasetResource) -> dg.AssetCheckResult:
    pairs = pl.read_csv(ds.workdir().leakage_csv)
    return _result(ds, "leakage_pairs", pairs.height, ds.max_leakage_pairs)


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


def evaluate_checks(dataset: str, ds: DatasetResource, assets: Iterable[str]) -> list[dg.AssetCheckEvaluation]:
    """Evaluations of the dataset's checks whose asset is in ``assets`` (for ops such as the audit)."""
    produced = set(assets)
    evaluations = []
    for check in dataset_checks(ds):
        if check.asset not in produced:
            continue
        result = check.evaluate(ds)
        evaluations.append(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey([dataset, check.asset]), check_name=check.name, passed=result.passed,
            metadata=result.metadata, severity=result.severity, blocking=ds.blocking_checks))
    return evaluations


def blocking_failures(ds: DatasetResource, evaluations: Iterable[dg.AssetCheckEvaluation]) -> list[str]:
    """Names of the failed ERROR-severity checks when the dataset's checks are blocking (else none)."""
    if not ds.blocking_checks:
        return []
    return [e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
