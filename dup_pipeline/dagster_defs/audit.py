"""Run a dataset's assets in this process, in order: manifest, every range, dataset tables, similarity.

For tests, notebooks and scripts; the Dagster UI and daemon do the same with runs and backfills.
"""

import dagster as dg


def materialize_dataset(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance) -> list[str]:
    """Materialize ``dataset`` end to end; return the partition keys it ran. Raises on failure."""
    defs.resolve_job_def(f"{dataset}_manifest_job").execute_in_process(instance=instance)
    keys = list(instance.get_dynamic_partitions(f"{dataset}_offset_ranges"))
    ranges_job = defs.resolve_job_def(f"{dataset}_scan_ranges_job")
    for key in keys:
        ranges_job.execute_in_process(instance=instance, partition_key=key)
    defs.resolve_job_def(f"{dataset}_tables_job").execute_in_process(instance=instance)
    defs.resolve_job_def(f"{dataset}_similarity_job").execute_in_process(instance=instance)
    return keys
