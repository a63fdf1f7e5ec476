"""One HTML gallery per finding, read from a work_dir's tables (fastdup's galleries, without overwrites).

Every function takes ``(work, save_path=None, num_images=20, labels=None, ...)`` and returns a
:class:`Gallery`. ``save_path``: None -> ``<work_dir>/galleries/<name>.html``; a folder ->
``<folder>/<name>.html``; a path ending in ``.html`` -> that file. ``labels``: a DataFrame with
columns ``index`` (manifest index) and ``label``. Common options: ``inline=False`` writes the
thumbnails to ``thumbs/`` beside the page instead of inlining them; ``nav`` (links of the page
header) and ``dataset_name``.
"""

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl

from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.report.render import (
    Gallery,
    NavLink,
    Section,
    publish,
    resolve_save_path,
)
from dup_pipeline.core.report.thumbnails import prefetch
from dup_pipeline.core.report.views import Badge, BadRow, Group, Item, Pair, human_size
from dup_pipeline.core.workdir import WorkDir

MAX_MEMBERS = 12
CHAINED_BELOW = 0.8
STATS_METRICS = {  # metric: (column, highest first, title, description)
    "dark": ("mean", False, "Darkest images", "Lowest mean luminance first (0 = black, 255 = white)."),
    "bright": ("mean", True, "Brightest images", "Highest mean luminance first (0 = black, 255 = white)."),
    "blur": ("blur", False, "Blurriest images",
             "Lowest sharpness first (variance of the Laplacian: low means blurry)."),
}

WorkLike = WorkDir | str | os.PathLike[str]
Labels = pl.DataFrame | None
SavePath = str | os.PathLike[str] | None


def _gallery(name: str, build: Callable[[WorkTables], Section], work: WorkLike, save_path: SavePath,
             labels: Labels, inline: bool = True, nav: list[NavLink] | tuple = (),
             dataset_name: str | None = None) -> Gallery:
    work = work if isinstance(work, WorkDir) else WorkDir(work)
    path = resolve_save_path(save_path, work, name)
    tables = WorkTables(work, labels, None if inline else path.parent)
    return publish(build(tables), path, tables, nav, dataset_name)


def _not_computed(key: str, title: str, template: str, path: Path, hint: str = "") -> Section:
    note = f"{path.name} is not in the work_dir" + (f": {hint}" if hint else ".")
    return Section(key, title, "", template, [], 0, computed=False, note=note)


def _labels_badges(t: WorkTables, *indexes: int | None) -> tuple[Badge, ...]:
    found = {t.labels.get(i) for i in indexes if i is not None} - {None}
    return (Badge("labels differ", "warn"),) if len(found) > 1 else ()


def _pairs(t: WorkTables, rows: list[dict], left: tuple[str, str], right: tuple[str, str], score: str,
           badges: Callable[[dict], tuple[Badge, ...]]) -> list[Pair]:
    """``left``/``right``: (file name column, index column or '') of each side."""
    prefetch([r[c] for r in rows for c in (left[0], right[0])])
    return [Pair(t.tile(r[left[0]], r[left[1]] if left[1] else None),
                 t.tile(r[right[0]], r[right[1]] if right[1] else None), float(r[score]), badges(r))
            for r in rows]


def _duplicates(t: WorkTables, num_images: int, threshold: float | None, descending: bool) -> Section:
    title = "Duplicates"
    sim = t.table(t.work.similarity_parquet)
    if sim is None:
        return _not_computed("duplicates", title, "pairs", t.work.similarity_parquet,
                             "the similarity stage did not run (stats-only run?)")
    if threshold is not None:
        sim = sim.filter(pl.col("distance") >= threshold)
    sim = sim.sort(["distance", "from", "to"], descending=[descending, False, False])
    hashes = t.content_hashes

    def badges(r: dict) -> tuple[Badge, ...]:
        a, b = hashes.get(r["from"]), hashes.get(r["to"])
        same = a is not None and a == b if hashes else r["distance"] >= 1.0
        return ((Badge("identical bytes", "same"),) if same else ()) + _labels_badges(t, r["from"], r["to"])

    items = _pairs(t, sim.head(num_images).to_dicts(), ("filename_from", "from"), ("filename_to", "to"),
                   "distance", badges)
    cut = f" at or above {threshold:g}" if threshold is not None else ""
    return Section("duplicates", title,
                   f"Pairs of images with near-identical embeddings{cut} (similarity 1 = identical), "
                   f"{'most' if descending else 'least'} similar first.",
                   "pairs", items, sim.height, note="No pair of images is similar enough.",
                   extra={"left_caption": "", "right_caption": "", "score_label": "similarity"})


