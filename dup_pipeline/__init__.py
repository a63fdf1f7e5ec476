"""dup_pipeline: an open, Dagster-orchestrated data-quality pipeline for image datasets.

``import dup_pipeline as fastdup`` gives fastdup's documented Python API: ``create``, ``run``,
``load_binary`` and the ``create_*_gallery`` functions.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dup-pipeline")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"


def __getattr__(name: str):
    """Import the fastdup-compatible API lazily, so ``import dup_pipeline`` stays light."""
    from dup_pipeline.core.features import load_binary
    from dup_pipeline.core.report import galleries
    from dup_pipeline.fastdup_compat.controller import Fastdup, create, run

    api = {
        "create": create, "run": run, "Fastdup": Fastdup, "load_binary": load_binary,
        "create_duplicates_gallery": galleries.create_duplicates_gallery,
        "create_outliers_gallery": galleries.create_outliers_gallery,
        "create_stats_gallery": galleries.create_stats_gallery,
        "create_components_gallery": galleries.create_components_gallery,
        "create_similarity_gallery": galleries.create_similarity_gallery,
    }
    if name in api:
        return api[name]
    raise AttributeError(f"module 'dup_pipeline' has no attribute {name!r}")


__all__ = ["__version__", "create", "run", "load_binary", "create_duplicates_gallery", "create_outliers_gallery",
           "create_stats_gallery", "create_components_gallery", "create_similarity_gallery"]
