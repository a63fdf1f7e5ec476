"""The file manifest: one row per input file with a stable index and a content hash.

The manifest is append-only across reruns: a file keeps its index for as long as it is listed,
new files are appended in sorted order, files that disappeared stay as rows marked missing.
So an index means the same image across reruns and offset ranges stay stable.
"""

import hashlib
import os
from collections.abc import Callable, Sequence

import polars as pl

from dup_pipeline.core.inputs import UnusableInput, open_input_file

HASH_CHUNK = 1 << 20

MANIFEST_SCHEMA = {
    "index": pl.Int64,
    "path": pl.String,
    "size": pl.Int64,
    "mtime_ns": pl.Int64,
    "content_hash": pl.String,
    "missing": pl.Boolean,
}

Progress = Callable[[int], None]


def content_hash(path: str) -> str | None:
    """BLAKE2b-128 hex digest of the file's bytes, or None when it is not a readable regular file
    (a FIFO, device, socket or folder is never read)."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open_input_file(path) as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    except (OSError, UnusableInput):
        return None
    return digest.hexdigest()


def _stat_row(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def build_manifest(
    paths: Sequence[str],
    previous: pl.DataFrame | None = None,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """Build the manifest for ``paths`` (sorted absolute paths), reusing ``previous`` hashes.

    A file whose size and modification time are unchanged keeps its previous hash without
    being read again; everything else is hashed.
    """
    known: dict[str, tuple[int, int, int, str | None]] = {}
    order: list[str] = []
    if previous is not None and previous.height:
        for row in previous.iter_rows(named=True):
            known[row["path"]] = (row["index"], row["size"], row["mtime_ns"], row["content_hash"])
            order.append(row["path"])
    current = set(paths)
    new_paths = [p for p in paths if p not in known]
    rows: list[tuple[int, str, int, int, str | None, bool]] = []
    for path in order + new_paths:
        index = known[path][0] if path in known else len(rows)
        if path not in current:
            rows.append((index, path, -1, -1, None, True))
        else:
            size, mtime_ns = _stat_row(path)
            old = known.get(path)
            if old is not None and old[1] == size and old[2] == mtime_ns and old[3] is not None:
                digest = old[3]
            else:
                digest = content_hash(path)
            rows.append((index, path, size, mtime_ns, digest, False))
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
