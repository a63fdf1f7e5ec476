"""fastdup's gallery options over the report's sections: ``slice``, ``label_col``, ``get_label_func``,
``group_by='label'``, ``lazy_load``, ``max_width``.

The sections read the work_dir's tables through :class:`OptionTables`, which filters them first, so
each page is drawn by the report's own code.
"""

import logging
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from dup_pipeline.core.atomic import write_text
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.report.render import Gallery, Section, publish, resolve_save_path
from dup_pipeline.core.workdir import WorkDir

log = logging.getLogger("dup_pipeline")

Filter = Callable[[pl.DataFrame], pl.DataFrame]
PAIR_SLICES = ("diff", "same")
UNDRAWN = ("get_bounding_box_func", "get_extra_col_func", "draw_bbox", "get_reformat_filename_func")


class OptionTables(WorkTables):
    """A work_dir's tables with a filter per table path."""

    def __init__(self, work: WorkDir, labels: pl.DataFrame | None, thumbs_dir: Path | None,
                 filters: dict[Path, Filter]) -> None:
        super().__init__(work, labels, thumbs_dir)
        self._filters = filters

    def table(self, path: Path) -> pl.DataFrame | None:
        df = super().table(path)
        keep = self._filters.get(path)
        return keep(df) if df is not None and keep is not None else df


def gallery_labels(labels: pl.DataFrame, names: pl.DataFrame, label_col: str | None,
                   get_label_func: Any) -> pl.DataFrame | None:
    """``index, label`` shown under each image: ``label_col`` (``label``/``split``) or ``get_label_func``
    (a callable or dict of file name → label, called with the file names fastdup shows)."""
    if get_label_func is not None:
        if isinstance(get_label_func, dict):
            lookup = get_label_func.get
        elif callable(get_label_func):
            lookup = get_label_func
        else:
            raise ConfigError("get_label_func must be a callable or a dict of file name -> label")
        return names.select("index", pl.col("filename").map_elements(
            lambda f: None if lookup(f) is None else str(lookup(f)), return_dtype=pl.String).alias("label"))
    if labels.is_empty():
        if label_col not in (None, "label"):
            raise ConfigError(f"label_col={label_col!r} needs a labelled run (run(annotations=...))")
        return None
    column = label_col or "label"
    if column not in ("label", "split"):
        raise ConfigError(f"label_col must be 'label' or 'split' (the annotation columns kept), got {label_col!r}")
    return labels.select("index", pl.col(column).alias("label"))


def _label_of(labels: pl.DataFrame, df: pl.DataFrame, id_column: str, name: str) -> pl.DataFrame:
    return df.join(labels.select(pl.col("index").alias(id_column), pl.col("label").alias(name)),
                   on=id_column, how="left")


def _wanted(slice_: Any) -> list[str]:
    return [slice_] if isinstance(slice_, str) else [str(s) for s in slice_]


def pair_filter(labels: pl.DataFrame | None, slice_: Any, left: str, right: str) -> Filter | None:
    """Pairs whose ``left`` image has a label in ``slice_``; ``'diff'``/``'same'``: labels differ/agree."""
    if slice_ is None:
        return None
    if labels is None:
        raise ConfigError("slice= needs labels (run(annotations=...) or get_label_func)")

    def keep(df: pl.DataFrame) -> pl.DataFrame:
        df = _label_of(labels, _label_of(labels, df, left, "_l"), right, "_r")
        if slice_ in PAIR_SLICES:
            same = pl.col("_l") == pl.col("_r")
            df = df.filter(same if slice_ == "same" else ~same)
        else:
            df = df.filter(pl.col("_l").is_in(_wanted(slice_)))
        return df.drop("_l", "_r")

    return keep


def image_filter(labels: pl.DataFrame | None, slice_: Any, id_column: str = "index") -> Filter | None:
    """Rows whose image has a label in ``slice_``."""
    if slice_ is None:
        return None
    if labels is None:
        raise ConfigError("slice= needs labels (run(annotations=...) or get_label_func)")
    if slice_ in PAIR_SLICES:
        raise ConfigError(f"slice={slice_!r} compares the labels of two images: use it with duplicates, "
                          "similarity or component galleries")
    return lambda df: _label_of(labels, df, id_column, "_l").filter(pl.col("_l").is_in(_wanted(slice_))).drop("_l")


