"""fastdup's v1 object (``fastdup.create(work_dir, input_dir)``) and v0 ``fastdup.run``."""

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from dup_pipeline.core.atomic import write_csv
from dup_pipeline.core.errors import ConfigError, LabelsError, WorkDirError
from dup_pipeline.core.features import load_binary
from dup_pipeline.core.inputs import InputSpec
from dup_pipeline.core.labels import LABELS_SCHEMA
from dup_pipeline.core.pipeline import ModelConfig, RunSummary, run_pipeline
from dup_pipeline.core.search import ImageSearch, embed_files
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline.fastdup_compat.annotations import prepare_annotations
from dup_pipeline.fastdup_compat.boxes import crop_boxes, crop_names, remove_crops
from dup_pipeline.fastdup_compat.cleanup import group_components
from dup_pipeline.fastdup_compat.files import (
    ANNOTATIONS,
    CONFIG,
    read_config,
    remove_fastdup_files,
    write_config,
    write_fastdup_files,
)
from dup_pipeline.fastdup_compat.params import RunRequest, translate
from dup_pipeline.fastdup_compat.summary import print_summary, summary_sentences
from dup_pipeline.fastdup_compat.visualizer import Visualizer

log = logging.getLogger("dup_pipeline")
DEFAULTS = GraphConfig()  # the cut-offs a work_dir without a recorded config was made with


def clear_outputs(work: WorkDir) -> None:
    """Delete this tool's outputs from ``work`` (``overwrite=True``), never anything else."""
    for path in work.outputs():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    remove_fastdup_files(work)
    remove_crops(work)


def _is_relative(source: Any) -> bool:
    """fastdup shows file names as given: relative to the current directory when the input was."""
    first = source[0] if isinstance(source, (list, tuple)) and source else source
    return isinstance(first, (str, os.PathLike)) and bool(str(first)) and not os.path.isabs(first)


def _check_exists(name: str, folder: Any) -> None:
    """A local input that does not exist is a bad argument (fastdup raises too); URLs are checked later."""
    if isinstance(folder, (str, os.PathLike)) and str(folder) and "://" not in str(folder) \
            and not os.path.exists(folder):
        raise ConfigError(f"{name} {str(folder)!r} does not exist")


def _split_filter(df: pl.DataFrame, split: str | list[str] | None, column: str = "split") -> pl.DataFrame:
    if split is None:
        return df
    if column not in df.columns:
        raise ConfigError("split= needs annotations with a 'split' column (run(annotations=...))")
    return df.filter(pl.col(column).is_in([split] if isinstance(split, str) else list(split)))


