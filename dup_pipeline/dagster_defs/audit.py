"""Materialize a dataset's assets in this process, as an audit run does (for tests, notebooks, scripts)."""

import dagster as dg

from dup_pipeline.dagster_defs.automation import audit_request, register_partitions
from dup_pipeline.dagster_defs.scan_assets import resource_key


def materialize_dataset(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance) -> list[str]:
    """Register the partitions the dataset needs, then run ``<dataset>_audit_job`` over all of them (as the
    schedule does); return the partition keys. Raises on failure."""
    keys = register_partitions(instance, dataset, defs.resources[resource_key(dataset)])
    defs.resolve_job_def(f"{dataset}_audit_job").execute_in_process(instance=instance,
                                                                     tags=audit_request(dataset, keys).tags)
    return keys
