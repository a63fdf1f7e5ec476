"""The file manifest: one row per input file with a stable index and a content hash.

The manifest is append-only across reruns: a file keeps its index for as long as it is listed,
new files are appended in sorted order, files that disappeared stay as rows marked missing.
So an index means the same image across reruns and offset ranges stay stable.
"""

from collections.abc import Callable, Sequence

import polars as pl

from dup_pipeline.core.sources.catalog import Entry, SourceSettings, content_hashes

MANIFEST_SCHEMA = {
    "index": pl.Int64,
    "path": pl.String,
    "size": pl.Int64,
    "mtime_ns": pl.Int64,
    "content_hash": pl.String,
    "missing": pl.Boolean,
}

Progress = Callable[[int], None]


def build_manifest(
    entries: Sequence[Entry],
    previous: pl.DataFrame | None = None,
    progress: Progress | None = None,
    sources: SourceSettings = SourceSettings(),
) -> pl.DataFrame:
    """Build the manifest for ``entries`` (sorted by name: :func:`sources.catalog.discover`),
    reusing ``previous`` hashes.

    An entry whose size and change stamp (``mtime_ns``: a local file's modification time, an
    object's stamp from the store's listing) are unchanged keeps its previous hash without being
    read again; shard members and video frames take the hash their listing computed; everything
    else is hashed (BLAKE2b-128 of the bytes; objects ``sources.read_concurrency`` at a time).
    """
    known: dict[str, tuple[int, int, int, str | None]] = {}
    order: list[str] = []
    if previous is not None and previous.height:
        for row in previous.iter_rows(named=True):
            known[row["path"]] = (row["index"], row["size"], row["mtime_ns"], row["content_hash"])
            order.append(row["path"])
    current = {e.name: e for e in entries}
    new_paths = [e.name for e in entries if e.name not in known]

    def unchanged(entry: Entry) -> bool:
        old = known.get(entry.name)
        return old is not None and old[1:3] == (entry.size, entry.stamp) and old[3] is not None

    needs_hash = [p for p in order + new_paths
                  if p in current and not unchanged(current[p]) and current[p].content_hash is None]
    hashes = content_hashes(needs_hash, sources)  # read lazily, in the loop's order
    rows: list[tuple[int, str, int, int, str | None, bool]] = []
    for path in order + new_paths:
        index = known[path][0] if path in known else len(rows)
        entry = current.get(path)
        if entry is None:
            rows.append((index, path, -1, -1, None, True))
        else:
            digest = known[path][3] if unchanged(entry) else entry.content_hash or next(hashes)[1]
            rows.append((index, path, entry.size, entry.stamp, digest, False))
        if progress is not None:
            progress(1)
    return pl.DataFrame(rows, schema=MANIFEST_SCHEMA, orient="row")


def exact_duplicate_groups(manifest: pl.DataFrame) -> pl.DataFrame:
    """Groups of present, non-empty files with identical bytes: ``content_hash, indexes, count``."""
    return (
        manifest.filter(~pl.col("missing") & pl.col("content_hash").is_not_null() & (pl.col("size") > 0))
        .group_by("content_hash")
        .agg(pl.col("index").sort().alias("indexes"), pl.len().alias("count"))
        .filter(pl.col("count") > 1)
        .sort(pl.col("indexes").list.first())
    )
