"""Discover input images: a folder (recursive), a list file, or a Python list of paths."""

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from dup_pipeline.core.errors import InputError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff"}
)
LIST_FILE_EXTENSIONS = frozenset({".txt", ".csv", ".lst"})
PATH_COLUMNS = ("filename", "path", "filepath", "file", "image")

InputSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]



def discover_files(source: InputSpec) -> list[str]:
    """Return the absolute, sorted, de-duplicated image paths named by ``source``.

    A folder is scanned recursively for files with an image extension (symlinked folders are
    followed once; loops are cut). A ``.txt``/``.csv``/``.lst`` file lists one path per line
    (a CSV's ``filename``/``path``/``filepath``/``file``/``image`` column, else its first column, skipping a
    header row; relative paths are taken relative to
    the list file's folder). A list or tuple of paths is used as given. Listed files are kept
    even when their extension is not an image's, so they are reported as bad files later.
    """
    if isinstance(source, (list, tuple)):
        paths: Iterable[str] = (os.path.abspath(os.fspath(p)) for p in source)
    else:
        root = Path(source)
        if root.is_dir():
            paths = _scan_folder(root)
        elif root.is_file() and root.suffix.lower() in LIST_FILE_EXTENSIONS:
            paths = _read_list_file(root)
        elif root.is_file():
            raise InputError(
                f"input {str(root)!r} is a file but not a list file: pass a folder, a list file "
                f"({', '.join(sorted(LIST_FILE_EXTENSIONS))}) or a list of paths"
            )
        else:
            raise InputError(f"input {str(root)!r} does not exist")
    return sorted(set(paths))


def _scan_folder(root: Path) -> Iterable[str]:
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield os.path.abspath(os.path.join(dirpath, name))


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
            elif rows and rows[0] and os.path.splitext(rows[0][0].strip())[1].lower() not in IMAGE_EXTENSIONS:
                rows = rows[1:]  # a header row with another name
            entries = [row[column].strip() for row in rows if len(row) > column]
        else:
            entries = [line.strip() for line in handle]
    for entry in entries:
        if entry and not entry.startswith("#"):
            yield os.path.abspath(os.path.join(base, os.path.expanduser(entry)))
