"""The scheduled audit: one durable run per audit, one step per stale offset range, and the
sensor that starts it when images are added or changed.

The audit job is an op graph over the same core functions as the assets. It reports
materializations of the dataset's assets, so the asset catalog shows what each audit produced.
Range steps fan out dynamically (only stale ranges) and run in parallel with the multiprocess
executor (or any distributed executor). After a kill, a new audit processes only the unfinished
ranges; a re-execution "from failure" also ends complete, because the finish step completes any
range that is still stale. Runs carry the tag ``dup_pipeline/dataset`` for per-dataset run limits.
"""

import dagster as dg
import polars as pl

from dup_pipeline.core.audit import write_audit_summary
from dup_pipeline.core.changes import input_changes
from dup_pipeline.core.features import load_features
from dup_pipeline.core.pipeline import PipelineConfig, finish_run, update_manifest
from dup_pipeline.core.progress import logging_progress
from dup_pipeline.core.range_scan import is_range_current, range_rows, scan_range
from dup_pipeline.core.ranges import OffsetRange, offset_ranges
from dup_pipeline.core.similarity import cross_similarity
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.checks import blocking_failures, evaluate_checks
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import (
    dataset_resource,
    range_partitions,
    resource_key,
    sync_partitions,
)

DATASET_TAG = "dup_pipeline/dataset"


def stale_ranges(config: PipelineConfig, work: WorkDir, manifest: pl.DataFrame) -> list[str]:
    """Keys of the offset ranges whose scan or embeddings do not match the manifest and settings."""
    tag = config.model.features_tag(config.decode)
    return [r.key for r in offset_ranges(manifest.height, config.range_size)
            if not is_range_current(work, manifest, r, config.decode, tag)]


def build_audit_job(dataset: str, compare_to: str | None = None) -> dg.JobDefinition:
    """``<dataset>_audit_job``: manifest → stale ranges in parallel → tables, similarity, labels, cross
    similarity against ``compare_to`` (when set), the dataset's checks and the summary."""
    key = resource_key(dataset)
    finish_keys = {key, resource_key(compare_to)} if compare_to else {key}
    partitions = range_partitions(dataset)

    @dg.op(name=f"{dataset}_audit_manifest", required_resource_keys={key},
           out={"ranges": dg.DynamicOut(str), "files": dg.Out(int)})
    @holding_work_dir(dataset)
    def refresh_manifest(context: dg.OpExecutionContext):
        """Update the manifest, register partitions, and emit the ranges whose outputs are stale."""
        ds = dataset_resource(context, dataset)
        ds.ensure_input()
        config, work = ds.pipeline_config(), ds.workdir().ensure_writable()
        manifest = update_manifest(work, config.input, logging_progress(context.log.info))
        keys = [r.key for r in offset_ranges(manifest.height, config.range_size)]
        _, deleted = sync_partitions(context.instance, partitions, keys)
        if deleted:
            context.log.info(f"deleted {len(deleted)} stale offset-range partitions: {deleted[:20]}")
        yield dg.AssetMaterialization([dataset, "file_manifest"], metadata={"files": manifest.height,
                                                                           "path": dg.MetadataValue.path(str(work.manifest))})
        stale = stale_ranges(config, work, manifest)
        context.log.info(f"{len(stale)} of {len(keys)} offset ranges need work: {stale[:20]}")
        for range_key in stale:
            yield dg.DynamicOutput(range_key, output_name="ranges", mapping_key=range_key.replace("-", "_"))
        yield dg.Output(manifest.height, output_name="files")

    @dg.op(name=f"{dataset}_audit_scan_range", required_resource_keys={key})
    @holding_work_dir(dataset, shared=True)
    def scan_one_range(context: dg.OpExecutionContext, range_key: str):
        """Decode one range once: bad files, statistics, embeddings (unchanged files reused)."""
        ds = dataset_resource(context, dataset)
        config, work = ds.pipeline_config(), ds.workdir()
        manifest = pl.read_parquet(work.manifest)
        offset_range = OffsetRange.parse(range_key)
        total = range_rows(manifest, offset_range).height
        with logging_progress(context.log.info)(f"decode {range_key}", total) as advance:
            outcome = scan_range(work, manifest, offset_range, config.decode, config.threads, advance,
                                 config.model.feature_settings())
        for name in ("bad_files", "image_stats", "features"):
            yield dg.AssetMaterialization([dataset, name], partition=range_key,
                                          metadata={"decoded_this_run": outcome.decoded, "reused": outcome.reused})
        yield dg.Output(range_key)

    @dg.op(name=f"{dataset}_audit_finish", required_resource_keys=finish_keys)
    @holding_work_dir(dataset)
    def finish_audit(context: dg.OpExecutionContext, scanned: list[str], files: int):
        """Dataset tables, feature matrix, similarity stage, labels, cross similarity, checks and the summary."""
        ds = dataset_resource(context, dataset)
        config, work = ds.pipeline_config(), ds.workdir()
        manifest = pl.read_parquet(work.manifest)
        missed = stale_ranges(config, work, manifest)
        if missed:  # e.g. a re-execution from failure that skipped range steps which never started
            context.log.warning(f"completing {len(missed)} offset ranges the fan-out did not finish: {missed[:20]}")
            features = config.model.feature_settings()
            for range_key in missed:
                scan_range(work, manifest, OffsetRange.parse(range_key), config.decode, config.threads, None, features)
        summary = finish_run(config, work, manifest, [], config.model.spec(),
                             progress=logging_progress(context.log.info))
        for line in summary.lines():
            context.log.info(line)
        names = ["dataset_bad_files", "dataset_image_stats", "feature_matrix"]
        if summary.graph is not None:
            names += ["faiss_index", "similarity", "outliers", "components", "pagerank_degree"]
        if summary.labels is not None:
            names += ["label_issues", "leakage"]
        if summary.report is not None:
            names.append("report")
        for name in names:
            yield dg.AssetMaterialization([dataset, name], metadata={"audit_ranges_scanned": len(scanned)})
        if compare_to:
            yield from refresh_cross_similarity(context, ds, summary.features)
        audit = write_audit_summary(work)
        evaluations = evaluate_checks(dataset, ds, names)
        yield from evaluations
        failed = blocking_failures(ds, evaluations)
        if failed:
            raise dg.Failure(
                description=f"{dataset}: blocking checks failed with ERROR severity: {', '.join(failed)}",
                metadata={"failed_checks": ", ".join(failed)})
        yield dg.Output(audit.totals, metadata={"summary": dg.MetadataValue.md(audit.markdown()),
                                                "path": dg.MetadataValue.path(str(work.root / "audit_summary.md"))})

    def refresh_cross_similarity(context: dg.OpExecutionContext, ds: DatasetResource, features):
        """Run mode 3: search this dataset's features in ``compare_to``'s index (as the cross_similarity asset)."""
        ref_work = dataset_resource(context, compare_to).workdir()
        if not ref_work.faiss_index.exists():
            context.log.warning(f"cross_similarity not refreshed: {compare_to} has no faiss index yet "
                                f"({ref_work.faiss_index}); audit {compare_to} first")
            return
        if features is None or not features.matrix.shape[0]:
            context.log.warning(f"cross_similarity not refreshed: {dataset} has no good images")
            return
        config, work = ds.pipeline_config(), ds.workdir()
        pairs = cross_similarity(ref_work, pl.read_parquet(ref_work.manifest), load_features(ref_work), work,
                                 features, config.graph, config.threads, out=work)
        context.log.info(f"cross_similarity against {compare_to}: {pairs.height} pairs")
        yield dg.AssetMaterialization([dataset, "cross_similarity"], metadata={
            "pairs": pairs.height, "images_with_a_match": pairs["from"].n_unique(), "compare_to": compare_to,
            "path": dg.MetadataValue.path(str(work.cross_similarity_csv))})

    @dg.graph(name=f"{dataset}_audit")
    def audit():
        ranges, files = refresh_manifest()
        finish_audit(ranges.map(scan_one_range).collect(), files)

    return audit.to_job(
        name=f"{dataset}_audit_job", tags={DATASET_TAG: dataset},
        description=f"Audit {dataset}: update the manifest, process stale offset ranges in parallel, then "
        "tables, similarity, labels and a summary of what changed since the previous audit.",
    )


