"""Decode every file of a manifest slice once: bad files with reasons, statistics for the rest."""

import threading
from collections import Counter, deque
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
)
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.sources.catalog import Payload, PayloadFeed, SourceSettings, reading_order
from dup_pipeline.core.sources.reading import decode_payload
from dup_pipeline.core.stats import image_stats
from dup_pipeline.core.threads import resolve_threads

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
    "entropy": pl.Float64,
    "colorfulness": pl.Float64,
}


PREFETCH_ITEMS = 256  # rows decoded ahead of the model at most
PREFETCH_BYTES = 64 << 20  # model inputs decoded ahead at most (224x224 uint8 inputs: 147 KiB each)
# Rows queued in the decoding pool per thread beyond the first 16. Rows are submitted only between the
# consumer's model batches, so the pool needs work for a whole batch: with 2 per thread (before), the
# decoding threads ran dry during each batch and the scan of 2,000 files took 16.3 s instead of 12.1 s.
QUEUED_PER_THREAD = 4


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
    """One manifest row after decoding: a bad file, or its statistics and/or model input.

    ``same_as`` is the manifest index of an earlier row with the same bytes whose model input
    this row shares: the row was not decoded again, its ``tensor`` is None and its embedding is
    that row's (copy the vector instead of running the model again).
    """

    row: dict
    bad: BadFile | None = None
    stats: dict | None = None
    tensor: np.ndarray | None = None
    same_as: int | None = None

    def copied_to(self, row: dict) -> "Processed":
        """This result for ``row``, a file with the same bytes (its own index, name and size)."""
        stats = {**self.stats, "index": row["index"], "filename": row["path"], "file_size": row["size"]} \
            if self.stats is not None else None
        same_as = self.row["index"] if self.tensor is not None else self.same_as
        return Processed(row, self.bad, stats, None, same_as)


def bad_row(row: dict, bad: BadFile) -> dict:
    return {"index": row["index"], "filename": row["path"], "error_code": bad.reason,
            "detail": bad.detail, "filesize": row["size"]}


def stats_row(row: dict, decoded: DecodedImage) -> dict:
    return {"index": row["index"], "filename": row["path"], "width": decoded.width, "height": decoded.height,
            "channels": decoded.channels, "mode": decoded.mode, "format": decoded.format,
            "file_size": row["size"], **image_stats(decoded.image)}


def _process_row(row: dict, payload: Payload | None, settings: DecodeSettings, want_stats: bool,
                 prepare: Prepare | None) -> Processed:
    if row["missing"] or payload is None:
        return Processed(row, bad=BadFile("missing", "file no longer exists"))
    try:
        decoded = decode_payload(payload, max_pixels=settings.max_pixels, min_side=settings.min_side)
    except BadFile as bad:
        return Processed(row, bad=bad)
    return Processed(
        row,
        stats=stats_row(row, decoded) if want_stats else None,
        tensor=prepare(decoded) if prepare is not None else None,
    )


def _sources(records: list[dict], wants: Callable[[dict], tuple[bool, bool]]) -> list[int | None]:
    """For each record, the position of the first earlier record with the same content hash and the
    same needs (statistics, model input), or None: byte-identical files are decoded once."""
    first: dict[tuple, int] = {}
    sources: list[int | None] = []
    for position, row in enumerate(records):
        if row["missing"] or row.get("content_hash") is None:
            sources.append(None)
            continue
        key = (row["content_hash"], *wants(row))
        sources.append(first.get(key))
        first.setdefault(key, position)
    return sources


def _nbytes(item: Processed) -> int:
    return item.tensor.nbytes if item.tensor is not None else 0


def process_rows(
    rows: pl.DataFrame,
    settings: DecodeSettings,
    num_threads: int,
    stats_for: set[int] | None = None,
    prepare: Prepare | None = None,
    prepare_for: set[int] | None = None,
    max_items: int = PREFETCH_ITEMS,
    max_bytes: int = PREFETCH_BYTES,
    source_settings: SourceSettings = SourceSettings(),
) -> Iterator[Processed]:
    """Decode manifest ``rows`` in threads, ahead of the consumer, in manifest order except that
    each shard's members and each video's frames come together (:func:`sources.catalog.reading_order`:
    one pass per shard or video, read with ``source_settings``).

    Statistics are computed for indexes in ``stats_for`` (all when None) and model inputs with
    ``prepare`` for indexes in ``prepare_for`` (all when None), both in the worker threads, so
    the consumer (the model) never waits for decoding. At most ``max_items`` rows are decoded
    ahead, and fewer when their model inputs (measured, and estimated for those still decoding)
    would exceed ``max_bytes``. A file with the same content hash as an earlier row is not decoded
    again: it gets that row's result (:meth:`Processed.copied_to`, ``same_as`` set when there is a
    model input to share).
    """
    records = rows.to_dicts()
    records = [records[i] for i in reading_order([r["path"] for r in records])]

    def wants(row: dict) -> tuple[bool, bool]:
        return (stats_for is None or row["index"] in stats_for,
                prepare is not None and (prepare_for is None or row["index"] in prepare_for))

    def job(row: dict, payload: Payload | None) -> Processed:
        want_stats, wants_tensor = wants(row)
        return _process_row(row, payload, settings, want_stats, prepare if wants_tensor else None)

    sources = _sources(records, wants)
    feed = PayloadFeed((r["path"] for r, s in zip(records, sources) if s is None and not r["missing"]),
                       source_settings)
    copies_left = Counter(s for s in sources if s is not None)
    kept: dict[int, Processed] = {}  # results that later byte-identical rows copy
    lock = threading.Lock()
    done = {"bytes": 0, "items": 0, "total": 0, "seen": 0}  # decoded, not yet consumed; all decoded
    submitted = 0  # futures in the window

    def finished(future: Future[Processed]) -> None:
        size = _nbytes(future.result()) if future.exception() is None else 0
        with lock:
            done["bytes"] += size
            done["items"] += 1
            done["total"] += size
            done["seen"] += 1

    def room(window: deque) -> bool:
        """Another row may be submitted: the pool has fewer than ``16 + QUEUED_PER_THREAD * threads``
        rows waiting (2 per thread until a first input is measured), and the inputs decoded (plus those
        decoding, at the average size so far) stay within the bounds."""
        with lock:
            pending = submitted - done["items"]
            estimate = done["total"] / max(done["seen"], 1)
            queued = 16 + QUEUED_PER_THREAD * workers if done["seen"] else 2 * workers
            return (pending < queued and len(window) < max_items
                    and done["bytes"] + pending * estimate < max_bytes)

    def resolve(position: int, future: Future[Processed] | None) -> Processed:
        nonlocal submitted
        source = sources[position]
        if future is not None:
            item = future.result()
            submitted -= 1
            with lock:
                done["bytes"] -= _nbytes(item)
                done["items"] -= 1
        else:
            item = kept[source].copied_to(records[position])  # type: ignore[index]
            copies_left[source] -= 1
            if not copies_left[source]:
                del kept[source]  # type: ignore[arg-type]
        if copies_left[position]:
            kept[position] = item
        return item

    workers = max(1, resolve_threads(num_threads))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        window: deque[tuple[int, Future[Processed] | None]] = deque()
        position = 0
        while position < len(records) or window:
            while position < len(records) and (not window or room(window)):
                future = None
                if sources[position] is None:
                    row = records[position]
                    future = pool.submit(job, row, None if row["missing"] else feed.get(row["path"]))
                    future.add_done_callback(finished)
                    submitted += 1
                window.append((position, future))
                position += 1
            yield resolve(*window.popleft())
