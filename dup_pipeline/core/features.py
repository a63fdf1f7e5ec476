"""The dataset's feature matrix, assembled from the ranges into fastdup's ``features.dat`` layout.

``features.dat`` is raw float32, one L2-normalized row per good image in manifest order;
``features.dat.csv`` (``index,filename``) names the image of each row; ``features.json`` holds
the dimension, the row count, the model's id and which model ran and why (``model``, e.g.
``efficientnet_lite0_int8_full (auto: agreement 0.993 (min 0.988), 1.71x)``). The matrix is always
read memory-mapped.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dup_pipeline.core.atomic import atomic_path, write_csv, write_json, write_parquet
from dup_pipeline.core.errors import WorkDirError
from dup_pipeline.core.range_scan import read_range_features
from dup_pipeline.core.ranges import offset_ranges
from dup_pipeline.core.workdir import WorkDir


@dataclass(frozen=True)
class FeatureMatrix:
    """Row ``i`` of ``matrix`` is the embedding of manifest index ``index["index"][i]``."""

    index: pl.DataFrame
    matrix: np.ndarray
    model_id: str
    model: str = ""  # which model ran and why (ModelSpec.label)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


def _ranges_digest(work: WorkDir, n_rows: int, range_size: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for offset_range in offset_ranges(n_rows, range_size):
        state = work.range_dir(offset_range) / "features.json"
        digest.update(state.read_bytes() if state.exists() else b"-")
    return digest.hexdigest()


def _check_range_models(work: WorkDir, n_rows: int, range_size: int, model_id: str) -> None:
    """Every range's embeddings come from ``model_id``: one model's vectors are never mixed with
    another's (a run limited by min_offset/max_offset after the model changed re-embeds only its ranges)."""
    for offset_range in offset_ranges(n_rows, range_size):
        try:
            state = json.loads((work.range_dir(offset_range) / "features.json").read_text())
            used = json.loads(state["settings"])["model"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # never embedded: no vectors to mix
        if used != model_id:
            raise WorkDirError(f"range {offset_range.key} of {work.root} holds embeddings of model {used}, not of "
                               f"{model_id}: run without min_offset/max_offset to embed every range with one model")


def assemble_features(
    work: WorkDir, manifest: pl.DataFrame, range_size: int, model_id: str, dim: int,
    class_names: list[str] | None = None, model: str = "",
) -> FeatureMatrix:
    """Stream every range's vectors into ``features.dat`` (skipped when no range changed)."""
    _check_range_models(work, manifest.height, range_size, model_id)
    digest = _ranges_digest(work, manifest.height, range_size)
    if work.features_meta.exists() and work.features_dat.exists():
        meta = json.loads(work.features_meta.read_text())
        same_model = meta.get("model_id") == model_id and meta.get("model") == model
        if meta.get("ranges_digest") == digest and same_model:
            return load_features(work)
    parts = [read_range_features(work, r) for r in offset_ranges(manifest.height, range_size)]
    parts = [p for p in parts if p is not None and p.index.height]
    count = sum(p.index.height for p in parts)
    with atomic_path(work.features_dat) as tmp:
        if count:
            matrix = np.memmap(tmp, dtype=np.float32, mode="w+", shape=(count, dim))
            row = 0
            for part in parts:
                matrix[row : row + part.index.height] = part.vectors
                row += part.index.height
            matrix.flush()
            del matrix
    index = pl.concat([p.index for p in parts]) if parts else pl.DataFrame(
        schema={"index": pl.Int64, "top_class": pl.Int64, "top_score": pl.Float32})
    index = index.join(manifest.select("index", pl.col("path").alias("filename")), on="index", how="left")
    if class_names:
        labels = dict(enumerate(class_names))
        index = index.with_columns(
            top_label=pl.col("top_class").replace_strict(labels, default=None, return_dtype=pl.String))
    write_csv(index.select("index", "filename"), work.features_csv)
    write_parquet(index.with_row_index("row"), work.features_parquet)
    write_json({"dim": dim, "count": count, "model_id": model_id, "model": model, "ranges_digest": digest},
               work.features_meta)
    return load_features(work)


def load_features(work: WorkDir) -> FeatureMatrix:
    """The assembled matrix, memory-mapped, with its index table."""
    meta = json.loads(work.features_meta.read_text())
    index = pl.read_parquet(work.features_parquet)
    if meta["count"]:
        matrix = np.memmap(work.features_dat, dtype=np.float32, mode="r", shape=(meta["count"], meta["dim"]))
    else:
        matrix = np.empty((0, meta["dim"]), dtype=np.float32)
    return FeatureMatrix(index, matrix, meta["model_id"], meta.get("model", ""))


def load_binary(path: str | os.PathLike[str], d: int | None = None) -> tuple[list[str], np.ndarray]:
    """fastdup's ``load_binary``: the file list and the (n, d) matrix of ``features.dat``.

    Reads ``<path>.csv`` for the file names; ``d`` defaults to the file size over rows.
    """
    path = Path(path)
    files = pl.read_csv(f"{path}.csv")["filename"].to_list()
    if not files:
        return [], np.empty((0, d or 0), dtype=np.float32)
    d = d or path.stat().st_size // 4 // len(files)
    matrix = np.fromfile(path, dtype=np.float32)
    if matrix.size != len(files) * d:
        raise ValueError(f"{path}: {matrix.size} floats do not make {len(files)} rows of d={d}")
    return files, matrix.reshape(len(files), d)