def component_filters(work: WorkDir, labels: pl.DataFrame | None, slice_: Any, group_by: str,
                      ) -> dict[Path, Filter]:
    """``slice``: components with a member of the label (``'diff'``: mixed labels, ``'same'``: one label).
    ``group_by='label'``: the images in components grouped by label instead."""
    if group_by not in ("visual", "label"):
        raise ConfigError(f"group_by must be 'visual' or 'label', got {group_by!r}")
    if (slice_ is not None or group_by == "label") and labels is None:
        raise ConfigError("slice= and group_by='label' need labels (run(annotations=...) or get_label_func)")
    if slice_ is None and group_by == "visual":
        return {}

    def members(cc: pl.DataFrame) -> pl.DataFrame:
        cc = _label_of(labels, cc.filter(pl.col("count") > 1), "__id", "_l")
        if slice_ is not None:
            mix = cc.group_by("component_id").agg(pl.col("_l").n_unique().alias("_n"),
                                                  pl.col("_l").is_in(_wanted(slice_) if slice_ not in PAIR_SLICES
                                                                     else []).any().alias("_has"))
            chosen = mix.filter(pl.col("_n") > 1 if slice_ == "diff" else pl.col("_n") == 1 if slice_ == "same"
                                else pl.col("_has"))["component_id"]
            cc = cc.filter(pl.col("component_id").is_in(chosen.implode()))
        if group_by == "label":
            cc = cc.drop_nulls("_l").with_columns(pl.col("_l").rank("dense").cast(pl.Int64).alias("component_id"))
            cc = cc.with_columns(pl.len().over("component_id").alias("count"))
        return cc.drop("_l")

    def info(table: pl.DataFrame) -> pl.DataFrame:
        cc = members(pl.read_parquet(work.components_parquet))
        if group_by == "visual":
            return table.filter(pl.col("component_id").is_in(cc["component_id"].unique().implode()))
        return cc.group_by("component_id").agg(
            pl.len().alias("count"), pl.col("mean_distance").mean(), pl.col("min_distance").min(),
            pl.col("max_distance").max())

    return {work.components_parquet: members, work.components_info_csv: info}


def neighbours_table(pairs: pl.DataFrame, labels: pl.DataFrame | None, threshold: float | None,
                     slice_: Any) -> pl.DataFrame:
    """fastdup's ``similarity_gallery`` result: one row per image with its neighbours as lists."""
    if threshold is not None:
        pairs = pairs.filter(pl.col("distance") >= threshold)
    both = pl.concat([
        pairs.select("from", "to", "distance", "filename_from", "filename_to"),
        pairs.select(pl.col("to").alias("from"), pl.col("from").alias("to"), "distance",
                     pl.col("filename_to").alias("filename_from"), pl.col("filename_from").alias("filename_to")),
    ])
    scored = labels is not None and slice_ in PAIR_SLICES
    if labels is not None:
        both = _label_of(labels, _label_of(labels, both, "from", "label"), "to", "label2").with_columns(
            (pl.col("label") == pl.col("label2")).fill_null(False).cast(pl.Float64).alias("_same"))
    grouped = both.sort(["from", "distance"], descending=[False, True]).group_by("from", maintain_order=True).agg(
        pl.col("to"), pl.col("distance"), pl.col("filename_from").first(), pl.col("filename_to"),
        *([pl.col("label"), pl.col("label2")] if labels is not None else []),
        *([(100.0 * pl.col("_same").mean()).alias("score"), pl.len().alias("length")] if scored else []))
    if not scored:
        return grouped.sort(pl.col("distance").list.first(), descending=True)
    return grouped.sort(["score", "length"], descending=slice_ == "same")


def component_order(filters: dict[Path, Filter], work: WorkDir, sort_by: str, ascending: bool,
                    num_images: int) -> dict[Path, Filter]:
    """Choose the ``num_images`` components first by ``sort_by`` (``comp_size`` or a column of
    ``components_info.csv``) in ``ascending`` order; the page lists the chosen ones largest first."""
    if sort_by == "comp_size" and not ascending:
        return filters
    column = "count" if sort_by == "comp_size" else sort_by
    before = filters.get(work.components_info_csv)

    def choose(info: pl.DataFrame) -> pl.DataFrame:
        info = before(info) if before is not None else info
        if column not in info.columns:
            raise ConfigError(f"sort_by must be 'comp_size' or one of {info.columns}, got {sort_by!r}")
        return info.filter(pl.col("count") > 1).sort([column, "component_id"], descending=[not ascending, False],
                                                     nulls_last=True).head(num_images)

    return {**filters, work.components_info_csv: choose}


def render(name: str, build: Callable[[WorkTables], Section], work: WorkDir, save_path: Any,
           labels: pl.DataFrame | None, filters: dict[Path, Filter], lazy_load: bool = False,
           max_width: int | None = None, **ignored: Any) -> Gallery:
    """Draw one section into ``save_path`` (fastdup's conventions) with the options applied."""
    if max_width is not None and (not isinstance(max_width, int) or max_width < 1):
        raise ConfigError(f"max_width must be a positive number of pixels, got {max_width!r}")
    undrawn = sorted(k for k in UNDRAWN if ignored.get(k))
    if undrawn:
        log.warning("gallery options %s are not drawn by dup_pipeline's galleries (whole images are shown)",
                    undrawn)
    path = resolve_save_path(save_path, work, name)
    tables = OptionTables(work, labels, path.parent if lazy_load else None, filters)
    gallery = publish(build(tables), path, tables)
    if max_width:
        style = f"<style>body{{max-width:{max_width}px;margin:0 auto}}</style>"
        html = gallery.html.replace("</head>", style + "</head>", 1)
        write_text(html, path)
        gallery = replace(gallery, html=html)
    return gallery
