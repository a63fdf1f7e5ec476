"""Materialize a dataset's assets in this process, as an audit run does (for tests, notebooks, scripts)."""

import dagster as dg

from dup_pipeline.dagster_defs.automation import audit_request


def materialize_dataset(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance) -> list[str]:
    """Register the manifest's partitions, then run ``<dataset>_audit_job`` over all of them; return the
    partition keys. Raises on failure."""
    defs.resolve_job_def(f"{dataset}_manifest_job").execute_in_process(instance=instance)
    keys = list(instance.get_dynamic_partitions(f"{dataset}_offset_ranges"))
    defs.resolve_job_def(f"{dataset}_audit_job").execute_in_process(instance=instance,
                                                                     tags=audit_request(dataset, keys).tags)
    return keys
