"""Discover input images: a folder (recursive), a list file, or a Python list of paths."""

import csv
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from dup_pipeline.core.errors import InputError
from dup_pipeline.core.sources.names import is_archive, is_url, is_video

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff"}
)
LIST_FILE_EXTENSIONS = frozenset({".txt", ".csv", ".lst"})
PATH_COLUMNS = ("filename", "path", "filepath", "file", "image")

InputSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
WORKDIR_MARKER = ".dup_pipeline_workdir"

INPUT_REASONS: dict[str, str] = {
    "not_found": "listed file does not exist",
    "dangling_symlink": "symbolic link to a file that does not exist",
    "not_a_regular_file": "not a regular file (a FIFO, socket, device or folder)",
    "unreadable_folder": "folder cannot be read: its images are not included",
    "unreadable": "file cannot be read",
}
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder"}


class UnusableInput(Exception):
    """An input path that cannot be read as a file; ``reason`` is a key of :data:`INPUT_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def open_input_file(path: str) -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file, else raise :class:`UnusableInput`.

    A FIFO, socket, device or folder is never opened for reading (no hang on a pipe, no endless
    ``/dev/zero``); the type is checked before opening and again on the open descriptor.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            target = os.readlink(path)
            raise UnusableInput("dangling_symlink", f"symbolic link to {target!r}, which does not exist") from None
        raise UnusableInput("not_found", INPUT_REASONS["not_found"]) from None
    except OSError as exc:
        raise UnusableInput("unreadable", exc.strerror or type(exc).__name__) from None
    _check_regular(path, st.st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UnusableInput("unreadable", exc.strerror or type(exc).__name__) from None
    try:
        _check_regular(path, os.fstat(fd).st_mode)  # replaced by a FIFO or device since the stat
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_regular(path: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            raise UnusableInput("unreadable_folder", f"folder cannot be read ({exc.strerror or exc}): "
                                "its images are not included") from None
    raise UnusableInput("not_a_regular_file", f"{_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, "
                        "not a regular file: never read")


def is_input_file(name: str) -> bool:
    """An image, a shard (.tar, .tar.gz, .tgz, .zip) or a video (.mp4, .avi, .mov, .mkv, .webm), by name."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS or is_archive(name) or is_video(name)


def discover_files(source: InputSpec) -> list[str]:
    """Return the absolute, sorted, de-duplicated image paths named by ``source``.

    A folder is scanned recursively for images, shards and videos (symlinked folders are
    followed once; loops are cut). Folders holding a work_dir marker (:data:`WORKDIR_MARKER`, in
    every work_dir) are never scanned, so outputs such as gallery thumbnails are not taken for
    images. A sub-folder that cannot be read is returned as an entry itself, so it is reported
    as a bad file (``unreadable_folder``) instead of its images being silently left out.
    A ``.txt``/``.csv``/``.lst`` file lists one path per line
    (a CSV's ``filename``/``path``/``filepath``/``file``/``image`` column, else its first column, skipping a
    header row; relative paths are taken relative to
    the list file's folder; URLs are kept). A list or tuple of paths and URLs is used as given.
    Listed files are kept even when their extension is not an image's, so they are reported as
    bad files later.
    """
    if isinstance(source, (list, tuple)):
        paths: Iterable[str] = (p if is_url(p) else os.path.abspath(p) for p in map(os.fspath, source))
    else:
        root = Path(source)
        if root.is_dir():
            if (root / WORKDIR_MARKER).exists():
                raise InputError(f"input {str(root)!r} is a dup_pipeline work_dir, not a folder of images")
            try:
                with os.scandir(root):
                    pass
            except OSError as exc:
                raise InputError(f"input folder {str(root)!r} cannot be read: {exc.strerror or exc}") from None
            paths = _scan_folder(root)
        elif root.is_file() and root.suffix.lower() in LIST_FILE_EXTENSIONS:
            paths = _read_list_file(root)
        elif root.is_file():
            raise InputError(
                f"input {str(root)!r} is a file but not a list file: pass a folder, a list file "
                f"({', '.join(sorted(LIST_FILE_EXTENSIONS))}) or a list of paths"
            )
        elif root.exists():
            raise InputError(f"input {str(root)!r} is neither a folder nor a regular file (a FIFO, socket or "
                             "device): pass a folder, a list file or a list of paths")
        else:
            raise InputError(f"input {str(root)!r} does not exist")
    return sorted(set(paths))


def _scan_folder(root: Path) -> Iterable[str]:
    unreadable: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()

    def on_error(error: OSError) -> None:
        unreadable.append(os.path.abspath(error.filename))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            unreadable.append(os.path.abspath(dirpath))
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs or WORKDIR_MARKER in filenames:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in filenames:
            if is_input_file(name):
                yield os.path.abspath(os.path.join(dirpath, name))
    yield from unreadable


def _read_list_file(list_file: Path) -> Iterable[str]:
    base = list_file.parent
    with open(list_file, newline="", encoding="utf-8-sig") as handle:
        if list_file.suffix.lower() == ".csv":
            rows = list(csv.reader(handle))
            column = 0
            header = [c.strip().lower() for c in rows[0]] if rows else []
            named = [name for name in PATH_COLUMNS if name in header]
            if named:
                column = header.index(named[0])
                rows = rows[1:]
            elif rows and rows[0] and not is_input_file(rows[0][0].strip()):
                rows = rows[1:]  # a header row with another name
            entries = [row[column].strip() for row in rows if len(row) > column]
        else:
            entries = [line.strip() for line in handle]
    for entry in entries:
        if entry and not entry.startswith("#"):
            yield entry if is_url(entry) else os.path.abspath(os.path.join(base, os.path.expanduser(entry)))
