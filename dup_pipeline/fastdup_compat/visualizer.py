"""``fd.vis``: fastdup's gallery methods, rendered by :mod:`dup_pipeline.core.report`.

fastdup's options are honoured: ``slice`` (a label, a list of labels, or ``'diff'``/``'same'``),
``label_col``, ``get_label_func``, ``group_by``, ``ascending``, ``threshold``, ``min_items``/``max_items``,
``lazy_load`` (thumbnails as files beside the page), ``max_width``, ``get_bounding_box_func`` (a callable
or dict of file name -> ``[[x1, y1, x2, y2], ...]`` outlined on the image), ``get_extra_col_func`` (file
name -> text under the image) and ``draw_bbox``: in an object-detection run each instance is shown as its
full image with its box outlined (``draw_bbox=False``: the crop, as fastdup's default). Like fastdup, each method
returns 0, except ``similarity_gallery`` which returns the pairs it drew as a DataFrame.
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.report import sections
from dup_pipeline.core.report.render import Gallery
from dup_pipeline.core.report.report import build_report
from dup_pipeline.fastdup_compat import gallery_options as opt

if TYPE_CHECKING:
    from dup_pipeline.fastdup_compat.controller import Fastdup


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    ipython = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ipython is not None and hasattr(ipython, "kernel")


def _show(gallery: Any, show: bool) -> None:
    print(f"Stored {gallery.title} in {gallery.path}")
    if show and _in_notebook():
        from IPython.display import HTML, display

        display(HTML(gallery._repr_html_()))


class Visualizer:
    """Galleries of one :class:`Fastdup` work_dir."""

    def __init__(self, fd: "Fastdup") -> None:
        self._fd = fd

    def _labels(self, label_col: str | None, get_label_func: Any) -> pl.DataFrame | None:
        names = None
        if get_label_func is not None:
            manifest = pl.read_parquet(self._fd.work.manifest, columns=["index", "path"])
            names = manifest.select("index", self._fd._names(manifest["path"]).alias("filename"))
        return opt.gallery_labels(self._fd.labels(), names, label_col, get_label_func)

    def _name(self, path: str) -> str:
        return self._fd._names(pl.Series([path], dtype=pl.String))[0]

    def _render(self, name: str, build: Any, save_path: Any, show: bool, labels: pl.DataFrame | None,
                filters: dict, options: dict[str, Any]) -> Gallery:
        gallery = opt.render(name, build, self._fd.work, save_path, labels, filters, self._name, **options)
        _show(gallery, show)
        return gallery

    def duplicates_gallery(self, save_path: str | Path | None = None, label_col: str | None = None,
                           num_images: int = 20, slice: Any = None, ascending: bool = False,
                           threshold: float | None = None, show: bool = True, get_label_func: Any = None,
                           **options: Any) -> int:
        """Pairs of duplicates and near-duplicates, most similar first (``duplicates.html``)."""
        labels = self._labels(label_col, get_label_func)
        keep = opt.pair_filter(labels, slice, "from", "to")
        self._render("duplicates", lambda t: sections.duplicates(t, num_images, threshold, not ascending),
                     save_path, show, labels, {self._fd.work.similarity_parquet: keep} if keep else {}, options)
        return 0

    def outliers_gallery(self, save_path: str | Path | None = None, label_col: str | None = None,
                         num_images: int = 20, slice: Any = None, show: bool = True, get_label_func: Any = None,
                         **options: Any) -> int:
        """The most isolated images with their nearest neighbour (``outliers.html``)."""
        options.pop("how", None)  # fastdup's 'one'/'all': our outliers are one row per image either way
        labels = self._labels(label_col, get_label_func)
        keep = opt.image_filter(labels, slice, "outlier")
        self._render("outliers", lambda t: sections.outliers(t, num_images), save_path, show, labels,
                     {self._fd.work.outliers_parquet: keep} if keep else {}, options)
        return 0

    def stats_gallery(self, save_path: str | Path | None = None, metric: str = "dark", num_images: int = 20,
                      slice: Any = None, ascending: bool | None = None, label_col: str | None = None,
                      show: bool = True, get_label_func: Any = None, **options: Any) -> int:
        """Darkest, brightest, blurriest (or any statistic): ``dark.html``, ``bright.html``, ``blur.html``."""
        if not isinstance(metric, str) or not metric.isidentifier():
            raise ConfigError(f"metric must be dark, bright, blur or an img_stats() column, got {metric!r}")
        labels = self._labels(label_col, get_label_func)
        keep = opt.image_filter(labels, slice)
        descending = None if ascending is None else not ascending
        self._render(metric, lambda t: sections.stats(t, metric, num_images, descending), save_path, show, labels,
                     {self._fd.work.image_stats_parquet: keep} if keep else {}, options)
        return 0

    def component_gallery(self, save_path: str | Path | None = None, label_col: str | None = None,
                          num_images: int = 20, slice: Any = None, group_by: str = "visual",
                          min_items: int | None = None, max_items: int | None = None, sort_by: str = "comp_size",
                          ascending: bool = False, show: bool = True, get_label_func: Any = None,
                          metric: str | None = None, **options: Any) -> int:
        """Groups of similar images (``components.html``): the ``num_images`` first by ``sort_by``
        (``comp_size`` or a ``components_info.csv`` column) and ``ascending``, drawn largest first;
        ``group_by='label'`` groups the images of components by label."""
        if metric not in (None, "size"):
            raise ConfigError(f"metric must be None or 'size' (component size), got {metric!r}")
        labels = self._labels(label_col, get_label_func)
        filters = opt.component_order(opt.component_filters(self._fd.work, labels, slice, group_by), self._fd.work,
                                      sort_by, ascending, num_images)
        self._render("components", lambda t: sections.components(t, num_images, min_items or 2, max_items),
                     save_path, show, labels, filters, options)
        return 0

    def similarity_gallery(self, save_path: str | Path | None = None, label_col: str | None = None,
                           num_images: int = 20, slice: Any = None, threshold: float | None = None,
                           show: bool = True, get_label_func: Any = None, **options: Any) -> pd.DataFrame:
        """Each image with its most similar images (``similarity.html``). Returns fastdup's table, one row
        per image: ``from, to`` (list), ``distance`` (list), ``filename_from, filename_to`` (list), with
        labels ``label``/``label2`` (lists), and with ``slice='diff'``/``'same'`` the ``score`` (% of
        neighbours with the image's label, lowest/highest first) and ``length``. The page shows the pairs
        whose labels differ (``'diff'``) or agree (``'same'``)."""
        options.pop("ascending", None)  # images with most neighbours come first
        labels = self._labels(label_col, get_label_func)
        keep = opt.pair_filter(labels, slice, "from", "to")
        work = self._fd.work
        self._render("similarity", lambda t: sections.similarity(t, num_images, threshold), save_path, show, labels,
                     {work.similarity_parquet: keep} if keep else {}, options)
        pairs = self._fd._named(pl.read_parquet(work.similarity_parquet))
        if keep is not None and slice not in opt.PAIR_SLICES:
            pairs = keep(pairs)
        return opt.neighbours_table(pairs, labels, threshold, slice).to_pandas()

    def label_gallery(self, save_path: str | Path | None = None, num_images: int = 20, show: bool = True,
                      **options: Any) -> int:
        """Likely wrong labels, each image with its labeled neighbours (``mislabels.html``)."""
        labels = self._labels(None, None)
        self._render("mislabels", lambda t: sections.mislabels(t, num_images), save_path, show, labels, {}, options)
        return 0

    def bad_files_gallery(self, save_path: str | Path | None = None, num_images: int = 20, show: bool = True,
                          **options: Any) -> int:
        """Every file that could not be used, with the reason (``bad_files.html``)."""
        self._render("bad_files", lambda t: sections.bad_files(t, num_images), save_path, show, None, {}, options)
        return 0

    def leakage_gallery(self, save_path: str | Path | None = None, num_images: int = 20, show: bool = True,
                        **options: Any) -> int:
        """Test images that duplicate training images (``leakage.html``, run mode 3 / test_dir)."""
        labels = self._labels(None, None)
        self._render("leakage", lambda t: sections.leakage(t, num_images), save_path, show, labels, {}, options)
        return 0

    def report(self, save_dir: str | Path | None = None, num_images: int = 20, show: bool = True) -> Path:
        """Every gallery plus an index page with summary counts; returns the index page's path."""
        labels = self._fd.labels()
        report = build_report(self._fd.work, save_dir, labels=None if labels.is_empty() else labels,
                              num_images=num_images)
        print(f"Stored report in {report.index_path}")
        if show and _in_notebook():
            from IPython.display import HTML, display

            display(HTML(report._repr_html_()))
        return report.index_path
