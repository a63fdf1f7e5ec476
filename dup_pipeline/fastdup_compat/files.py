"""fastdup's file names and shapes in a work_dir, written by the facade after a run.

The pipeline writes its own names (``features.dat``, ``faiss.index``, ``components_info.csv``,
``outliers.csv`` as ``outlier,nearest,distance``); code written for fastdup reads
``atrain_features.dat`` (+ ``.csv``), ``atrain_features.bad.csv``, ``nnf.index``,
``component_info.csv`` (``component_id,count,mean,min,max``) and ``outliers.csv`` as
``from,to,distance``. fastdup v0 (``fastdup.run``) lists file paths in ``similarity.csv`` and
``outliers.csv``; v1 (``fastdup.create``) lists ids. Every file is written atomically.
"""

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from dup_pipeline.core.atomic import atomic_path, write_csv, write_json
from dup_pipeline.core.config import PipelineConfig
from dup_pipeline.core.errors import ConfigError, WorkDirError
from dup_pipeline.core.features import matrix_width
from dup_pipeline.core.workdir import WorkDir

FEATURES = "atrain_features.dat"
BAD = "atrain_features.bad.csv"
NNF_INDEX = "nnf.index"
COMPONENT_INFO = "component_info.csv"
CONFIG = "config.json"
ANNOTATIONS = "fastdup_annotations.csv"  # run(annotations=DataFrame) as resolved: filename,label,split
FASTDUP_FILES = (FEATURES, FEATURES + ".csv", BAD, NNF_INDEX, COMPONENT_INFO, CONFIG, ANNOTATIONS)

Rename = Callable[[pl.Series], pl.Series]


