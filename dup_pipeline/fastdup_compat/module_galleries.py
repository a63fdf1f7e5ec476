"""fastdup v0's ``create_*_gallery(file, save_path, ...)``: the file names its work_dir.

They take fastdup's options (see :mod:`dup_pipeline.fastdup_compat.visualizer`) and return what
fastdup returns: 0, or the pairs drawn (a DataFrame) for ``create_similarity_gallery``.
"""

import os
from pathlib import Path
from typing import Any

import pandas as pd

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.fastdup_compat.controller import Fastdup

PathLike = str | os.PathLike[str]


def _fd(file_or_dir: PathLike) -> tuple[Fastdup, str]:
    if isinstance(file_or_dir, pd.DataFrame):
        raise ConfigError("pass the work_dir's CSV file (or the work_dir), not a DataFrame")
    path = Path(file_or_dir)
    return (Fastdup(path), "") if path.is_dir() else (Fastdup(path.parent), path.name)


def create_duplicates_gallery(similarity_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                              descending: bool = True, **options: Any) -> int:
    """Pairs of ``similarity.csv``'s work_dir, most similar first; given ``outliers.csv``, the outliers."""
    fd, name = _fd(similarity_file)
    if name.startswith("outliers"):
        return fd.vis.outliers_gallery(save_path, num_images=num_images, **options)
    return fd.vis.duplicates_gallery(save_path, num_images=num_images, ascending=not descending, **options)


def create_outliers_gallery(outliers_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                            **options: Any) -> int:
    """The most isolated images of ``outliers.csv``'s work_dir."""
    options.pop("descending", None)
    return _fd(outliers_file)[0].vis.outliers_gallery(save_path, num_images=num_images, **options)


def create_stats_gallery(stats_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                         metric: str = "blur", descending: bool | None = None, **options: Any) -> int:
    """Images ranked by ``metric`` (``dark``, ``bright``, ``blur`` or an ``atrain_stats.csv`` column);
    ``descending=None``: the metric's own order (darkest, brightest, blurriest first; else lowest first)."""
    if descending is None and metric not in ("dark", "bright", "blur"):
        descending = False
    return _fd(stats_file)[0].vis.stats_gallery(save_path, metric=metric, num_images=num_images,
                                                ascending=None if descending is None else not descending,
                                                **options)


def create_components_gallery(work_dir: PathLike, save_path: PathLike | None, num_images: int = 20,
                              descending: bool = True, **options: Any) -> int:
    """The largest groups of similar images."""
    return _fd(work_dir)[0].vis.component_gallery(save_path, num_images=num_images, ascending=not descending,
                                                  **options)


def create_similarity_gallery(similarity_file: PathLike, save_path: PathLike | None, num_images: int = 20,
                              **options: Any) -> pd.DataFrame:
    """Each image with its most similar images; returns the pairs drawn."""
    for ignored in ("descending", "min_items", "max_items"):
        options.pop(ignored, None)
    return _fd(similarity_file)[0].vis.similarity_gallery(save_path, num_images=num_images, **options)