def build_audit_schedule(dataset: str, settings: DatasetResource, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """Run the audit on ``settings.audit_cron`` (stopped until an operator turns it on)."""
    return dg.ScheduleDefinition(name=f"{dataset}_audit_schedule", job=job, cron_schedule=settings.audit_cron,
                                 default_status=dg.DefaultScheduleStatus.STOPPED,
                                 description=f"Re-audit {dataset}: only stale ranges are recomputed.")


def build_new_images_sensor(dataset: str, job: dg.JobDefinition) -> dg.SensorDefinition:
    """Start an audit when files are added, changed or removed; register the partitions they need."""
    partitions = range_partitions(dataset)

    @dg.sensor(name=f"{dataset}_new_images_sensor", job=job, minimum_interval_seconds=60,
               required_resource_keys={resource_key(dataset)}, default_status=dg.DefaultSensorStatus.STOPPED,
               description=f"Watches {dataset}'s input for new or changed images and audits only what they touch.")
    def new_images(context: dg.SensorEvaluationContext):
        ds = dataset_resource(context, dataset)
        work = ds.workdir()
        changes = input_changes(work, ds.pipeline_config().input)
        if not changes.any:
            return dg.SkipReason("no new, changed or removed images")
        known_rows = pl.scan_parquet(work.manifest).select(pl.len()).collect().item() if work.manifest.exists() else 0
        # only paths the manifest never had get new rows (a file that comes back reuses its row)
        keys = [r.key for r in offset_ranges(known_rows + len(changes.added), ds.range_size)]
        registered = set(context.instance.get_dynamic_partitions(partitions.name))
        new_keys = [k for k in keys if k not in registered]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=changes.digest, tags={"dup_pipeline/changes": changes.describe()})],
            dynamic_partitions_requests=[partitions.build_add_request(new_keys)] if new_keys else [],
        )

    return new_images
