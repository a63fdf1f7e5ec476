"""Decode every file of a manifest slice once: bad files with reasons, statistics for the rest."""

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from dup_pipeline.core.decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    BadFile,
    DecodedImage,
    decode_image,
)
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.stats import image_stats
from dup_pipeline.core.threads import default_threads, resolve_threads  # noqa: F401 - default_threads re-exported

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
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ScanResult:
    """Rows of a manifest slice split into bad files and statistics of good images."""

    bad: pl.DataFrame
    stats: pl.DataFrame


Prepare = Callable[[DecodedImage], np.ndarray]


@dataclass(frozen=True)
class Processed:
    """One manifest row after decoding: a bad file, or its statistics and/or model input."""

    row: dict
    bad: BadFile | None = None
    stats: dict | None = None
    tensor: np.ndarray | None = None


def bad_row(row: dict, bad: BadFile) -> dict:
    return {"index": row["index"], "filename": row["path"], "error_code": bad.reason,
            "detail": bad.detail, "filesize": row["size"]}


def stats_row(row: dict, decoded: DecodedImage) -> dict:
    return {"index": row["index"], "filename": row["path"], "width": decoded.width, "height": decoded.height,
            "channels": decoded.channels, "mode": decoded.mode, "format": decoded.format,
            "file_size": row["size"], **image_stats(decoded.image)}


def _process_row(row: dict, settings: DecodeSettings, want_stats: bool, prepare: Prepare | None) -> Processed:
    if row["missing"]:
        return Processed(row, bad=BadFile("missing", "file no longer exists"))
    try:
        decoded = decode_image(row["path"], max_pixels=settings.max_pixels, min_side=settings.min_side)
    except BadFile as bad:
        return Processed(row, bad=bad)
    return Processed(
        row,
        stats=stats_row(row, decoded) if want_stats else None,
        tensor=prepare(decoded) if prepare is not None else None,
    )


def process_rows(
    rows: pl.DataFrame,
    settings: DecodeSettings,
    num_threads: int,
    stats_for: set[int] | None = None,
    prepare: Prepare | None = None,
    prepare_for: set[int] | None = None,
    chunk: int = 64,
) -> Iterator[Processed]:
    """Decode manifest ``rows`` in threads, in manifest order, two chunks ahead of the consumer.

    Statistics are computed for indexes in ``stats_for`` (all when None) and model inputs with
    ``prepare`` for indexes in ``prepare_for`` (all when None), both in the worker threads, so
    the consumer (the model) never waits for decoding while memory stays bounded.
    """
    records = rows.to_dicts()

    def job(row: dict) -> Processed:
        want_stats = stats_for is None or row["index"] in stats_for
        wants_tensor = prepare is not None and (prepare_for is None or row["index"] in prepare_for)
        return _process_row(row, settings, want_stats, prepare if wants_tensor else None)

    with ThreadPoolExecutor(max_workers=max(1, resolve_threads(num_threads))) as pool:
        in_flight: deque[list[Future[Processed]]] = deque()
        for start in range(0, len(records), chunk):
            in_flight.append([pool.submit(job, r) for r in records[start : start + chunk]])
            if len(in_flight) > 2:
                yield from (f.result() for f in in_flight.popleft())
        while in_flight:
            yield from (f.result() for f in in_flight.popleft())
