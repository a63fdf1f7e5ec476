"""fastdup's gallery options over the report's sections: ``slice``, ``label_col``, ``get_label_func``,
``group_by='label'``, ``lazy_load``, ``max_width``, ``draw_bbox``, ``get_bounding_box_func``,
``get_extra_col_func``.

The sections read the work_dir's tables through :class:`OptionTables`, which filters them first, so
each page is drawn by the report's own code.
"""

import logging
from dataclasses import dataclass, replace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from dup_pipeline.core.atomic import write_text
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.report.render import Gallery, Section, publish, resolve_save_path
from dup_pipeline.core.report.thumbnails import Box, load_thumb, thumbnail_src
from dup_pipeline.core.report.views import Tile, human_size
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline.fastdup_compat.boxes import crop_names

log = logging.getLogger("dup_pipeline")

Filter = Callable[[pl.DataFrame], pl.DataFrame]
PAIR_SLICES = ("diff", "same")
UNDRAWN = ("get_reformat_filename_func",)


def _lookup(func: Any, parameter: str) -> Callable[[str], Any] | None:
    """A callable or dict of file name -> value, as a function (None when not given)."""
    if func is None:
        return None
    if isinstance(func, dict):
        return func.get
    if callable(func):
        return func
    raise ConfigError(f"{parameter} must be a callable or a dict of file name -> value, got {type(func).__name__}")


@dataclass(frozen=True)
class Drawing:
    """How each image of a gallery is drawn: an object-detection instance (a crop) as its full image with
    its box outlined, plus the boxes of ``get_bounding_box_func`` and the text of ``get_extra_col_func``.
    The user's functions get file names as fastdup shows them (``name``): the drawn image's for boxes,
    the instance's (the crop's in a box run, as ``get_label_func``) for extra text."""

    crops: dict[str, tuple[str, Box]]
    name: Callable[[str], str]
    boxes_of: Callable[[str], Any] | None = None
    extra_of: Callable[[str], Any] | None = None

    def image(self, path: str) -> tuple[str, tuple[Box, ...]]:
        """The file drawn for ``path`` and the boxes outlined on it."""
        image, box = self.crops.get(path, (path, None))
        boxes = [box] if box is not None else []
        if self.boxes_of is not None:
            given = self.boxes_of(self.name(image))
            try:
                boxes += [tuple(int(v) for v in b) for b in (given or [])]
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"get_bounding_box_func must return a list of [x1, y1, x2, y2] boxes, got "
                                  f"{given!r} for {self.name(image)!r}") from exc
            if any(len(b) != 4 for b in boxes):
                raise ConfigError(f"get_bounding_box_func must return boxes of 4 numbers [x1, y1, x2, y2], "
                                  f"got {given!r} for {self.name(image)!r}")
        return image, tuple(boxes)

    def extra(self, path: str) -> str | None:
        """Text under ``path``'s image, or None."""
        if self.extra_of is None:
            return None
        value = self.extra_of(self.name(path))
        return None if value is None else str(value)


def drawing(work: WorkDir, name: Callable[[str], str], draw_bbox: Any = None, get_bounding_box_func: Any = None,
            get_extra_col_func: Any = None) -> Drawing | None:
    """The :class:`Drawing` of fastdup's options (None: images drawn as they are). ``draw_bbox``: None
    (the default) or True draws a box run's instances on their images; False shows the crops."""
    if draw_bbox not in (None, True, False):
        raise ConfigError(f"draw_bbox must be True or False, got {draw_bbox!r}")
    boxes_of = _lookup(get_bounding_box_func, "get_bounding_box_func")
    extra_of = _lookup(get_extra_col_func, "get_extra_col_func")
    table = crop_names(work) if draw_bbox is not False else None
    crops = {} if table is None else {
        r["crop_filename"]: (r["filename"], (r["col_x"], r["row_y"], r["col_x"] + r["width"], r["row_y"] + r["height"]))
        for r in table.iter_rows(named=True)}
    if not crops and boxes_of is None and extra_of is None:
        return None
    return Drawing(crops, name, boxes_of, extra_of)


class OptionTables(WorkTables):
    """A work_dir's tables with a filter per table path, and images drawn as ``draw`` says."""

    def __init__(self, work: WorkDir, labels: pl.DataFrame | None, thumbs_dir: Path | None,
                 filters: dict[Path, Filter], draw: Drawing | None = None) -> None:
        super().__init__(work, labels, thumbs_dir)
        self._filters = filters
        self._draw = draw

    def table(self, path: Path) -> pl.DataFrame | None:
        df = super().table(path)
        keep = self._filters.get(path)
        return keep(df) if df is not None and keep is not None else df

    def tile(self, path: str, index: int | None = None) -> Tile:
        """``path`` shown by its name, drawn as :attr:`_draw` says (its image with boxes, extra text)."""
        if self._draw is None:
            return super().tile(path, index)
        image, boxes = self._draw.image(path)
        thumb = load_thumb(image, boxes=boxes)
        return Tile(
            src=thumbnail_src(image, self.thumbs_dir, boxes=boxes), name=self.relative(path), path=path,
            dims=f"{thumb.width}\u00d7{thumb.height}" if thumb.width else "", size=human_size(thumb.file_size),
            label=self.labels.get(index) if index is not None else None, ok=thumb.jpeg is not None,
            extra=self._draw.extra(path))


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
           labels: pl.DataFrame | None, filters: dict[Path, Filter], names: Callable[[str], str],
           lazy_load: bool = False, max_width: int | None = None, draw_bbox: bool | None = None,
           get_bounding_box_func: Any = None, get_extra_col_func: Any = None, **ignored: Any) -> Gallery:
    """Draw one section into ``save_path`` (fastdup's conventions) with the options applied; ``names``
    turns a path into the file name fastdup shows (given to the user's functions)."""
    if max_width is not None and (not isinstance(max_width, int) or max_width < 1):
        raise ConfigError(f"max_width must be a positive number of pixels, got {max_width!r}")
    draw = drawing(work, names, draw_bbox, get_bounding_box_func, get_extra_col_func)
    undrawn = sorted(k for k in UNDRAWN if ignored.get(k))
    if undrawn:
        log.warning("gallery options %s are not drawn by dup_pipeline's galleries (file names are shown as they are)",
                    undrawn)
    path = resolve_save_path(save_path, work, name)
    tables = OptionTables(work, labels, path.parent if lazy_load else None, filters, draw)
    gallery = publish(build(tables), path, tables)
    if max_width:
        style = f"<style>body{{max-width:{max_width}px;margin:0 auto}}</style>"
        html = gallery.html.replace("</head>", style + "</head>", 1)
        write_text(html, path)
        gallery = replace(gallery, html=html)
    return gallery
