"""fastdup's Python API over dup_pipeline: ``import dup_pipeline as fastdup`` and keep your code."""
