"""``fd.vis``: fastdup's gallery methods, rendered by :mod:`dup_pipeline.core.report`."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dup_pipeline.core.report import galleries
from dup_pipeline.core.report.report import build_report

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
    """Galleries of one :class:`Fastdup` work_dir; each returns 0 like fastdup and prints the file written."""

    def __init__(self, fd: "Fastdup") -> None:
        self._fd = fd

    def _render(self, function: Any, save_path: str | Path | None, show: bool, **options: Any) -> int:
        labels = self._fd.labels()
        gallery = function(self._fd.work, save_path, labels=None if labels.is_empty() else labels, **options)
        _show(gallery, show)
        return 0

    def duplicates_gallery(self, save_path: str | Path | None = None, num_images: int = 20, threshold: float | None = None,
                           ascending: bool = False, show: bool = True, **_: Any) -> int:
        """Pairs of duplicates and near-duplicates, most similar first (``duplicates.html``)."""
        return self._render(galleries.duplicates_gallery, save_path, show, num_images=num_images, threshold=threshold,
                            descending=not ascending)

    def outliers_gallery(self, save_path: str | Path | None = None, num_images: int = 20, show: bool = True,
                         **_: Any) -> int:
        """The most isolated images with their nearest neighbour (``outliers.html``)."""
        return self._render(galleries.outliers_gallery, save_path, show, num_images=num_images)

    def stats_gallery(self, save_path: str | Path | None = None, metric: str = "dark", num_images: int = 20,
                      ascending: bool | None = None, show: bool = True, **_: Any) -> int:
        """Darkest, brightest, blurriest (or any statistic): ``dark.html``, ``bright.html``, ``blur.html``."""
        return self._render(galleries.stats_gallery, save_path, show, num_images=num_images, metric=metric,
                            descending=None if ascending is None else not ascending)

    def component_gallery(self, save_path: str | Path | None = None, num_images: int = 20, min_items: int = 2,
                          max_items: int | None = None, show: bool = True, **_: Any) -> int:
        """Groups of similar images, largest first (``components.html``)."""
        return self._render(galleries.component_gallery, save_path, show, num_images=num_images,
                            min_items=min_items, max_items=max_items)

    def similarity_gallery(self, save_path: str | Path | None = None, num_images: int = 20, show: bool = True,
                           **_: Any) -> int:
        """Each image with its most similar images (``similarity.html``)."""
        return self._render(galleries.similarity_gallery, save_path, show, num_images=num_images)

    def label_gallery(self, save_path: str | Path | None = None, num_images: int = 20, show: bool = True,
                      **_: Any) -> int:
        """Likely wrong labels, each image with its labeled neighbours (``mislabels.html``)."""
        return self._render(galleries.label_gallery, save_path, show, num_images=num_images)

    def bad_files_gallery(self, save_path: str | Path | None = None, show: bool = True, **_: Any) -> int:
        """Every file that could not be used, with the reason (``bad_files.html``)."""
        return self._render(galleries.bad_files_gallery, save_path, show)

    def leakage_gallery(self, save_path: str | Path | None = None, num_images: int = 20, show: bool = True,
                        **_: Any) -> int:
        """Test images that duplicate training images (``leakage.html``, run mode 3 / test_dir)."""
        return self._render(galleries.leakage_gallery, save_path, show, num_images=num_images)

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
