"""One HTML gallery per finding, read from a work_dir's tables (fastdup's galleries, without overwrites).

Every function takes ``(work, save_path=None, num_images=20, labels=None, ...)`` and returns a
:class:`Gallery`. ``save_path``: None -> ``<work_dir>/galleries/<name>.html``; a folder ->
``<folder>/<name>.html``; a path ending in ``.html`` -> that file. ``labels``: a DataFrame with
columns ``index`` (manifest index) and ``label``. Options of every gallery: ``inline=False`` writes
the thumbnails to ``thumbs/`` beside the page instead of inlining them; ``nav`` (links of the page
header, a list of :class:`NavLink`) and ``dataset_name`` (shown in the header).

The ``create_*_gallery`` functions are fastdup v0's: their first argument is a fastdup CSV (whose
folder is the work_dir; the pages read its Parquet siblings, which carry file names) or the work_dir.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.image_issues import ISSUES, issue_thresholds
from dup_pipeline.core.report import sections
from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.report.render import (
    Gallery,
    NavLink,
    Section,
    publish,
    resolve_save_path,
)
from dup_pipeline.core.report.sections import STATS_METRICS
from dup_pipeline.core.workdir import WorkDir

WorkLike = WorkDir | str | os.PathLike[str]
SavePath = str | os.PathLike[str] | None


def _gallery(name: str, build: Callable[[WorkTables], Section], work: WorkLike, save_path: SavePath,
             labels: pl.DataFrame | None, inline: bool = True, nav: list[NavLink] | tuple = (),
             dataset_name: str | None = None) -> Gallery:
    work = work if isinstance(work, WorkDir) else WorkDir(work)
    path = resolve_save_path(save_path, work, name)
    tables = WorkTables(work, labels, None if inline else path.parent)
    return publish(build(tables), path, tables, nav, dataset_name)


def label_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                  labels: pl.DataFrame | None = None, **options) -> Gallery:
    """Likely wrong labels, each image with its labeled neighbours (``mislabels.html``)."""
    return _gallery("mislabels", lambda t: sections.mislabels(t, num_images), work, save_path, labels, **options)


def duplicates_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                       labels: pl.DataFrame | None = None, threshold: float | None = None,
                       descending: bool = True, **options) -> Gallery:
    """Most similar pairs side by side (``duplicates.html``)."""
    return _gallery("duplicates", lambda t: sections.duplicates(t, num_images, threshold, descending), work,
                    save_path, labels, **options)


def outliers_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                     labels: pl.DataFrame | None = None, **options) -> Gallery:
    """Most isolated images with their nearest neighbour (``outliers.html``)."""
    return _gallery("outliers", lambda t: sections.outliers(t, num_images), work, save_path, labels,
                    **options)


def stats_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                  labels: pl.DataFrame | None = None, metric: str = "blur", descending: bool | None = None,
                  **options) -> Gallery:
    """Images ranked by ``metric``: ``dark``, ``bright``, ``blur`` or a statistics column (``<metric>.html``).

    ``descending=None`` uses the metric's own order: darkest, brightest, blurriest, else highest first.
    """
    if not re.fullmatch(r"\w+", metric):
        raise ValueError(f"metric must be a column name, got {metric!r}")
    return _gallery(metric, lambda t: sections.stats(t, metric, num_images, descending), work, save_path,
                    labels, **options)


def image_issues_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                         labels: pl.DataFrame | None = None, issue: str = "grayscale",
                         thresholds: dict[str, float] | str | None = None, **options) -> Gallery:
    """Images with one image issue (``<issue>.html``): ``odd_aspect_ratio``, ``odd_size``,
    ``grayscale``, ``low_information`` or ``near_constant``; ``thresholds`` override the defaults."""
    if issue not in ISSUES:
        raise ConfigError(f"issue must be one of {', '.join(ISSUES)}, got {issue!r}")
    limits = issue_thresholds(thresholds) if thresholds is not None else None
    return _gallery(issue, lambda t: sections.image_issue(t, issue, num_images, limits), work, save_path, labels,
                    **options)


def component_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                      labels: pl.DataFrame | None = None, min_items: int = 2, max_items: int | None = None,
                      **options) -> Gallery:
    """The ``num_images`` largest groups of similar images (``components.html``)."""
    return _gallery("components", lambda t: sections.components(t, num_images, min_items, max_items), work,
                    save_path, labels, **options)


def similarity_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                       labels: pl.DataFrame | None = None, threshold: float | None = None,
                       **options) -> Gallery:
    """Query images with their similar images, most neighbours first (``similarity.html``)."""
    return _gallery("similarity", lambda t: sections.similarity(t, num_images, threshold), work, save_path,
                    labels, **options)


def bad_files_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                      labels: pl.DataFrame | None = None, **options) -> Gallery:
    """Table of unreadable or rejected files (``bad_files.html``)."""
    return _gallery("bad_files", lambda t: sections.bad_files(t, num_images), work, save_path, labels,
                    **options)


def leakage_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20,
                    labels: pl.DataFrame | None = None, **options) -> Gallery:
    """Test images found in the training set, from ``cross_similarity.parquet`` (``leakage.html``)."""
    return _gallery("leakage", lambda t: sections.leakage(t, num_images), work, save_path, labels, **options)


def _work_dir(file_or_dir: WorkLike) -> tuple[WorkDir, str]:
    """The work_dir named by a CSV in it (or by the folder itself), and the CSV's name."""
    path = Path(file_or_dir)
    return (WorkDir(path), "") if path.is_dir() else (WorkDir(path.parent), path.name)


