"""HTML galleries and the dataset report, rendered from a work_dir's tables (no Dagster here)."""

from dup_pipeline.core.report.galleries import (
    bad_files_gallery,
    component_gallery,
    create_components_gallery,
    create_duplicates_gallery,
    create_outliers_gallery,
    create_similarity_gallery,
    create_stats_gallery,
    duplicates_gallery,
    image_issues_gallery,
    leakage_gallery,
    outliers_gallery,
    similarity_gallery,
    stats_gallery,
)
from dup_pipeline.core.report.render import Gallery
from dup_pipeline.core.report.report import (
    Report,
    Summary,
    build_report,
    report_markdown,
)
from dup_pipeline.core.report.thumbnails import thumbnail_uri

__all__ = [
    "Gallery", "Report", "Summary", "bad_files_gallery", "build_report", "component_gallery",
    "create_components_gallery", "create_duplicates_gallery", "create_outliers_gallery",
    "create_similarity_gallery", "create_stats_gallery", "duplicates_gallery", "image_issues_gallery", "leakage_gallery",
    "outliers_gallery", "report_markdown", "similarity_gallery", "stats_gallery",
    "thumbnail_uri",
]
