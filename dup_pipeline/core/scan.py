"""Decode every file of a manifest slice once: bad files with reasons, statistics for the rest."""

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from dup_pipeline.core.decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    BadFile,
    DecodedImage,
    decode_image,
)
from dup_pipeline.core.progress import Advance
from dup_pipeline.core.stats import image_stats

BAD_SCHEMA = {
    "index": pl.Int64,
    "filename": pl.String,
    "error_code": pl.String,
    "detail": pl.String,
    "filesize": pl.Int64,
}
STATS_SCHEMA = {
    "index": pl.Int64,
    "filename": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "channels": pl.Int64,
    "mode": pl.String,
    "format": pl.String,
    "file_size": pl.Int64,
    "mean": pl.Float64,
    "stdv": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
    "unique": pl.Int64,
    "contrast": pl.Float64,
    "blur": pl.Float64,
}


@dataclass(frozen=True)
class DecodeSettings:
    """Limits that decide which files are bad."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE

    def __post_init__(self) -> None:
        for name in ("max_pixels", "min_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ScanResult:
    """Rows of a manifest slice split into bad files and statistics of good images."""

    bad: pl.DataFrame
    stats: pl.DataFrame


def default_threads() -> int:
    """All cores, as fastdup's ``num_threads=-1``."""
    return os.cpu_count() or 1


def _decode_row(row: dict, settings: DecodeSettings) -> DecodedImage | BadFile:
    if row["missing"]:
        return BadFile("missing", "file no longer exists")
    try:
        return decode_image(row["path"], max_pixels=settings.max_pixels, min_side=settings.min_side)
    except BadFile as bad:
        return bad


def decode_rows(
    rows: pl.DataFrame, settings: DecodeSettings, num_threads: int, chunk: int = 64
) -> Iterator[tuple[dict, DecodedImage | BadFile]]:
    """Decode manifest ``rows`` in parallel threads, yielding results in manifest order.

    At most ``chunk * 2`` decoded images are held at once, so memory stays flat.
    """
    records = rows.to_dicts()
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        pending = None
        for start in range(0, len(records), chunk):
            batch = records[start : start + chunk]
            submitted = [pool.submit(_decode_row, r, settings) for r in batch]
            if pending is not None:
                yield from ((r, f.result()) for r, f in pending)
            pending = list(zip(batch, submitted))
        if pending is not None:
            yield from ((r, f.result()) for r, f in pending)


def scan_rows(
    rows: pl.DataFrame,
    settings: DecodeSettings = DecodeSettings(),
    num_threads: int | None = None,
    advance: Advance | None = None,
) -> ScanResult:
    """Decode each manifest row; return bad files (with reasons) and statistics of good images."""
    bad_rows: list[dict] = []
    stat_rows: list[dict] = []
    for row, result in decode_rows(rows, settings, num_threads or default_threads()):
        if isinstance(result, BadFile):
            bad_rows.append(
                {
                    "index": row["index"],
                    "filename": row["path"],
                    "error_code": result.reason,
                    "detail": result.detail,
                    "filesize": row["size"],
                }
            )
        else:
            stat_rows.append(
                {
                    "index": row["index"],
                    "filename": row["path"],
                    "width": result.width,
                    "height": result.height,
                    "channels": result.channels,
                    "mode": result.mode,
                    "format": result.format,
                    "file_size": row["size"],
                    **image_stats(result.image),
                }
            )
        if advance is not None:
            advance(1)
    return ScanResult(
        bad=pl.DataFrame(bad_rows, schema=BAD_SCHEMA),
        stats=pl.DataFrame(stat_rows, schema=STATS_SCHEMA),
    )