def _outliers(t: WorkTables, num_images: int) -> Section:
    title = "Outliers"
    out = t.table(t.work.outliers_parquet)
    if out is None:
        return _not_computed("outliers", title, "pairs", t.work.outliers_parquet,
                             "the similarity stage did not run (stats-only run?)")
    out = out.sort(["distance", "outlier"])
    items = _pairs(t, out.head(num_images).to_dicts(), ("filename_outlier", "outlier"),
                   ("filename_nearest", "nearest"), "distance", lambda r: ())
    return Section("outliers", title,
                   "Images least similar to everything else: each with its nearest neighbour, most isolated first.",
                   "pairs", items, out.height, note="No outliers were found.",
                   extra={"left_caption": "outlier", "right_caption": "nearest neighbour",
                          "score_label": "nearest similarity"})


def _stats(t: WorkTables, metric: str, num_images: int, descending: bool | None) -> Section:
    column, highest, title, description = STATS_METRICS.get(
        metric, (metric, True, f"Images by {metric}", ""))
    stats = t.table(t.work.image_stats_parquet)
    if stats is None:
        return _not_computed(metric, title, "grid", t.work.image_stats_parquet,
                             "image statistics were not computed")
    if column not in stats.columns or not stats.schema[column].is_numeric():
        numeric = [c for c, d in stats.schema.items() if d.is_numeric() and c != "index"]
        raise ValueError(f"metric must be dark, bright, blur or a numeric image_stats column "
                         f"({', '.join(numeric)}), got {metric!r}")
    highest = highest if descending is None else descending
    description = description or f"Sorted by {column}, {'highest' if highest else 'lowest'} first."
    valid = stats.filter(pl.col(column).is_not_null() & pl.col(column).cast(pl.Float64).is_finite())
    rows = valid.sort([column, "index"], descending=[highest, False]).head(num_images).to_dicts()
    prefetch([r["filename"] for r in rows])
    items = [Item(t.tile(r["filename"], r["index"]), float(r[column])) for r in rows]
    digits = 0 if stats.schema[column].is_integer() else (1 if column in ("mean", "blur", "stdv") else 3)
    value_label = "mean luminance" if column == "mean" else ("sharpness" if column == "blur" else column)
    return Section(metric, title, description, "grid", items, valid.height, note="No image statistics.",
                   extra={"value_label": value_label, "digits": digits})


def _component_info(cc: pl.DataFrame, info: pl.DataFrame | None) -> pl.DataFrame:
    if info is not None:
        return info
    return cc.group_by("component_id").agg(
        pl.len().alias("count"), *(pl.col(c).first() for c in ("mean_distance", "min_distance", "max_distance")))


