"""The report asset: every gallery and an overview page, previewed as Markdown in the UI."""

import dagster as dg
import polars as pl

from dup_pipeline.core.report.report import build_report, report_markdown
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.metadata import file_metadata
from dup_pipeline.dagster_defs.scan_assets import OWNERS, dataset_resource, resource_key


def build_report_asset(dataset: str, has_labels: bool) -> dg.AssetsDefinition:
    """``<dataset>/report``: ``report/index.html`` and the galleries beside it."""
    names = ["dataset_bad_files", "dataset_image_stats", "similarity", "outliers", "components"]
    names += ["label_issues", "leakage"] if has_labels else []

    @dg.asset(key=[dataset, "report"], deps=[[dataset, n] for n in names], group_name=dataset, owners=OWNERS,
              kinds={"html"}, required_resource_keys={resource_key(dataset)},
              description="HTML report: an overview page with summary counts linking galleries of duplicates, "
              "outliers, groups, similar images, dark/bright/blurry images, likely wrong labels, bad files and "
              "leakage (self-contained pages with inline thumbnails; file names escaped).")
    @holding_work_dir(dataset)
    def report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        work = dataset_resource(context, dataset).workdir()
        labels = pl.read_parquet(work.labels_parquet) if work.labels_parquet.exists() else None
        built = build_report(work, labels=labels, dataset_name=dataset)
        return dg.MaterializeResult(metadata={
            "summary": dg.MetadataValue.md(report_markdown(built)),
            "pages": len(built.sections) + 1,
            **file_metadata(built.index_path)})

    return report
