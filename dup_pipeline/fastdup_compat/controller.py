"""fastdup's v1 object (``fastdup.create(work_dir, input_dir)``) and v0 ``fastdup.run``."""

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.features import load_binary, load_features
from dup_pipeline.core.inputs import InputSpec
from dup_pipeline.core.labels import LABELS_SCHEMA
from dup_pipeline.core.pipeline import RunSummary, run_pipeline
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline.fastdup_compat.params import translate
from dup_pipeline.fastdup_compat.visualizer import Visualizer

log = logging.getLogger("dup_pipeline")

def clear_outputs(work: WorkDir) -> None:
    """Delete this tool's outputs from ``work`` (``overwrite=True``), never anything else."""
    for path in work.outputs():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class Fastdup:
    """What ``fastdup.create`` returns: run the analysis, then read results and draw galleries."""

    def __init__(self, work_dir: str | os.PathLike[str] | None = None, input_dir: InputSpec | None = None) -> None:
        self.work_dir = str(Path(work_dir or "work_dir").absolute())
        self.input_dir = input_dir
        self.summary: RunSummary | None = None
        self.vis = Visualizer(self)

    @property
    def work(self) -> WorkDir:
        return WorkDir(self.work_dir)

    def run(self, input_dir: InputSpec | None = None, annotations: Any = None, overwrite: bool = False,
            **kwargs: Any) -> int:
        """Run the pipeline with fastdup's parameters; 0 on success, 1 on failure (reason logged)."""
        if kwargs.pop("version", False):
            from dup_pipeline import __version__

            print(f"dup_pipeline {__version__} (fastdup-compatible API), Apache-2.0")
            return 0
        if kwargs.get("verbose"):
            logging.basicConfig(level=logging.INFO)
        self.input_dir = input_dir if input_dir is not None else self.input_dir
        try:
            if self.input_dir is None:
                raise ConfigError("input_dir is required (fastdup.create(work_dir, input_dir) or run(input_dir=...))")
            request = translate(self.input_dir, self.work_dir, {**kwargs, "annotations": annotations})
            if overwrite:  # only once every parameter is known to be valid
                clear_outputs(self.work)
            self.summary = run_pipeline(request.config, min_offset=request.min_offset,
                                        max_offset=request.max_offset, features=request.features,
                                        run_mode=request.run_mode, test_input=request.test_input)
        except Exception as exc:  # noqa: BLE001 - fastdup's contract: log the reason and return 1
            log.error("dup_pipeline run failed: %s", exc)
            self.error = str(exc)
            return 1
        for line in self.summary.lines():
            log.info(line)
        return 0

    # results as pandas DataFrames, fastdup's column names first
    def _read(self, path: Path) -> pl.DataFrame:
        if not path.exists():
            raise FileNotFoundError(f"{path.name} not found in {self.work_dir}: call run() first")
        return pl.read_parquet(path)

    def labels(self) -> pl.DataFrame:
        """The stored labels (``index, filename, label, split``), empty when none were given."""
        path = self.work.labels_parquet
        return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=LABELS_SCHEMA)

    def _with_labels(self, df: pl.DataFrame, id_columns: dict[str, str]) -> pl.DataFrame:
        labels = self.labels()
        if labels.is_empty():
            return df
        for id_column, label_column in id_columns.items():
            df = df.join(labels.select(pl.col("index").alias(id_column), pl.col("label").alias(label_column)),
                         on=id_column, how="left")
        return df

    def similarity(self, data: bool = True) -> pd.DataFrame:
        """``from, to, distance, filename_from, filename_to`` (+ ``label_from, label_to``)."""
        df = self._read(self.work.similarity_parquet)
        if not data:
            return df.select("from", "to", "distance").to_pandas()
        return self._with_labels(df, {"from": "label_from", "to": "label_to"}).to_pandas()

    def outliers(self, data: bool = True) -> pd.DataFrame:
        """``outlier, nearest, distance, filename_outlier, filename_nearest`` (+ labels), most isolated first."""
        df = self._read(self.work.outliers_parquet)
        if not data:
            return df.select("outlier", "nearest", "distance").to_pandas()
        return self._with_labels(df, {"outlier": "label_outlier", "nearest": "label_nearest"}).to_pandas()

    def invalid_instances(self) -> pd.DataFrame:
        """``filename, index, error_code, filesize, is_valid, detail``: every bad file with its reason."""
        df = self._read(self.work.bad_files_parquet)
        return df.select("filename", "index", "error_code", "filesize", pl.lit(False).alias("is_valid"),
                         "detail").to_pandas()

    def img_stats(self, data: bool = True) -> pd.DataFrame:
        """``index, img_w, img_h, unique, blur, mean, min, max, stdv, file_size, contrast, filename, …``."""
        df = self._read(self.work.image_stats_parquet).rename({"width": "img_w", "height": "img_h"})
        first = ["index", "img_w", "img_h", "unique", "blur", "mean", "min", "max", "stdv", "file_size", "contrast"]
        if not data:
            return df.select(first).to_pandas()
        return df.select(first + [c for c in df.columns if c not in first]).to_pandas()

    def connected_components(self, data: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(df_cc, df_info)`` like fastdup: components of 2+ images; ``count`` = number of images."""
        cc = self._read(self.work.components_parquet).rename({"__id": "index"}).filter(pl.col("count") > 1)
        info = pl.read_csv(self.work.components_info_csv).filter(pl.col("count") > 1).rename(
            {"mean_distance": "mean", "min_distance": "min", "max_distance": "max"})
        if not data:
            cc = cc.drop("filename")
        return cc.to_pandas(), info.to_pandas()

    def annotations(self, valid_only: bool = True) -> pd.DataFrame:
        """The manifest as fastdup's annotations: ``filename, index, error_code, is_valid`` (+ label, split)."""
        manifest = self._read(self.work.manifest)
        bad = self._read(self.work.bad_files_parquet).select("index", "error_code")
        df = manifest.select(pl.col("path").alias("filename"), "index", "size", "content_hash").join(
            bad, on="index", how="left").with_columns(
            pl.col("error_code").fill_null("VALID"), pl.col("error_code").is_null().alias("is_valid"))
        labels = self.labels()
        if not labels.is_empty():
            df = df.join(labels.select("index", "label", "split"), on="index", how="left")
        if valid_only:
            df = df.filter(pl.col("is_valid"))
        return df.sort("index").to_pandas()

    def embeddings(self) -> tuple[list[str], Any]:
        """``(filenames, matrix)``: the L2-normalized feature matrix (memory-mapped)."""
        features = load_features(self.work)
        return features.index["filename"].to_list(), features.matrix

    def num_instances(self, valid_only: bool = True) -> int:
        return len(self.annotations(valid_only))

    def load_binary(self) -> tuple[list[str], Any]:
        return load_binary(self.work.features_dat)


def create(work_dir: str | os.PathLike[str] | None = None, input_dir: InputSpec | None = None) -> Fastdup:
    """fastdup v1: ``fd = fastdup.create(work_dir, input_dir)``."""
    return Fastdup(work_dir, input_dir)


def run(input_dir: InputSpec = "", work_dir: str | os.PathLike[str] = ".", **kwargs: Any) -> int:
    """fastdup v0: ``fastdup.run(input_dir, work_dir, ...)``; 0 on success, 1 on failure."""
    return Fastdup(work_dir, input_dir).run(**kwargs)