def _components(t: WorkTables, num_images: int, min_items: int, max_items: int | None) -> Section:
    title = "Similar-image groups"
    cc = t.table(t.work.components_parquet)
    if cc is None:
        return _not_computed("components", title, "groups", t.work.components_parquet,
                             "the similarity stage did not run (stats-only run?)")
    info = _component_info(cc, t.table(t.work.components_info_csv)).filter(pl.col("count") >= min_items)
    if max_items is not None:
        info = info.filter(pl.col("count") <= max_items)
    info = info.sort(["count", "mean_distance", "component_id"], descending=[True, True, False], nulls_last=True)
    top = info.head(num_images).to_dicts()
    members = cc.filter(pl.col("component_id").is_in([c["component_id"] for c in top])).sort("__id")
    by_id: dict[int, list[dict]] = {}
    for row in members.to_dicts():
        by_id.setdefault(row["component_id"], []).append(row)
    prefetch([r["filename"] for c in top for r in by_id.get(c["component_id"], [])[:MAX_MEMBERS]])
    groups = []
    for c in top:
        rows = by_id.get(c["component_id"], [])
        exact = c.get("min_exact_similarity")
        facts = [("images", str(c["count"])), ("mean similarity", _fmt(c["mean_distance"])),
                 ("min similarity", _fmt(c["min_distance"]))]
        badges = []
        if exact is not None:
            facts.append(("min exact similarity", _fmt(exact)))
            if exact < min(CHAINED_BELOW, c["min_distance"] or 1.0):
                badges.append(Badge("chained: some members are not alike", "warn"))
        mix = Counter(t.labels[r["__id"]] for r in rows if r["__id"] in t.labels)
        if len(mix) > 1:
            badges.append(Badge("mixed labels: " + ", ".join(f"{k} \u00d7{v}" for k, v in mix.most_common()), "warn"))
        groups.append(Group(f"Group {c['component_id']}", [Item(t.tile(r["filename"], r["__id"])) for r in
                                                           rows[:MAX_MEMBERS]],
                            max(0, len(rows) - MAX_MEMBERS), tuple(facts), tuple(badges)))
    return Section("components", title,
                   f"Connected components of the similarity graph with {min_items} or more images, largest first.",
                   "groups", groups, info.height, note="No group of similar images was found.")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _directed(sim: pl.DataFrame, query: str, other: str) -> pl.DataFrame:
    return sim.select(pl.col(query).alias("query"), pl.col(other).alias("other"), "distance",
                      pl.col(f"filename_{query}").alias("file_query"), pl.col(f"filename_{other}").alias("file_other"))


def _similarity(t: WorkTables, num_images: int, threshold: float | None) -> Section:
    title = "Similar images"
    sim = t.table(t.work.similarity_parquet)
    if sim is None:
        return _not_computed("similarity", title, "groups", t.work.similarity_parquet,
                             "the similarity stage did not run (stats-only run?)")
    if threshold is not None:
        sim = sim.filter(pl.col("distance") >= threshold)
    both = pl.concat([_directed(sim, "from", "to"), _directed(sim, "to", "from")])
    queries = both.group_by("query").agg(pl.len().alias("n"), pl.col("distance").max().alias("best")).sort(
        ["n", "best", "query"], descending=[True, True, False])
    top = queries.head(num_images)
    neighbours = both.filter(pl.col("query").is_in(top["query"].to_list())).sort(
        ["distance", "other"], descending=[True, False])
    by_query: dict[int, list[dict]] = {}
    for row in neighbours.to_dicts():
        by_query.setdefault(row["query"], []).append(row)
    prefetch([r[c] for rows in by_query.values() for r in rows[:MAX_MEMBERS] for c in ("file_query", "file_other")])
    groups = []
    for q in top.to_dicts():
        rows = by_query[q["query"]]
        groups.append(Group(
            f"{q['n']} similar image{'s' if q['n'] != 1 else ''}",
            [Item(t.tile(r["file_other"], r["other"]), float(r["distance"])) for r in rows[:MAX_MEMBERS]],
            max(0, len(rows) - MAX_MEMBERS), (("best similarity", _fmt(q["best"])),),
            _labels_badges(t, q["query"], *(r["other"] for r in rows)), head=t.tile(rows[0]["file_query"], q["query"])))
    return Section("similarity", title, "Each image with its most similar images, images with most neighbours first.",
                   "groups", groups, queries.height, note="No pair of images is similar enough.")


