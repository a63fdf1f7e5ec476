"""The work_dir's tables as the pages read them, and how one image is shown on a page."""

import os
from functools import cached_property
from pathlib import Path

import polars as pl

from dup_pipeline.core.report.thumbnails import load_thumb, thumbnail_src
from dup_pipeline.core.report.views import Tile, human_size
from dup_pipeline.core.workdir import WorkDir


def read_table(path: Path) -> pl.DataFrame | None:
    """A Parquet or CSV table, or None when the file does not exist."""
    if not path.exists():
        return None
    return pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)


def check_labels(labels: pl.DataFrame | None) -> dict[int, str]:
    """``{index: label}`` from a DataFrame with columns ``index`` and ``label``."""
    if labels is None:
        return {}
    missing = {"index", "label"} - set(labels.columns)
    if missing:
        raise ValueError(f"labels must have columns 'index' and 'label'; missing {sorted(missing)}")
    return dict(zip(labels["index"].cast(pl.Int64).to_list(), labels["label"].cast(pl.String).to_list()))


def common_root(paths: pl.Series) -> str:
    """The deepest folder holding every path (the common path of the lexicographic extremes)."""
    paths = paths.drop_nulls()
    if paths.is_empty():
        return ""
    lo, hi = str(paths.min()), str(paths.max())
    try:
        return os.path.dirname(lo) if lo == hi else os.path.commonpath([lo, hi])
    except ValueError:  # local paths mixed with URLs: no common folder
        return ""


class WorkTables:
    """Reads a work_dir's tables once and turns file names into :class:`Tile` objects."""

    def __init__(self, work: WorkDir, labels: pl.DataFrame | None = None,
                 thumbs_dir: Path | None = None) -> None:
        self.work = work
        self.labels = check_labels(labels)
        self.thumbs_dir = thumbs_dir
        self._tables: dict[Path, pl.DataFrame | None] = {}

    def table(self, path: Path) -> pl.DataFrame | None:
        if path not in self._tables:
            self._tables[path] = read_table(path)
        return self._tables[path]

    @cached_property
    def root(self) -> str:
        """The common folder of every file of the dataset ('' when unknown)."""
        manifest = self.table(self.work.manifest)
        if manifest is not None:
            return common_root(manifest["path"])
        names = [t["filename"] for t in (self.table(self.work.image_stats_parquet),
                                         self.table(self.work.bad_files_parquet)) if t is not None]
        return common_root(pl.concat(names)) if names else ""

    @cached_property
    def content_hashes(self) -> dict[int, str]:
        manifest = self.table(self.work.manifest)
        if manifest is None or "content_hash" not in manifest.columns:
            return {}
        return dict(zip(manifest["index"].to_list(), manifest["content_hash"].to_list()))

    def relative(self, path: str) -> str:
        """``path`` relative to :attr:`root` when it lies under it."""
        root = self.root
        if root and path.startswith(root.rstrip(os.sep) + os.sep):
            return path[len(root.rstrip(os.sep)) + 1:]
        return path

    def tile(self, path: str, index: int | None = None) -> Tile:
        """How the image ``path`` (manifest ``index``, for its label) is shown."""
        thumb = load_thumb(path)
        dims = f"{thumb.width}\u00d7{thumb.height}" if thumb.width else ""
        return Tile(
            src=thumbnail_src(path, self.thumbs_dir), name=self.relative(path), path=path, dims=dims,
            size=human_size(thumb.file_size), label=self.labels.get(index) if index is not None else None,
            ok=thumb.jpeg is not None,
        )
