"""The audit: an asset job over the dataset's own assets, started by a schedule or by the new-images sensor.

An audit run materializes exactly the assets a manual "Materialize" does (same stages, same
metadata, asset checks evaluated), over every offset-range partition at once: the range step
decodes only stale ranges and each partition records whether it was reused, and dataset-level
assets whose inputs did not change are reused (``reused: true``, same data version). The schedule
and the sensor register the partitions the run needs before requesting it (new ranges added, ranges
of another range size deleted), so an audit also works on a fresh Dagster instance. Runs carry the
tag ``dup_pipeline/dataset`` for per-dataset run limits.
"""

import dagster as dg
import polars as pl

from dup_pipeline.core.changes import InputChanges, input_changes
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import (
    dataset_resource,
    partition_keys,
    range_partitions,
    resource_key,
    sync_partitions,
)

DATASET_TAG = "dup_pipeline/dataset"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def build_audit_job(dataset: str):
    """``<dataset>_audit_job``: every asset of the dataset's group, over a range of offset-range partitions."""
    return dg.define_asset_job(
        f"{dataset}_audit_job", selection=dg.AssetSelection.groups(dataset), tags={DATASET_TAG: dataset},
        description=f"Audit {dataset}: the manifest, the stale offset ranges, then every dataset-level asset whose "
        "inputs changed (the others are marked reused), the asset checks and the audit summary.")


def expected_partitions(ds: DatasetResource) -> tuple[list[str], InputChanges]:
    """The offset-range keys the next audit needs (rows known to the manifest plus the new files), and the
    input's changes since the manifest. Reads no image."""
    work = ds.workdir()
    config = ds.pipeline_config()
    changes = input_changes(work, config.input, config.sources)
    known_rows = pl.scan_parquet(work.manifest).select(pl.len()).collect().item() if work.manifest.exists() else 0
    # only paths the manifest never had get new rows (a file that comes back reuses its row)
    return partition_keys(ds, known_rows + len(changes.added)), changes


def register_partitions(instance: dg.DagsterInstance, dataset: str, ds: DatasetResource) -> list[str]:
    """Register the partitions the next audit of ``dataset`` needs (and delete those of another range
    size); return them in order. Generates the demo dataset first when it is configured and missing."""
    ds.ensure_input()
    keys, _ = expected_partitions(ds)
    sync_partitions(instance, range_partitions(dataset), keys)
    return keys


def audit_request(dataset: str, keys: list[str], run_key: str | None = None, **tags: str) -> dg.RunRequest:
    """A run of the audit job over the partitions ``keys`` (in registration order: first to last)."""
    return dg.RunRequest(run_key=run_key, job_name=f"{dataset}_audit_job",
                         tags={DATASET_TAG: dataset, RANGE_START: keys[0], RANGE_END: keys[-1], **tags})


def build_audit_schedule(dataset: str, settings: DatasetResource) -> dg.ScheduleDefinition:
    """Run the audit on ``settings.audit_cron`` (stopped until an operator turns it on)."""

    @dg.schedule(name=f"{dataset}_audit_schedule", job_name=f"{dataset}_audit_job",
                 cron_schedule=settings.audit_cron, default_status=dg.DefaultScheduleStatus.STOPPED,
                 required_resource_keys={resource_key(dataset)},
                 description=f"Re-audit {dataset}: only stale ranges and assets whose inputs changed are recomputed.")
    def audit_schedule(context: dg.ScheduleEvaluationContext):
        ds = dataset_resource(context, dataset)
        keys = register_partitions(context.instance, dataset, ds)
        return audit_request(dataset, keys) if keys else dg.SkipReason(f"{ds.input_dir} has no image files")

    return audit_schedule


def build_new_images_sensor(dataset: str) -> dg.SensorDefinition:
    """Start an audit when files are added, changed or removed; register the partitions it needs first."""
    partitions = range_partitions(dataset)

    @dg.sensor(name=f"{dataset}_new_images_sensor", job_name=f"{dataset}_audit_job", minimum_interval_seconds=60,
               required_resource_keys={resource_key(dataset)}, default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"Watches {dataset}'s input for new or changed images and audits only what they touch.")
    def new_images(context: dg.SensorEvaluationContext):
        ds = dataset_resource(context, dataset)
        ds.ensure_input()
        keys, changes = expected_partitions(ds)
        if not changes.any or not keys:
            return dg.SkipReason("no new, changed or removed images")
        existing = context.instance.get_dynamic_partitions(partitions.name)
        known, wanted = set(existing), set(keys)  # membership in sets: thousands of partitions in one tick
        new, stale = [k for k in keys if k not in known], [k for k in existing if k not in wanted]
        requests = [partitions.build_delete_request(stale)] if stale else []
        requests += [partitions.build_add_request(new)] if new else []
        return dg.SensorResult(
            run_requests=[audit_request(dataset, keys, changes.digest, **{"dup_pipeline/changes": changes.describe()})],
            dynamic_partitions_requests=requests)

    return new_images