def _link(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to (or a copy of) ``source``, atomically."""
    if not source.exists():
        target.unlink(missing_ok=True)
        return
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, tmp)


def write_fastdup_files(work: WorkDir, names: Rename, paths_in_csv: bool) -> None:
    """Write fastdup's names beside ours; ``names`` maps our absolute paths to the file names shown.

    ``atrain_features.dat`` is a hard link to ``features.dat``, not a copy (no second 5 KB per image):
    a rerun that appends to ``features.dat`` in place changes it too, and this call, made after every
    run, rewrites ``atrain_features.dat.csv`` to match (a copy kept from an earlier run must be a copy).
    """
    _link(work.features_dat, work.root / FEATURES)
    _link(work.faiss_index, work.root / NNF_INDEX)
    if work.features_parquet.exists():
        index = pl.read_parquet(work.features_parquet, columns=["index", "filename"])
        write_csv(index.with_columns(names(index["filename"])), work.root / (FEATURES + ".csv"))
    if work.bad_files_parquet.exists():
        bad = pl.read_parquet(work.bad_files_parquet).select("index", "filename", "error_code", "filesize")
        write_csv(bad.with_columns(names(bad["filename"])), work.root / BAD)
    if work.components_info_csv.exists():
        info = pl.read_csv(work.components_info_csv).filter(pl.col("count") > 1)
        write_csv(info.select("component_id", "count", pl.col("mean_distance").alias("mean"),
                              pl.col("min_distance").alias("min"), pl.col("max_distance").alias("max")),
                  work.root / COMPONENT_INFO)
    if work.outliers_parquet.exists():
        out = pl.read_parquet(work.outliers_parquet)
        ends = ((names(out["filename_outlier"]), names(out["filename_nearest"])) if paths_in_csv
                else (out["outlier"], out["nearest"]))
        write_csv(pl.DataFrame({"from": ends[0], "to": ends[1], "distance": out["distance"]}), work.outliers_csv)
    if paths_in_csv and work.similarity_parquet.exists():
        sim = pl.read_parquet(work.similarity_parquet)
        write_csv(sim.select(names(sim["filename_from"]).alias("from"), names(sim["filename_to"]).alias("to"),
                             "distance"), work.similarity_csv)


def write_config(work: WorkDir, input_dir: Any, config: PipelineConfig, test_dir: Any = None) -> None:
    """fastdup's ``config.json``: the run's input and settings (what ``fd.config`` and ``summary`` read)."""
    def shown(source: Any) -> Any:
        return source if source is None or isinstance(source, (list, tuple)) else str(source)

    write_json({"input_dir": shown(input_dir), "test_dir": shown(test_dir),
                "work_dir": str(work.root), "model_path": config.model.model_path,
                **dataclasses.asdict(config.graph)}, work.root / CONFIG)


def read_config(work: WorkDir) -> dict[str, Any]:
    path = work.root / CONFIG
    if not path.exists():
        raise WorkDirError(f"{CONFIG} not found in {work.root}: call run() first")
    return json.loads(path.read_text())


def remove_fastdup_files(work: WorkDir) -> None:
    """Delete the files :func:`write_fastdup_files` adds (``overwrite=True``)."""
    for name in FASTDUP_FILES:
        (work.root / name).unlink(missing_ok=True)


def load_binary_feature(filename: str | os.PathLike[str], d: int | None = None) -> tuple[list[str], np.ndarray]:
    """fastdup's ``load_binary_feature``: ``(file names, n x d float32 matrix)`` of a features file or work_dir.

    A work_dir reads ``atrain_features.dat`` (or our ``features.dat``). ``d`` defaults to the file's
    width (the default model's vectors are 1280 wide; fastdup's default 576 is its closed model's);
    a ``d`` that does not match the file is an error.
    """
    path = Path(filename)
    if path.is_dir():
        path = next((path / n for n in (FEATURES, "features.dat") if (path / n).exists()), path / FEATURES)
    csv = Path(f"{path}.csv")
    if not path.is_file() or not csv.is_file():
        raise WorkDirError(f"binary features not found: {str(path)!r} and {str(csv)!r} must both exist")
    files = pd.read_csv(csv)["filename"].tolist()
    matrix = np.fromfile(path, dtype="<f4")
    width = matrix_width(path.parent)  # a work_dir's features.dat grows in place: its width is recorded
    if not files:
        return [], matrix.reshape(0, d or width or 0)
    if width and d in (None, width) and matrix.size != len(files) * width:
        raise WorkDirError(f"{path} holds {matrix.size // width} rows of d={width} but {csv} lists "
                           f"{len(files)} files: the features grew since the list was written; run the "
                           "analysis again through this API (fd.run) to rewrite it")
    d = d or width or matrix.size // len(files)
    if matrix.size != len(files) * d:
        raise ConfigError(f"d={d} does not match {path}: {matrix.size} floats for {len(files)} files "
                          f"(d={matrix.size // len(files)})")
    return files, matrix.reshape(len(files), d)


def save_binary_feature(save_path: str | os.PathLike[str], filenames: list[str], np_array: np.ndarray,
                        save_prefix: str = "") -> int:
    """fastdup's ``save_binary_feature``: ``<save_prefix><save_path>/atrain_features.dat`` + ``.csv``; 0 on success."""
    if not str(save_path).strip():
        raise ConfigError("save_path must be a non-empty folder name")
    if not isinstance(filenames, list) or not filenames or not all(isinstance(f, str) for f in filenames):
        raise ConfigError("filenames must be a non-empty list of file names")
    if not isinstance(np_array, np.ndarray) or np_array.dtype != np.float32 or np_array.ndim != 2:
        raise ConfigError("np_array must be a 2-D float32 numpy array (one row per file)")
    if np_array.shape[0] != len(filenames):
        raise ConfigError(f"np_array has {np_array.shape[0]} rows for {len(filenames)} filenames")
    folder = Path(save_prefix + str(save_path))
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(pl.DataFrame({"index": range(len(filenames)), "filename": filenames}), folder / (FEATURES + ".csv"))
    with atomic_path(folder / FEATURES) as tmp:
        np.ascontiguousarray(np_array).tofile(tmp)
    return 0
