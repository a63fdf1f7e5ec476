"""Assets of the foundation: the file manifest (which registers the offset-range partitions) and the
per-range bad files, image statistics and embeddings.

The range assets run once per run over every partition key of the run (one partition, or a range
of them: an audit or a single-run backfill), decoding only what is stale; each partition records
its own counts. The dataset-level assets are generated from the stage registry (``stage_assets``).
"""

import dagster as dg

from dup_pipeline.core.progress import logging_progress
from dup_pipeline.core.range_scan import (
    FEATURES_VERSION,
    SCAN_VERSION,
    read_range_features,
    read_range_scan,
)
from dup_pipeline.core.ranges import OffsetRange, offset_ranges
from dup_pipeline.core.stages import BY_NAME, StageContext, run_stage, scan_ranges
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.metadata import file_metadata, markdown_table, materialize_results
from dup_pipeline.dagster_defs.resources import DatasetResource

OWNERS = ["team:data-quality"]


def range_partitions(dataset: str) -> dg.DynamicPartitionsDefinition:
    """The offset-range partitions of ``dataset`` (keys like ``0-9999``, registered by the manifest)."""
    return dg.DynamicPartitionsDefinition(name=f"{dataset}_offset_ranges")


def sync_partitions(instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition | str,
                    keys: list[str]) -> tuple[list[str], list[str]]:
    """Make the registered dynamic partitions exactly ``keys``: add the new ones, delete the stale ones
    (e.g. after the range size changed). Returns ``(added, deleted)``."""
    name = partitions if isinstance(partitions, str) else partitions.name
    existing = set(instance.get_dynamic_partitions(name))
    deleted = sorted(existing - set(keys))
    for stale_key in deleted:
        instance.delete_dynamic_partition(name, stale_key)
    added = [k for k in keys if k not in existing]
    if added:
        instance.add_dynamic_partitions(name, added)
    return added, deleted


def resource_key(dataset: str) -> str:
    return f"{dataset}_dataset"


def dataset_resource(context: dg.AssetExecutionContext | dg.OpExecutionContext, dataset: str) -> DatasetResource:
    return getattr(context.resources, resource_key(dataset))


def stage_context(context: dg.AssetExecutionContext, dataset: str) -> StageContext:
    """The core's stage context for one step of ``dataset`` (progress and warnings to the run's log)."""
    ds = dataset_resource(context, dataset)
    return StageContext(ds.pipeline_config(), logging_progress(context.log.info), context.log.warning, dataset)


def partition_keys(ds: DatasetResource, rows: int) -> list[str]:
    """The offset-range keys of a manifest of ``rows`` rows."""
    return [r.key for r in offset_ranges(rows, ds.range_size)]


def build_scan_assets(dataset: str) -> list[dg.AssetsDefinition]:
    """The manifest and range assets of one dataset, keys prefixed by its name."""
    partitions = range_partitions(dataset)
    key = resource_key(dataset)
    manifest_key = dg.AssetKey([dataset, "file_manifest"])
    bad_key, stats_key = dg.AssetKey([dataset, "bad_files"]), dg.AssetKey([dataset, "image_stats"])
    features_key = dg.AssetKey([dataset, "features"])
    manifest_stage = BY_NAME["file_manifest"]

    @dg.asset(key=manifest_key, group_name=dataset, owners=OWNERS, kinds=set(manifest_stage.kinds),
              required_resource_keys={key}, description=manifest_stage.description)
    @holding_work_dir(dataset)
    def file_manifest(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        ds = dataset_resource(context, dataset)
        ds.ensure_input()
        ds.workdir().ensure_writable()
        ctx = stage_context(context, dataset)
        (result,) = materialize_results(run_stage(manifest_stage, ctx), keyed=False)
        added, deleted = sync_partitions(context.instance, partitions, partition_keys(ds, ctx.manifest.height))
        if added or deleted:
            context.log.info(f"offset-range partitions: added {added[:20]}, deleted {deleted[:20]}")
        return result

    range_spec = {"deps": [manifest_key], "group_name": dataset, "owners": OWNERS, "partitions_def": partitions,
                  "skippable": True}

    @dg.multi_asset(
        name=f"{dataset}_scan_range",
        specs=[
            dg.AssetSpec(bad_key, kinds={"python", "parquet"}, code_version=SCAN_VERSION, **range_spec,
                         description="Files of one offset range that cannot be used, with a reason (missing, "
                         "unreadable, empty, not_an_image, unsupported_format, corrupt, too_large, too_small)."),
            dg.AssetSpec(stats_key, kinds={"python", "parquet"}, code_version=SCAN_VERSION, **range_spec,
                         description="Per good image of one offset range: width, height, channels, mode, format, "
                         "file size, luminance mean/stdv/min/max, distinct grey levels, contrast and blur."),
            dg.AssetSpec(features_key, kinds={"onnx", "numpy"}, code_version=FEATURES_VERSION, **range_spec,
                         description="L2-normalized embeddings of the good images of one offset range (default "
                         "model EfficientNet-Lite0, 1280-d) with the top ImageNet class; only new or changed "
                         "images are embedded."),
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
        required_resource_keys={key},
    )
    @holding_work_dir(dataset, shared=True)
    def scan_offset_ranges(context: dg.AssetExecutionContext):
        """Decode each stale range of the run once; ranges that match the manifest are reused."""
        ctx = stage_context(context, dataset)
        known = {r.key: r for r in offset_ranges(ctx.manifest.height, ctx.config.range_size)}
        stale_keys = [k for k in context.partition_keys if k not in known]
        if stale_keys:
            context.log.warning(f"partitions {stale_keys[:20]} are not offset ranges of the current manifest "
                                f"(range_size {ctx.config.range_size}): skipped; materialize file_manifest to "
                                "register the current ones")
        embed = features_key in context.selected_asset_keys
        ranges = [known[k] for k in context.partition_keys if k in known]
        outcomes = scan_ranges(ctx, ranges, features=embed)
        for outcome in outcomes:
            _range_metadata(context, ctx, OffsetRange.parse(outcome.key), outcome, embed)
        totals = {"ranges": len(outcomes), "ranges_decoded": sum(1 for o in outcomes if o.decoded),
                  "decoded_this_run": sum(o.decoded for o in outcomes)}
        for asset_key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=asset_key, metadata={f"run_{k}": v for k, v in totals.items()})

    def _range_metadata(context, ctx: StageContext, offset_range: OffsetRange, outcome, embed: bool) -> None:
        """Each partition's own counts, preview and files."""
        work, selected = ctx.work, context.selected_asset_keys
        common = {"rows": outcome.rows, "decoded_this_run": outcome.decoded, "reused": outcome.reused,
                  "reused_range": outcome.decoded == 0, **file_metadata(work.range_dir(offset_range))}
        scan = read_range_scan(work, offset_range)
        if bad_key in selected:
            context.add_asset_metadata({**common, "bad_files": outcome.bad, "preview": markdown_table(scan.bad)},
                                       asset_key=bad_key, partition_key=offset_range.key)
        if stats_key in selected:
            context.add_asset_metadata({**common, "images": scan.stats.height, "preview": markdown_table(scan.stats)},
                                       asset_key=stats_key, partition_key=offset_range.key)
        if embed:
            part = read_range_features(work, offset_range)
            context.add_asset_metadata({**common, "vectors": part.index.height if part is not None else 0,
                                        "embedded_this_run": outcome.embedded},
                                       asset_key=features_key, partition_key=offset_range.key)

    return [file_manifest, scan_offset_ranges]
