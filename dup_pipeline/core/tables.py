"""Dataset-wide tables assembled from the per-range outputs, in Parquet and fastdup's CSV shape."""

from dataclasses import dataclass

import polars as pl

from dup_pipeline.core.atomic import write_csv, write_parquet
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.range_scan import read_range_scan
from dup_pipeline.core.ranges import offset_ranges
from dup_pipeline.core.scan import BAD_SCHEMA, STATS_SCHEMA
from dup_pipeline.core.workdir import WorkDir

FASTDUP_BAD_COLUMNS = ("index", "filename", "error_code", "filesize")
FASTDUP_STATS_COLUMNS = (
    "index", "width", "height", "unique", "blur", "mean", "min", "max", "stdv", "file_size", "contrast",
)


@dataclass(frozen=True)
class DatasetScan:
    """All bad files and all image statistics of a dataset."""

    bad: pl.DataFrame
    stats: pl.DataFrame


def combine_scans(work: WorkDir, n_rows: int, range_size: int) -> DatasetScan:
    """Concatenate every range's outputs and write the dataset tables atomically.

    Raises ``ConfigError`` (after writing the tables, which give each image's size) when the
    ``bounding_box`` missed every image that could be decoded.
    """
    parts = [read_range_scan(work, r) for r in offset_ranges(n_rows, range_size)]
    bad = pl.concat([pl.DataFrame(schema=BAD_SCHEMA), *(p.bad for p in parts)]).sort("index")
    stats = pl.concat([pl.DataFrame(schema=STATS_SCHEMA), *(p.stats for p in parts)]).sort("index")
    write_parquet(bad, work.bad_files_parquet)
    write_csv(bad.select(FASTDUP_BAD_COLUMNS), work.bad_files_csv)
    write_parquet(stats, work.image_stats_parquet)
    extra = [c for c in stats.columns if c not in FASTDUP_STATS_COLUMNS]
    write_csv(stats.select([*FASTDUP_STATS_COLUMNS, *extra]), work.image_stats_csv)
    missed = bad.filter(pl.col("error_code") == "bounding_box_outside")
    if missed.height and not stats.height:
        raise ConfigError(f"bounding_box lies outside every one of the {missed.height} decodable images "
                          f"(e.g. {missed['detail'][0]}); its row_y and col_x are in original-image pixels "
                          f"and must be below the image's height and width (see {work.bad_files_csv})")
    return DatasetScan(bad, stats)


def bad_reason_counts(bad: pl.DataFrame) -> dict[str, int]:
    """Number of bad files per reason, most frequent first."""
    counts = bad.group_by("error_code").len().sort(["len", "error_code"], descending=[True, False])
    return dict(zip(counts["error_code"].to_list(), counts["len"].to_list()))
