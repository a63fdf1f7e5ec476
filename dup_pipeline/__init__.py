"""dup_pipeline: an open, Dagster-orchestrated data-quality pipeline for image datasets.

``import dup_pipeline as fastdup`` gives fastdup's documented Python API: ``create``, ``run``,
``load_binary(_feature)``, ``save_binary_feature``, ``init_search``/``search``, the clean-up helpers
and the ``create_*_gallery`` functions.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dup-pipeline")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"


_API = {
    "create": "dup_pipeline.fastdup_compat.controller", "run": "dup_pipeline.fastdup_compat.controller",
    "Fastdup": "dup_pipeline.fastdup_compat.controller", "load_binary": "dup_pipeline.core.features",
    "load_binary_feature": "dup_pipeline.fastdup_compat.files",
    "save_binary_feature": "dup_pipeline.fastdup_compat.files",
    "init_search": "dup_pipeline.fastdup_compat.module_search", "search": "dup_pipeline.fastdup_compat.module_search",
    "vector_search": "dup_pipeline.fastdup_compat.module_search",
    "find_top_components": "dup_pipeline.fastdup_compat.cleanup",
    "delete_components": "dup_pipeline.fastdup_compat.cleanup",
    "remove_duplicates": "dup_pipeline.fastdup_compat.cleanup",
    "generate_sprite_image": "dup_pipeline.fastdup_compat.sprite",
    "create_duplicates_gallery": "dup_pipeline.fastdup_compat.module_galleries",
    "create_outliers_gallery": "dup_pipeline.fastdup_compat.module_galleries",
    "create_stats_gallery": "dup_pipeline.fastdup_compat.module_galleries",
    "create_components_gallery": "dup_pipeline.fastdup_compat.module_galleries",
    "create_similarity_gallery": "dup_pipeline.fastdup_compat.module_galleries",
}


def __getattr__(name: str):
    """Import the fastdup-compatible API lazily, so ``import dup_pipeline`` stays light."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'dup_pipeline' has no attribute {name!r}")


__all__ = ["__version__", *_API]
