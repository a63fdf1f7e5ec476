"""Members of ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` shards (the webdataset layout included).

Shards are read in place, in one sequential pass (a tar as a stream, a zip in the order of its
members in the file), never extracted to disk. Only regular members are read. A member that
cannot be read (truncated data, bad CRC) comes with an error and the rest of the shard is kept;
a tar member whose header is damaged cannot be named and is skipped, the members after it are
kept (the tar is read with ``ignore_zeros``).
"""

import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

ARCHIVE_ERRORS = (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error, ValueError,
                  NotImplementedError, RuntimeError)


class ShardError(Exception):
    """The shard cannot be opened as an archive at all."""


@dataclass(frozen=True)
class Member:
    """A regular member: its normalized name inside the shard, size, and bytes or the read error."""

    name: str
    size: int
    data: bytes | None = None
    error: str | None = None


def _clean(name: str) -> str | None:
    """``./a/b.jpg`` → ``a/b.jpg``; names escaping the shard (``../x``) are refused."""
    name = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    return None if name in ("", ".") or name.startswith("../") or name == ".." else name


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def iter_members(handle: IO[bytes], shard: str, wanted: Callable[[str], bool]) -> Iterator[Member]:
    """Read the members whose cleaned name satisfies ``wanted``, in file order, in one pass.

    ``handle`` must be seekable for a zip. Raises :class:`ShardError` when the shard cannot be
    opened as an archive; damage after the start ends the pass with the members read so far.
    """
    if shard.lower().endswith(".zip"):
        yield from _zip_members(handle, wanted)
    else:
        yield from _tar_members(handle, wanted)


def _tar_members(handle: IO[bytes], wanted: Callable[[str], bool]) -> Iterator[Member]:
    try:
        archive = tarfile.open(fileobj=handle, mode="r|*", ignore_zeros=True)
    except ARCHIVE_ERRORS as exc:
        raise ShardError(_error(exc)) from None
    with archive:
        entries = iter(archive)
        while True:
            try:
                info = next(entries)
            except StopIteration:
                return
            except ARCHIVE_ERRORS:
                return  # the rest of the stream is unreadable: its members cannot be named
            name = _clean(info.name) if info.isreg() else None
            if name is None or not wanted(name):
                continue
            try:
                extracted = archive.extractfile(info)
                data = extracted.read() if extracted is not None else b""
            except ARCHIVE_ERRORS as exc:
                yield Member(name, info.size, error=_error(exc))
                return  # a stream cannot be resynchronized after a failed read
            if len(data) != info.size:
                yield Member(name, info.size, error=f"truncated: {len(data)} of {info.size} bytes")
                return
            yield Member(name, info.size, data)


def _zip_members(handle: IO[bytes], wanted: Callable[[str], bool]) -> Iterator[Member]:
    try:
        archive = zipfile.ZipFile(handle)
    except ARCHIVE_ERRORS as exc:
        raise ShardError(_error(exc)) from None
    with archive:
        for info in sorted(archive.infolist(), key=lambda i: i.header_offset):
            name = None if info.is_dir() else _clean(info.filename)
            if name is None or not wanted(name):
                continue
            try:
                yield Member(name, info.file_size, archive.read(info))
            except ARCHIVE_ERRORS as exc:
                yield Member(name, info.file_size, error=_error(exc))