class Fastdup:
    """What ``fastdup.create`` returns: run the analysis, then read results and draw galleries.

    ``paths_in_csv``: fastdup v0's files (``fastdup.run``) list file paths in ``similarity.csv`` and
    ``outliers.csv``; v1's list ids.
    """

    def __init__(self, work_dir: str | os.PathLike[str] | None = None, input_dir: InputSpec | None = None,
                 paths_in_csv: bool = False) -> None:
        self.work_dir = str(Path(work_dir or "work_dir").absolute())
        if input_dir is None and (self.work.root / CONFIG).exists():  # an earlier run's work_dir
            input_dir = read_config(self.work).get("input_dir")
        self.input_dir = input_dir
        self.run_summary: RunSummary | None = None
        self.error: str | None = None
        self._paths_in_csv = paths_in_csv
        self._request: RunRequest | None = None
        self._searcher: ImageSearch | None = None
        self._cwd = os.getcwd()
        self.vis = Visualizer(self)

    @property
    def work(self) -> WorkDir:
        return WorkDir(self.work_dir)

    # ---------------------------------------------------------------- running
    def run(self, input_dir: InputSpec | None = None, annotations: Any = None, subset: list[str] | None = None,
            overwrite: bool = False, print_summary: bool = True, **kwargs: Any) -> int:
        """Run the pipeline with fastdup's parameters.

        Bad parameters raise :class:`ConfigError` (bad annotations :class:`LabelsError`) before any
        work; a failure during the run logs the reason and returns 1; success returns 0.
        """
        if kwargs.pop("version", False):
            from dup_pipeline import __version__

            print(f"dup_pipeline {__version__} (fastdup-compatible API), Apache-2.0")
            return 0
        if kwargs.get("verbose"):
            logging.basicConfig(level=logging.INFO)
        self.input_dir = input_dir if input_dir is not None else self.input_dir
        if self.input_dir is None:
            raise ConfigError("input_dir is required (fastdup.create(work_dir, input_dir) or run(input_dir=...))")
        _check_exists("input_dir", self.input_dir)
        _check_exists("test_dir", kwargs.get("test_dir"))
        source, labels, boxes = prepare_annotations(annotations, self.input_dir, subset)
        request = translate(source, self.work_dir, {**kwargs, "annotations": labels})
        try:  # the work_dir's lock covers clearing, the run and fastdup's files (one run per work_dir)
            with self.work.locked():
                if overwrite:  # only once every parameter is known to be valid
                    clear_outputs(self.work)
                if boxes is not None:  # object detection: each box becomes an image of its own
                    crops, labels = crop_boxes(boxes, self.work)
                    request = replace(request, config=replace(request.config, input=crops))
                if labels is not None:  # a file: the label findings are redone exactly when its content changes
                    path = self.work.root / ANNOTATIONS
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_csv(pl.from_pandas(labels), path)
                    request = replace(request, config=replace(request.config, labels=str(path)))
                summary = self._execute(request)
                self.run_summary, self._request, self._searcher, self.error = summary, request, None, None
                write_fastdup_files(self.work, self._names, self._paths_in_csv)
                write_config(self.work, self.input_dir, request.config, request.test_input)
                if request.test_input is not None:
                    self._write_test_similarity()
        except (ConfigError, LabelsError):
            raise
        except Exception as exc:  # noqa: BLE001 - fastdup's contract: log the reason and return 1
            log.error("dup_pipeline run failed: %s", exc)
            self.error = str(exc)
            return 1
        for line in summary.lines():
            log.info(line)
        if print_summary and request.run_mode == 0 and request.features:
            self.summary()
        return 0

    def _execute(self, request: RunRequest) -> RunSummary:
        def go(run_mode: int) -> RunSummary:
            return run_pipeline(request.config, min_offset=request.min_offset, max_offset=request.max_offset,
                                features=request.features, run_mode=run_mode, test_input=request.test_input)

        if request.train_first:  # test_dir: the training set first, then the test set against it
            go(0)
        return go(request.run_mode)

    def _write_test_similarity(self) -> None:
        """fastdup's ``similarity.csv`` of a ``test_dir`` run: test → train pairs."""
        cross = self._test_pairs()
        if self._paths_in_csv:
            cross = cross.select(pl.col("filename_from").alias("from"), pl.col("filename_to").alias("to"), "distance")
        write_csv(cross.select("from", "to", "distance"), self.work.similarity_csv)

    def _has_test_set(self) -> bool:
        """Whether the last run was a ``test_dir`` run (its pairs are test → train)."""
        return (self.work.root / CONFIG).exists() and read_config(self.work).get("test_dir") is not None

    def _test_pairs(self) -> pl.DataFrame:
        """Cross pairs with test ids after the training ids (``from`` = training manifest size + test index)."""
        cross = pl.read_parquet(self.work.cross_similarity_parquet)
        offset = pl.scan_parquet(self.work.manifest).select(pl.len()).collect().item()
        return self._named(cross.with_columns(pl.col("from") + offset))

    # ---------------------------------------------------------------- names
    def _names(self, paths: pl.Series) -> pl.Series:
        """Our absolute paths as fastdup shows them: relative to the current directory when the input was."""
        if not _is_relative(self.input_dir):
            return paths
        return paths.str.strip_prefix(self._cwd.rstrip(os.sep) + os.sep)

    def _named(self, df: pl.DataFrame) -> pl.DataFrame:
        """File names as fastdup shows them; in an object-detection run ``filename*`` is the image and
        ``crop_filename*`` the box's crop."""
        columns = [c for c in df.columns if c.startswith("filename") and df.schema[c] == pl.String]
        crops = crop_names(self.work)
        if crops is not None:
            for column in columns:
                suffix = column.removeprefix("filename")
                df = df.rename({column: "crop_filename" + suffix}).join(
                    crops.select(pl.col("crop_filename").alias("crop_filename" + suffix),
                                 pl.col("filename").alias(column)), on="crop_filename" + suffix, how="left")
                df = df.with_columns(self._names(df["crop_filename" + suffix]))
        return df.with_columns(self._names(df[c]) for c in columns)

    def _read(self, path: Path) -> pl.DataFrame:
        if not path.exists():
            raise WorkDirError(f"{path.name} not found in {self.work_dir}: call run() first")
        return pl.read_parquet(path)

    # ---------------------------------------------------------------- tables
    def labels(self) -> pl.DataFrame:
        """The stored labels (``index, filename, label, split``), empty when none were given."""
        path = self.work.labels_parquet
        return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=LABELS_SCHEMA)

    def _instances(self) -> pl.DataFrame:
        """fastdup's annotation columns per manifest index: ``error_code, filesize, is_valid, fd_index``
        (+ ``label, split`` of a labelled run)."""
        bad = self._read(self.work.bad_files_parquet).select("index", "error_code")
        df = self._read(self.work.manifest).select("index", pl.col("size").alias("filesize")).join(
            bad, on="index", how="left").select(
            "index", pl.col("error_code").fill_null("VALID"), "filesize",
            pl.col("error_code").is_null().alias("is_valid"), pl.col("index").alias("fd_index"))
        labels = self.labels()
        if not labels.is_empty():
            df = df.join(labels.select("index", "label", "split"), on="index", how="left")
        return df

    def _with_labels(self, df: pl.DataFrame, id_columns: dict[str, str]) -> pl.DataFrame:
        """Join fastdup's annotation columns with ``<suffix>`` for each id column (``{id column: suffix}``);
        two id columns also get fastdup's ``index_x``/``index_y`` (its merge's copies of the ids)."""
        instances = self._instances()
        for id_column, suffix in id_columns.items():
            columns = [c for c in instances.columns if c != "index" and c + suffix not in df.columns]
            df = df.join(instances.select(pl.col("index").alias(id_column), *(pl.col(c).alias(c + suffix)
                                                                            for c in columns)),
                         on=id_column, how="left")
        if len(id_columns) == 2:
            first, second = id_columns
            df = df.with_columns(pl.col(first).alias("index_x"), pl.col(second).alias("index_y"))
        return df

    def similarity(self, data: bool = True, split: str | list[str] | None = None) -> pd.DataFrame:
        """``from, to, distance, filename_from, filename_to`` (+ ``label_from, split_from, label_to, split_to``)."""
        if self._has_test_set():
            df = self._test_pairs()
        else:
            df = self._named(self._read(self.work.similarity_parquet))
        if not data:
            return df.select("from", "to", "distance").to_pandas()
        df = self._with_labels(df, {"from": "_from", "to": "_to"})
        return _split_filter(df, split, "split_from").to_pandas()

    def outliers(self, data: bool = True, split: str | list[str] | None = None) -> pd.DataFrame:
        """``outlier, nearest, distance, filename_outlier, filename_nearest`` (+ labels), most isolated first."""
        df = self._named(self._read(self.work.outliers_parquet)).sort(["distance", "outlier"])
        if not data:
            return df.select("outlier", "nearest", "distance").to_pandas()
        df = self._with_labels(df, {"outlier": "_outlier", "nearest": "_nearest"})
        return _split_filter(df, split, "split_outlier").to_pandas()

    def invalid_instances(self) -> pd.DataFrame:
        """``filename, index, error_code, filesize, is_valid, detail``: every bad file with its reason."""
        df = self._named(self._read(self.work.bad_files_parquet))
        return df.select("filename", "index", "error_code", "filesize", pl.lit(False).alias("is_valid"),
                         pl.col("index").alias("fd_index"), "detail").to_pandas()

    def img_stats(self, data: bool = True, split: str | list[str] | None = None) -> pd.DataFrame:
        """``index, img_w, img_h, unique, blur, mean, min, max, stdv, file_size, contrast, filename, …``
        (+ ``label, split`` of a labelled run)."""
        df = self._named(self._read(self.work.image_stats_parquet)).rename({"width": "img_w", "height": "img_h"})
        first = ["index", "img_w", "img_h", "unique", "blur", "mean", "min", "max", "stdv", "file_size", "contrast"]
        if not data:
            return df.select(first).to_pandas()
        df = self._with_labels(df.select(first + [c for c in df.columns if c not in first]), {"index": ""})
        return _split_filter(df, split).to_pandas()

    def connected_components(self, data: bool = True, split: str | list[str] | None = None,
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(df_cc, df_info)`` like fastdup: components of 2+ images; ``count`` = number of images."""
        cc = self._named(self._read(self.work.components_parquet)).rename({"__id": "index"}).filter(
            pl.col("count") > 1)
        if not self.work.components_info_csv.exists():
            raise WorkDirError(f"components_info.csv not found in {self.work_dir}: call run() first")
        info = pl.read_csv(self.work.components_info_csv).filter(pl.col("count") > 1).rename(
            {"mean_distance": "mean", "min_distance": "min", "max_distance": "max"})
        if not data:
            return cc.drop("filename").to_pandas(), info.to_pandas()
        cc = _split_filter(self._with_labels(cc, {"index": ""}), split)
        return cc.to_pandas(), info.to_pandas()

    def connected_components_grouped(self, sort_by: str = "comp_size", ascending: bool = True,
                                     metric: str | None = None, load_crops: bool | None = None,
                                     group_by: str = "visual") -> pd.DataFrame:
        """One row per component: ``files, component_id, files_ids, distance, (label), len, (metric)``."""
        cc, _ = self.connected_components()
        stats = self.img_stats() if metric is not None else None
        return group_components(cc, stats, sort_by, ascending, metric, group_by)

    def annotations(self, valid_only: bool = True) -> pd.DataFrame:
        """The manifest as fastdup's annotations: ``filename, index, error_code, is_valid`` (+ label, split)."""
        manifest = self._read(self.work.manifest)
        bad = self._read(self.work.bad_files_parquet).select("index", "error_code")
        df = manifest.select(pl.col("path").alias("filename"), "index", "size", "content_hash").join(
            bad, on="index", how="left").with_columns(
            pl.col("error_code").fill_null("VALID"), pl.col("error_code").is_null().alias("is_valid"),
            pl.col("size").alias("filesize"), pl.col("index").alias("fd_index"))
        labels = self.labels()
        if not labels.is_empty():
            df = df.join(labels.select("index", "label", "split"), on="index", how="left")
        if valid_only:
            df = df.filter(pl.col("is_valid"))
        return self._named(df.sort("index")).to_pandas()

    def num_instances(self, valid_only: bool = True) -> int:
        return len(self.annotations(valid_only))

    @property
    def config(self) -> dict[str, Any]:
        """The last run's settings (fastdup's ``config.json``: input_dir, work_dir, threshold, …)."""
        return read_config(self.work)

    def summary(self, verbose: bool = True, blur_threshold: float = 150.0, brightness_threshold: float = 253.0,
                darkness_threshold: float = 4.0, show_comp: bool = True) -> list[str]:
        """fastdup's summary sentences (printed when ``verbose``); the run's own facts: :attr:`run_summary`."""
        if not self.work.manifest.exists():
            raise WorkDirError(f"manifest.parquet not found in {self.work_dir}: call run() first")
        graph = read_config(self.work) if (self.work.root / CONFIG).exists() else {}
        components = outliers = None
        if show_comp:
            components = self.connected_components() if self.work.components_parquet.exists() else None
            outliers = self.outliers() if self.work.outliers_parquet.exists() else None
        stats = self.img_stats() if self.work.image_stats_parquet.exists() else None
        lines = summary_sentences(
            total=self.num_instances(valid_only=False), invalid=len(self.invalid_instances()),
            components=components,
            thresholds=(graph.get("threshold", DEFAULTS.threshold),
                        graph.get("ccthreshold", DEFAULTS.ccthreshold)),
            outliers=outliers, lower_threshold=graph.get("lower_threshold", DEFAULTS.lower_threshold),
            stats=stats,
            blur_threshold=blur_threshold, brightness_threshold=brightness_threshold,
            darkness_threshold=darkness_threshold, noun="images" if crop_names(self.work) is None else "objects")
        if verbose:
            print_summary(lines)
        return lines

    # ---------------------------------------------------------------- features and search
    def embeddings(self) -> tuple[list[str], np.ndarray]:
        """``(filenames, matrix)``: the L2-normalized feature matrix."""
        files, matrix = load_binary(self.work.features_dat)
        return self._names(pl.Series(files, dtype=pl.String)).to_list(), matrix

    def load_binary(self) -> tuple[list[str], np.ndarray]:
        return self.embeddings()

    def _model(self, model_path: str | None) -> ModelConfig:
        if model_path:
            return ModelConfig(model_path=model_path)
        return self._request.config.model if self._request is not None else ModelConfig()

    def feature_vectors(self, img_paths: list[str] | pd.DataFrame | str, model_path: str | None = None,
                        d: int | None = None) -> tuple[np.ndarray, list[str]]:
        """``(embeddings n x d, files)`` of the readable images among ``img_paths`` (the work_dir is untouched)."""
        from dup_pipeline.core.inputs import discover_files

        if isinstance(img_paths, pd.DataFrame):
            if "filename" not in img_paths.columns:
                raise ConfigError("img_paths DataFrame needs a 'filename' column")
            img_paths = img_paths["filename"].tolist()
        paths = discover_files(img_paths) if isinstance(img_paths, (str, os.PathLike)) else list(img_paths)
        if not paths:
            raise ConfigError("img_paths must name at least one image")
        settings = self._model(model_path).feature_settings()
        if d is not None and d != settings.embedder.spec.dim:
            raise ConfigError(f"d={d} does not match the model's embedding width {settings.embedder.spec.dim}")
        vectors, good, bad = embed_files(settings, [str(p) for p in paths])
        for path, reason in bad.items():
            log.warning("feature_vectors: %s cannot be used: %s", path, reason)
        return vectors, good

    def feature_vector(self, img_path: str | os.PathLike[str], model_path: str | None = None,
                       d: int | None = None) -> tuple[np.ndarray, list[str]]:
        """``(1 x d embedding, [img_path])`` of one image."""
        vectors, files = self.feature_vectors([str(img_path)], model_path, d)
        if not files:
            raise ConfigError(f"img_path {str(img_path)!r} is not a readable image")
        return vectors, files

    def init_search(self, k: int, verbose: bool = False, license: str = "", model_path: str | None = None) -> int:
        """Load the work_dir's index and model for :meth:`search`; 0 on success."""
        self._searcher = ImageSearch(self.work_dir, k, self._model(model_path))
        return 0

    def _searched(self, df: pl.DataFrame) -> pd.DataFrame:
        return df.with_columns(self._names(df["to"])).to_pandas()

    def search(self, filename: str | os.PathLike[str], img: Any = None, verbose: bool = False) -> pd.DataFrame:
        """``from, to, distance, index``: the k most similar indexed images of the query image."""
        if self._searcher is None:
            raise ConfigError("call init_search(k) before search()")
        return self._searched(self._searcher.image(filename, img))

    def vector_search(self, filename: str = "query_vector", vec: np.ndarray | None = None,
                      verbose: bool = False) -> pd.DataFrame:
        """Like :meth:`search` for a feature vector (``d`` or ``1 x d``)."""
        if self._searcher is None:
            raise ConfigError("call init_search(k) before vector_search()")
        if vec is None:
            raise ConfigError("vec is required: a feature vector of the index's width")
        vec = np.asarray(vec, dtype=np.float32).reshape(1, -1)
        return self._searched(self._searcher.vectors(vec / max(float(np.linalg.norm(vec)), 1e-12), [filename]))


def create(work_dir: str | os.PathLike[str] | None = None, input_dir: InputSpec | None = None) -> Fastdup:
    """fastdup v1: ``fd = fastdup.create(work_dir, input_dir)``."""
    return Fastdup(work_dir, input_dir)


def run(input_dir: InputSpec = "", work_dir: str | os.PathLike[str] = ".", **kwargs: Any) -> int:
    """fastdup v0: ``fastdup.run(input_dir, work_dir, ...)``; 0 on success, 1 on failure."""
    kwargs.setdefault("print_summary", False)
    return Fastdup(work_dir, input_dir, paths_in_csv=True).run(**kwargs)
