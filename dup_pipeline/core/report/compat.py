"""fastdup v0's ``create_*_gallery`` functions: the first argument is a fastdup CSV or the work_dir.

The CSV's folder is the work_dir; the pages read its Parquet tables (which carry file names).
"""

import os
from pathlib import Path

import polars as pl

from dup_pipeline.core.report import galleries
from dup_pipeline.core.report.render import Gallery
from dup_pipeline.core.workdir import WorkDir

PathLike = str | os.PathLike[str]


def _work_dir(file_or_dir: PathLike) -> tuple[WorkDir, str]:
    """The work_dir named by a CSV in it (or by the folder itself), and the CSV's name."""
    path = Path(file_or_dir)
    return (WorkDir(path), "") if path.is_dir() else (WorkDir(path.parent), path.name)


def create_duplicates_gallery(similarity_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                              descending: bool = True, threshold: float | None = None,
                              labels: pl.DataFrame | None = None, **options) -> Gallery:
    """Pairs from ``similarity.csv``; given ``outliers.csv`` it draws the outliers gallery, as fastdup does."""
    work, name = _work_dir(similarity_file)
    if name.startswith("outliers"):
        return galleries.outliers_gallery(work, save_path, num_images, labels, **options)
    return galleries.duplicates_gallery(work, save_path, num_images, labels, threshold=threshold,
                                        descending=descending, **options)


def create_outliers_gallery(outliers_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                            labels: pl.DataFrame | None = None, **options) -> Gallery:
    """The most isolated images of ``outliers.csv``'s work_dir."""
    return galleries.outliers_gallery(_work_dir(outliers_file)[0], save_path, num_images, labels, **options)


def create_stats_gallery(stats_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                         metric: str = "blur", descending: bool | None = None, labels: pl.DataFrame | None = None,
                         **options) -> Gallery:
    """Images ranked by ``metric`` (``dark``, ``bright``, ``blur`` or a statistics column).

    ``descending=None``: the metric's own order (darkest, brightest, blurriest first), and lowest first
    for other columns as in fastdup.
    """
    if descending is None and metric not in galleries.STATS_METRICS:
        descending = False
    return galleries.stats_gallery(_work_dir(stats_file)[0], save_path, num_images, labels, metric=metric,
                                   descending=descending, **options)


def create_components_gallery(work_dir: PathLike, save_path: PathLike | None, num_images: int = 20,
                              labels: pl.DataFrame | None = None, min_items: int = 2, max_items: int | None = None,
                              **options) -> Gallery:
    """The largest groups of similar images."""
    return galleries.component_gallery(_work_dir(work_dir)[0], save_path, num_images, labels, min_items=min_items,
                                       max_items=max_items, **options)


def create_similarity_gallery(similarity_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                              threshold: float | None = None, labels: pl.DataFrame | None = None,
                              **options) -> Gallery:
    """Query images with their most similar images."""
    return galleries.similarity_gallery(_work_dir(similarity_file)[0], save_path, num_images, labels,
                                        threshold=threshold, **options)
