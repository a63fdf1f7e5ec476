"""Scan one offset range of the manifest into work_dir, reusing what an earlier run computed."""

import hashlib
import json
from dataclasses import asdict, dataclass

import polars as pl

from dup_pipeline.core.atomic import write_json, write_parquet
from dup_pipeline.core.progress import Advance
from dup_pipeline.core.ranges import OffsetRange
from dup_pipeline.core.scan import BAD_SCHEMA, STATS_SCHEMA, DecodeSettings, ScanResult, scan_rows
from dup_pipeline.core.workdir import WorkDir

SCAN_VERSION = "1"
ROW_KEY = ("index", "path", "size", "mtime_ns", "content_hash", "missing")


@dataclass(frozen=True)
class RangeScanOutcome:
    """What scanning a range did: rows decoded now, rows reused, bad and good counts."""

    key: str
    rows: int
    decoded: int
    reused: int
    bad: int
    good: int


def range_rows(manifest: pl.DataFrame, offset_range: OffsetRange) -> pl.DataFrame:
    """The manifest rows whose index falls in ``offset_range``."""
    return manifest.filter(pl.col("index").is_between(offset_range.start, offset_range.end)).sort("index")


def _settings_tag(settings: DecodeSettings) -> str:
    return json.dumps({"version": SCAN_VERSION, **asdict(settings)}, sort_keys=True)


def rows_fingerprint(rows: pl.DataFrame, tag: str) -> str:
    """A hash of the rows' identity (path, size, mtime, content) and the settings used."""
    digest = hashlib.blake2b(tag.encode(), digest_size=16)
    digest.update(rows.select(ROW_KEY).write_csv().encode())
    return digest.hexdigest()


def scan_range(
    work: WorkDir,
    manifest: pl.DataFrame,
    offset_range: OffsetRange,
    settings: DecodeSettings = DecodeSettings(),
    num_threads: int | None = None,
    advance: Advance | None = None,
) -> RangeScanOutcome:
    """Write ``bad_files.parquet`` and ``image_stats.parquet`` for one range.

    Rows unchanged since the previous scan of this range (same path, size, mtime, content and
    settings) are copied from it; only new or changed files are decoded.
    """
    folder = work.range_dir(offset_range)
    rows = range_rows(manifest, offset_range)
    tag = _settings_tag(settings)
    fingerprint = rows_fingerprint(rows, tag)
    state_path = folder / "scan.json"
    previous = _load_previous(folder, tag) if state_path.exists() else None
    if previous is not None and json.loads(state_path.read_text()).get("fingerprint") == fingerprint:
        bad, stats = previous[1], previous[2]
        if advance is not None:
            advance(rows.height)
        return RangeScanOutcome(offset_range.key, rows.height, 0, rows.height, bad.height, stats.height)
    reusable = _reusable_indexes(rows, previous[0]) if previous is not None else set()
    todo = rows.filter(~pl.col("index").is_in(list(reusable)))
    if advance is not None and reusable:
        advance(len(reusable))
    fresh = scan_rows(todo, settings, num_threads, advance)
    bad, stats = fresh.bad, fresh.stats
    if previous is not None and reusable:
        keep = pl.col("index").is_in(list(reusable))
        bad = pl.concat([previous[1].filter(keep), bad]).sort("index")
        stats = pl.concat([previous[2].filter(keep), stats]).sort("index")
    write_parquet(rows.select(ROW_KEY), folder / "rows.parquet")
    write_parquet(bad, folder / "bad_files.parquet")
    write_parquet(stats, folder / "image_stats.parquet")
    write_json({"fingerprint": fingerprint, "settings": tag, "rows": rows.height}, state_path)
    return RangeScanOutcome(offset_range.key, rows.height, todo.height, len(reusable), bad.height, stats.height)


def _load_previous(folder, tag: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame] | None:
    try:
        state = json.loads((folder / "scan.json").read_text())
        if state.get("settings") != tag:
            return None
        return (
            pl.read_parquet(folder / "rows.parquet"),
            pl.read_parquet(folder / "bad_files.parquet"),
            pl.read_parquet(folder / "image_stats.parquet"),
        )
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


def _reusable_indexes(rows: pl.DataFrame, previous_rows: pl.DataFrame) -> set[int]:
    same = rows.select(ROW_KEY).join(previous_rows, on=list(ROW_KEY), how="inner")
    return set(same["index"].to_list())


def read_range_scan(work: WorkDir, offset_range: OffsetRange) -> ScanResult:
    """Read a range's scan outputs (empty frames when the range was never scanned)."""
    folder = work.range_dir(offset_range)
    if not (folder / "scan.json").exists():
        return ScanResult(pl.DataFrame(schema=BAD_SCHEMA), pl.DataFrame(schema=STATS_SCHEMA))
    return ScanResult(
        pl.read_parquet(folder / "bad_files.parquet"), pl.read_parquet(folder / "image_stats.parquet")
    )