def _bad_files(t: WorkTables, num_images: int) -> Section:
    title = "Bad files"
    bad = t.table(t.work.bad_files_parquet)
    if bad is None:
        return _not_computed("bad_files", title, "table", t.work.bad_files_parquet, "the files were not scanned")
    bad = bad.sort(["error_code", "filename"])
    rows = [BadRow(t.relative(r["filename"]), r["filename"], r["error_code"], r["detail"] or "",
                   human_size(r["filesize"])) for r in bad.head(num_images).to_dicts()]
    reasons = bad.group_by("error_code").len().sort(["len", "error_code"], descending=[True, False])
    return Section("bad_files", title, "Files that could not be decoded or were rejected, by reason.", "table",
                   rows, bad.height, note="Every file could be read.",
                   extra={"reasons": list(zip(reasons["error_code"].to_list(), reasons["len"].to_list()))})


def _leakage(t: WorkTables, num_images: int) -> Section:
    title = "Train/test leakage"
    cross = t.table(t.work.cross_similarity_parquet)
    if cross is None:
        return _not_computed("leakage", title, "pairs", t.work.cross_similarity_parquet,
                             "run mode 3 (test_input) compares a test set with this work_dir's images.")
    cross = cross.sort(["distance", "from", "to"], descending=[True, False, False])
    items = _pairs(t, cross.head(num_images).to_dicts(), ("filename_from", ""), ("filename_to", "to"), "distance",
                   lambda r: (Badge("identical", "same"),) if r["distance"] >= 1.0 else ())
    return Section("leakage", title, "Test images that are near-duplicates of training images, most similar first.",
                   "pairs", items, cross.height, note="No test image is similar to a training image.",
                   extra={"left_caption": "test image", "right_caption": "training image",
                          "score_label": "similarity"})


def duplicates_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20, labels: Labels = None,
                       threshold: float | None = None, descending: bool = True, **options) -> Gallery:
    """Most similar pairs side by side (``duplicates.html``)."""
    return _gallery("duplicates", lambda t: _duplicates(t, num_images, threshold, descending), work, save_path,
                    labels, **options)


def outliers_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20, labels: Labels = None,
                     **options) -> Gallery:
    """Most isolated images with their nearest neighbour (``outliers.html``)."""
    return _gallery("outliers", lambda t: _outliers(t, num_images), work, save_path, labels, **options)


def stats_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20, labels: Labels = None,
                  metric: str = "blur", descending: bool | None = None, **options) -> Gallery:
    """Images ranked by ``metric``: ``dark``, ``bright``, ``blur`` or any image_stats column (``<metric>.html``)."""
    if not re.fullmatch(r"\w+", metric):
        raise ValueError(f"metric must be a column name, got {metric!r}")
    return _gallery(metric, lambda t: _stats(t, metric, num_images, descending), work, save_path, labels,
                    **options)


def component_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20, labels: Labels = None,
                      min_items: int = 2, max_items: int | None = None, **options) -> Gallery:
    """Largest groups of similar images, ``num_images`` groups (``components.html``)."""
    return _gallery("components", lambda t: _components(t, num_images, min_items, max_items), work, save_path,
                    labels, **options)


def similarity_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20, labels: Labels = None,
                       threshold: float | None = None, **options) -> Gallery:
    """Query images with their similar images (``similarity.html``)."""
    return _gallery("similarity", lambda t: _similarity(t, num_images, threshold), work, save_path, labels,
                    **options)


def bad_files_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20, labels: Labels = None,
                      **options) -> Gallery:
    """Table of unreadable or rejected files (``bad_files.html``)."""
    return _gallery("bad_files", lambda t: _bad_files(t, num_images), work, save_path, labels, **options)


def leakage_gallery(work: WorkLike, save_path: SavePath = None, num_images: int = 20, labels: Labels = None,
                    **options) -> Gallery:
    """Test images found in the training set, from ``cross_similarity.parquet`` (``leakage.html``)."""
    return _gallery("leakage", lambda t: _leakage(t, num_images), work, save_path, labels, **options)
