"""Assets of the foundation: file manifest, per-range bad files and image stats, dataset tables."""

import hashlib
import json

import dagster as dg
import polars as pl

from dup_pipeline.core.features import assemble_features
from dup_pipeline.core.manifest import exact_duplicate_groups
from dup_pipeline.core.pipeline import update_manifest
from dup_pipeline.core.progress import logging_progress
from dup_pipeline.core.range_scan import (
    FEATURES_VERSION,
    SCAN_VERSION,
    range_files,
    range_rows,
    read_range_features,
    read_range_scan,
    scan_range,
)
from dup_pipeline.core.ranges import OffsetRange, offset_ranges
from dup_pipeline.core.tables import bad_reason_counts, combine_scans
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.metadata import file_metadata, markdown_table
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


def build_scan_assets(dataset: str) -> list[dg.AssetsDefinition]:
    """The manifest, range-scan and dataset-table assets of one dataset, keys prefixed by its name."""
    partitions = range_partitions(dataset)
    key = resource_key(dataset)
    manifest_key = dg.AssetKey([dataset, "file_manifest"])
    bad_key, stats_key = dg.AssetKey([dataset, "bad_files"]), dg.AssetKey([dataset, "image_stats"])
    features_key = dg.AssetKey([dataset, "features"])

    @dg.asset(
        key=manifest_key,
        group_name=dataset,
        owners=OWNERS,
        kinds={"python", "parquet"},
        code_version="1",
        required_resource_keys={key},
        description="Every input file with a stable index, size, modification time and content hash "
        "(BLAKE2b-128). Append-only across reruns; registers the offset-range partitions.",
    )
    @holding_work_dir(dataset)
    def file_manifest(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        ds = dataset_resource(context, dataset)
        ds.ensure_input()
        config = ds.pipeline_config()
        work = ds.workdir().ensure_writable()
        manifest = update_manifest(work, config.input, logging_progress(context.log.info))
        keys = [r.key for r in offset_ranges(manifest.height, config.range_size)]
        sync_partitions(context.instance, partitions, keys)
        groups = exact_duplicate_groups(manifest)
        digest = hashlib.blake2b(manifest.write_csv().encode(), digest_size=16).hexdigest()
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "files": manifest.height,
                "missing_files": int(manifest["missing"].sum()),
                "offset_ranges": len(keys),
                "byte_identical_groups": groups.height,
                "preview": markdown_table(manifest.select("index", "path", "size", "content_hash")),
                **file_metadata(work.manifest),
            },
        )

    @dg.multi_asset(
        name=f"{dataset}_scan_range",
        specs=[
            dg.AssetSpec(
                bad_key, deps=[manifest_key], group_name=dataset, owners=OWNERS, kinds={"python", "parquet"},
                partitions_def=partitions, skippable=True, code_version=SCAN_VERSION,
                description="Files of one offset range that cannot be used, with a reason "
                "(missing, unreadable, empty, not_an_image, unsupported_format, corrupt, too_large, too_small).",
            ),
            dg.AssetSpec(
                stats_key, deps=[manifest_key], group_name=dataset, owners=OWNERS, kinds={"python", "parquet"},
                partitions_def=partitions, skippable=True, code_version=SCAN_VERSION,
                description="Per good image of one offset range: width, height, channels, mode, format, file "
                "size, luminance mean/stdv/min/max, distinct grey levels, contrast and blur.",
            ),
            dg.AssetSpec(
                features_key, deps=[manifest_key], group_name=dataset, owners=OWNERS,
                kinds={"onnx", "numpy"}, partitions_def=partitions, skippable=True, code_version=FEATURES_VERSION,
                description="L2-normalized embeddings of the good images of one offset range (default model "
                "EfficientNet-Lite0, 1280-d) with the top ImageNet class; only new or changed images are embedded.",
            ),
        ],
        partitions_def=partitions,
        can_subset=True,
        required_resource_keys={key},
    )
    @holding_work_dir(dataset, shared=True)
    def scan_offset_range(context: dg.AssetExecutionContext):
        """Decode each file of the range once; unchanged files are reused from the previous scan."""
        ds = dataset_resource(context, dataset)
        config = ds.pipeline_config()
        work = ds.workdir()
        manifest = pl.read_parquet(work.manifest)
        offset_range = OffsetRange.parse(context.partition_key)
        total = range_rows(manifest, offset_range).height
        embed = features_key in context.selected_asset_keys
        feature_settings = config.model.feature_settings() if embed else None
        with logging_progress(context.log.info)(f"decode {offset_range.key}", total) as advance:
            outcome = scan_range(work, manifest, offset_range, config.decode, config.threads, advance,
                                 feature_settings)
        context.log.info(f"{outcome.key}: decoded {outcome.decoded}, reused {outcome.reused}, "
                         f"embedded {outcome.embedded}")
        common = {"rows": outcome.rows, "decoded_this_run": outcome.decoded, "reused": outcome.reused}
        if embed:
            part = read_range_features(work, offset_range)
            yield dg.MaterializeResult(
                asset_key=features_key,
                metadata={**common, "vectors": part.index.height, "dim": feature_settings.embedder.spec.dim,
                          "embedded_this_run": outcome.embedded,
                          "model": feature_settings.embedder.spec.model_id,
                          **file_metadata(range_files(work, offset_range, "features")["vectors"])},
            )
        scan, scan_files = read_range_scan(work, offset_range), range_files(work, offset_range, "scan")
        if bad_key in context.selected_asset_keys:
            bad = scan.bad
            yield dg.MaterializeResult(
                asset_key=bad_key,
                metadata={**common, "bad_files": bad.height, "preview": markdown_table(bad),
                          **file_metadata(scan_files["bad"])},
            )
        if stats_key in context.selected_asset_keys:
            stats = scan.stats
            yield dg.MaterializeResult(
                asset_key=stats_key,
                metadata={**common, "images": stats.height, "preview": markdown_table(stats),
                          **file_metadata(scan_files["stats"])},
            )

    @dg.multi_asset(
        name=f"{dataset}_dataset_tables",
        specs=[
            dg.AssetSpec(
                [dataset, "dataset_bad_files"], deps=[bad_key, manifest_key], group_name=dataset, owners=OWNERS,
                kinds={"python", "parquet", "csv"}, skippable=True,
                description="All bad files of the dataset: bad_files.parquet and fastdup's features.bad.csv "
                "(index,filename,error_code,filesize).",
            ),
            dg.AssetSpec(
                [dataset, "dataset_image_stats"], deps=[stats_key, manifest_key], group_name=dataset,
                owners=OWNERS, kinds={"python", "parquet", "csv"}, skippable=True,
                description="Statistics of every good image: image_stats.parquet and fastdup's atrain_stats.csv.",
            ),
        ],
        can_subset=True,
        required_resource_keys={key},
    )
    @holding_work_dir(dataset)
    def dataset_tables(context: dg.AssetExecutionContext):
        """Assemble the per-range outputs into dataset-wide tables."""
        ds = dataset_resource(context, dataset)
        work = ds.workdir()
        manifest = pl.read_parquet(work.manifest)
        tables = combine_scans(work, manifest.height, ds.range_size)
        if tables.stats.is_empty() and manifest.height:
            context.log.warning(f"every one of the {manifest.height} files is bad: see {work.bad_files_csv}")
        for asset_key in context.selected_asset_keys:
            if asset_key.path[-1] == "dataset_bad_files":
                yield dg.MaterializeResult(
                    asset_key=asset_key,
                    metadata={
                        "bad_files": tables.bad.height,
                        "bad_fraction": tables.bad.height / max(manifest.height, 1),
                        "reasons": dg.MetadataValue.json(bad_reason_counts(tables.bad)),
                        "preview": markdown_table(tables.bad),
                        "csv": dg.MetadataValue.path(str(work.bad_files_csv)),
                        **file_metadata(work.bad_files_parquet),
                    },
                )
            else:
                yield dg.MaterializeResult(
                    asset_key=asset_key,
                    metadata={
                        "images": tables.stats.height,
                        "preview": markdown_table(tables.stats.sort("mean")),
                        "csv": dg.MetadataValue.path(str(work.image_stats_csv)),
                        **file_metadata(work.image_stats_parquet),
                    },
                )

    @dg.asset(
        key=[dataset, "feature_matrix"],
        deps=[features_key, manifest_key],
        group_name=dataset,
        owners=OWNERS,
        kinds={"numpy", "csv"},
        code_version=FEATURES_VERSION,
        required_resource_keys={key},
        description="The dataset's embeddings in manifest order, memory-mapped: fastdup's features.dat "
        "(raw float32, rows x dim) + features.dat.csv (index,filename), features.parquet (with top class).",
    )
    @holding_work_dir(dataset)
    def feature_matrix(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        ds = dataset_resource(context, dataset)
        config = ds.pipeline_config()
        work = ds.workdir()
        manifest = pl.read_parquet(work.manifest)
        spec = config.model.spec()
        matrix = assemble_features(work, manifest, config.range_size, spec.model_id, spec.dim,
                                   config.model.class_names)
        return dg.MaterializeResult(
            data_version=dg.DataVersion(json.loads(work.features_meta.read_text())["ranges_digest"]),
            metadata={
                "rows": matrix.matrix.shape[0], "dim": matrix.dim, "model": matrix.model_id,
                "preview": markdown_table(matrix.index.drop("row")),
                "csv": dg.MetadataValue.path(str(work.features_csv)),
                **file_metadata(work.features_dat),
            },
        )

    return [file_manifest, scan_offset_range, dataset_tables, feature_matrix]
