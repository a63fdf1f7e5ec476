"""dup_pipeline: an open, Dagster-orchestrated data-quality pipeline for image datasets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dup-pipeline")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
