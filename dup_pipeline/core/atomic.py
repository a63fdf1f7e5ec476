"""Atomic file writes: write to a temporary file in the target folder, then rename."""

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def _temp_file(folder: Path, name: str) -> Iterator[Path]:
    """A temporary file in ``folder`` (``.<name>.*.tmp``), removed unless renamed away."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, target: Path) -> None:
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    target = Path(path)
    with _temp_file(target.parent, target.name) as tmp:
        yield tmp
        _publish(tmp, target)


def write_content_addressed(folder: str | os.PathLike[str], stem: str, suffix: str,
                            write: Callable[[Path], None]) -> Path:
    """Write a file with ``write(tmp)`` and publish it atomically as ``<stem>.<digest><suffix>``.

    The name carries a BLAKE2b-128 digest of the bytes, so a file of that name never changes: a
    commit marker that names several such files names exactly their contents, whatever
    happened to other files before or after.
    """
    folder = Path(folder)
    with _temp_file(folder, stem + suffix) as tmp:
        write(tmp)
        with open(tmp, "rb") as handle:
            digest = hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
        target = folder / f"{stem}.{digest}{suffix}"
        _publish(tmp, target)
    return target


def remove_temp_files(folder: str | os.PathLike[str], older_than_seconds: float = 0.0) -> int:
    """Delete the temporary files :func:`atomic_path` leaves when a process is killed mid-write,
    in ``folder`` and its sub-folders (symbolic links are not followed): call it only while no
    other process writes there."""
    now = time.time()
    removed = 0
    for root, _, names in os.walk(folder):
        for path in (Path(root) / name for name in names if name.startswith(".") and name.endswith(".tmp")):
            try:
                if now - path.stat().st_mtime >= older_than_seconds:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` as Parquet atomically and return the final path."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)
    return Path(path)


def write_csv(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` as CSV atomically and return the final path."""
    with atomic_path(path) as tmp:
        df.write_csv(tmp)
    return Path(path)


def write_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