def create_duplicates_gallery(similarity_file: WorkLike, save_path: SavePath, num_images: int = 20,
                              descending: bool = True, threshold: float | None = None,
                              labels: pl.DataFrame | None = None, **options) -> Gallery:
    """Pairs from ``similarity.csv``; given ``outliers.csv``, the outliers gallery (as fastdup does)."""
    work, name = _work_dir(similarity_file)
    if name.startswith("outliers"):
        return outliers_gallery(work, save_path, num_images, labels, **options)
    return duplicates_gallery(work, save_path, num_images, labels, threshold=threshold, descending=descending,
                              **options)


def create_outliers_gallery(outliers_file: WorkLike, save_path: SavePath, num_images: int = 20,
                            labels: pl.DataFrame | None = None, **options) -> Gallery:
    """The most isolated images of ``outliers.csv``'s work_dir."""
    return outliers_gallery(_work_dir(outliers_file)[0], save_path, num_images, labels, **options)


def create_stats_gallery(stats_file: WorkLike, save_path: SavePath, num_images: int = 20,
                         metric: str = "blur", descending: bool | None = None,
                         labels: pl.DataFrame | None = None, **options) -> Gallery:
    """Images ranked by ``metric`` (``dark``, ``bright``, ``blur`` or a statistics column).

    ``descending=None``: the metric's own order (darkest, brightest, blurriest first), and lowest first
    for other columns as in fastdup.
    """
    if descending is None and metric not in STATS_METRICS:
        descending = False
    return stats_gallery(_work_dir(stats_file)[0], save_path, num_images, labels, metric=metric,
                         descending=descending, **options)


def create_components_gallery(work_dir: WorkLike, save_path: SavePath, num_images: int = 20,
                              labels: pl.DataFrame | None = None, min_items: int = 2,
                              max_items: int | None = None, **options) -> Gallery:
    """The largest groups of similar images."""
    return component_gallery(_work_dir(work_dir)[0], save_path, num_images, labels, min_items=min_items,
                             max_items=max_items, **options)


def create_similarity_gallery(similarity_file: WorkLike, save_path: SavePath, num_images: int = 20,
                              threshold: float | None = None, labels: pl.DataFrame | None = None,
                              **options) -> Gallery:
    """Query images with their most similar images."""
    return similarity_gallery(_work_dir(similarity_file)[0], save_path, num_images, labels,
                              threshold=threshold, **options)
