"""What each gallery shows, read from a work_dir's tables (a :class:`Section`, not yet rendered)."""

from collections import Counter
from collections.abc import Callable

import polars as pl

from dup_pipeline.core.image_issues import IMAGE_ISSUES_FILE, ISSUES, image_issues, issue_thresholds
from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.report.render import Section
from dup_pipeline.core.report.thumbnails import prefetch
from dup_pipeline.core.report.views import Badge, BadRow, Group, Item, Pair, human_size
from dup_pipeline.core.tables import bad_reason_counts

MAX_MEMBERS = 12
CHAINED_BELOW = 0.8
NO_GRAPH = "the similarity stage did not run (stats-only run?)"
STATS_METRICS = {  # metric: (column, highest first, title, description)
    "dark": ("mean", False, "Darkest images", "Lowest mean luminance first (0 = black, 255 = white)."),
    "bright": ("mean", True, "Brightest images", "Highest mean luminance first (0 = black, 255 = white)."),
    "blur": ("blur", False, "Blurriest images",
             "Lowest sharpness first (variance of the Laplacian: low means blurry)."),
}
_PAIR_CAPTIONS = {"left_caption": "", "right_caption": "", "score_label": "similarity"}


def _not_computed(key: str, title: str, template: str, path, hint: str) -> Section:
    return Section(key, title, "", template, [], 0, computed=False,
                   note=f"{path.name} is not in the work_dir: {hint}")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _by(rows: list[dict], key: str) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    return grouped


def _labels_differ(t: WorkTables, *indexes: int | None) -> tuple[Badge, ...]:
    found = {t.labels.get(i) for i in indexes if i is not None} - {None}
    return (Badge("labels differ", "warn"),) if len(found) > 1 else ()


def _pairs(t: WorkTables, rows: list[dict], left: tuple[str, str | None], right: tuple[str, str | None],
           badges: Callable[[dict], tuple[Badge, ...]]) -> list[Pair]:
    """``left``/``right``: (file name column, manifest index column or None) of each side."""
    prefetch([r[side[0]] for r in rows for side in (left, right)])

    def tile(r: dict, side: tuple[str, str | None]):
        return t.tile(r[side[0]], r[side[1]] if side[1] else None)

    return [Pair(tile(r, left), tile(r, right), float(r["distance"]), badges(r)) for r in rows]


def duplicates(t: WorkTables, num_images: int, threshold: float | None, descending: bool) -> Section:
    sim = t.table(t.work.similarity_parquet)
    if sim is None:
        return _not_computed("duplicates", "Duplicates", "pairs", t.work.similarity_parquet, NO_GRAPH)
    if threshold is not None:
        sim = sim.filter(pl.col("distance") >= threshold)
    sim = sim.sort(["distance", "from", "to"], descending=[descending, False, False])
    hashes = t.content_hashes

    def badges(r: dict) -> tuple[Badge, ...]:
        a, b = hashes.get(r["from"]), hashes.get(r["to"])
        same = a is not None and a == b if hashes else r["distance"] >= 1.0
        return ((Badge("identical bytes", "same"),) if same else ()) + _labels_differ(t, r["from"], r["to"])

    items = _pairs(t, sim.head(num_images).to_dicts(), ("filename_from", "from"), ("filename_to", "to"),
                   badges)
    cut = f" at or above {threshold:g}" if threshold is not None else ""
    return Section("duplicates", "Duplicates",
                   f"Pairs of images with near-identical embeddings{cut} (similarity 1 = identical), "
                   f"{'most' if descending else 'least'} similar first.",
                   "pairs", items, sim.height, note="No pair of images is similar enough.",
                   extra=_PAIR_CAPTIONS)


def outliers(t: WorkTables, num_images: int) -> Section:
    out = t.table(t.work.outliers_parquet)
    if out is None:
        return _not_computed("outliers", "Outliers", "pairs", t.work.outliers_parquet, NO_GRAPH)
    out = out.sort(["distance", "outlier"])
    items = _pairs(t, out.head(num_images).to_dicts(), ("filename_outlier", "outlier"),
                   ("filename_nearest", "nearest"), lambda r: ())
    return Section("outliers", "Outliers",
                   "Images least similar to everything else, each with its nearest neighbour, "
                   "most isolated first.",
                   "pairs", items, out.height, note="No outliers were found.",
                   extra={"left_caption": "outlier", "right_caption": "nearest neighbour",
                          "score_label": "nearest similarity"})


def stats(t: WorkTables, metric: str, num_images: int, descending: bool | None) -> Section:
    column, highest, title, description = STATS_METRICS.get(metric, (metric, True, f"Images by {metric}", ""))
    table = t.table(t.work.image_stats_parquet)
    if table is None:
        return _not_computed(metric, title, "grid", t.work.image_stats_parquet,
                             "image statistics were not computed")
    if column not in table.columns or not table.schema[column].is_numeric():
        numeric = [c for c, d in table.schema.items() if d.is_numeric() and c != "index"]
        raise ValueError(f"metric must be dark, bright, blur or a numeric image_stats column "
                         f"({', '.join(numeric)}), got {metric!r}")
    highest = highest if descending is None else descending
    description = description or f"Sorted by {column}, {'highest' if highest else 'lowest'} first."
    valid = table.filter(pl.col(column).cast(pl.Float64).is_finite())
    rows = valid.sort([column, "index"], descending=[highest, False]).head(num_images).to_dicts()
    prefetch([r["filename"] for r in rows])
    items = [Item(t.tile(r["filename"], r["index"]), float(r[column])) for r in rows]
    digits = 0 if table.schema[column].is_integer() else (1 if column in ("mean", "blur", "stdv") else 3)
    value_label = {"mean": "mean luminance", "blur": "sharpness"}.get(column, column)
    return Section(metric, title, description, "grid", items, valid.height, note="No image statistics.",
                   extra={"value_label": value_label, "digits": digits})


def image_issue(t: WorkTables, issue: str, num_images: int, thresholds: dict[str, float] | None = None) -> Section:
    """Images with one cleanvision-style issue, worst first: from ``image_issues.parquet`` when the
    pipeline wrote it (its thresholds) and no ``thresholds`` are given, else from the statistics."""
    spec = ISSUES[issue]
    limits = issue_thresholds(thresholds)
    found = t.table(t.work.root / IMAGE_ISSUES_FILE) if thresholds is None else None
    if found is None:
        stats = t.table(t.work.image_stats_parquet)
        if stats is None:
            return _not_computed(issue, spec.title, "grid", t.work.image_stats_parquet,
                                 "image statistics were not computed")
        found = image_issues(stats, limits)
    flagged = found.filter(pl.col(issue))
    score = pl.col(spec.score)
    worst = (score.log().abs() if spec.two_sided else score).alias("_worst")
    rows = flagged.with_columns(worst).sort(["_worst", "index"], descending=[spec.two_sided, False])
    rows = rows.head(num_images).to_dicts()
    prefetch([r["filename"] for r in rows])
    items = [Item(t.tile(r["filename"], r["index"]), r[spec.score]) for r in rows]  # None: a grayscale file
    return Section(issue, spec.title, spec.description.format(t=limits[issue]) + " Worst first.", "grid", items,
                   flagged.height, note="No image has this issue.",
                   extra={"value_label": spec.score.replace("_", " "), "digits": 2})


def _component_group(t: WorkTables, info: dict, rows: list[dict]) -> Group:
    facts = [("images", str(info["count"])), ("mean similarity", _fmt(info["mean_distance"])),
             ("min similarity", _fmt(info["min_distance"]))]
    badges = []
    exact = info.get("min_exact_similarity")
    if exact is not None:
        facts.append(("min exact similarity", _fmt(exact)))
        if exact < min(CHAINED_BELOW, info["min_distance"] or 1.0):
            badges.append(Badge("chained: some members are not alike", "warn"))
    mix = Counter(t.labels[r["__id"]] for r in rows if r["__id"] in t.labels)
    if len(mix) > 1:
        counts = ", ".join(f"{k} \u00d7{v}" for k, v in mix.most_common())
        badges.append(Badge(f"mixed labels: {counts}", "warn"))
    members = [Item(t.tile(r["filename"], r["__id"])) for r in rows[:MAX_MEMBERS]]
    return Group(f"Group {info['component_id']}", members, max(0, len(rows) - MAX_MEMBERS), tuple(facts),
                 tuple(badges))


def components(t: WorkTables, num_images: int, min_items: int, max_items: int | None) -> Section:
    title = "Similar-image groups"
    cc = t.table(t.work.components_parquet)
    if cc is None:
        return _not_computed("components", title, "groups", t.work.components_parquet, NO_GRAPH)
    info = t.table(t.work.components_info_csv)
    if info is None:
        edges = ("mean_distance", "min_distance", "max_distance")
        info = cc.group_by("component_id").agg(pl.len().alias("count"), *(pl.col(c).first() for c in edges))
    keep = pl.col("count") >= min_items
    if max_items is not None:
        keep &= pl.col("count") <= max_items
    info = info.filter(keep)
    info = info.sort(["count", "mean_distance", "component_id"], descending=[True, True, False],
                     nulls_last=True)
    top = info.head(num_images).to_dicts()
    ids = [c["component_id"] for c in top]
    members = _by(cc.filter(pl.col("component_id").is_in(ids)).sort("__id").to_dicts(), "component_id")
    prefetch([r["filename"] for rows in members.values() for r in rows[:MAX_MEMBERS]])
    groups = [_component_group(t, c, members.get(c["component_id"], [])) for c in top]
    return Section("components", title,
                   f"Connected components of the similarity graph with {min_items} or more images, "
                   "largest first.",
                   "groups", groups, info.height, note="No group of similar images was found.")


def _directed(sim: pl.DataFrame, query: str, other: str) -> pl.DataFrame:
    return sim.select(pl.col(query).alias("query"), pl.col(other).alias("other"), "distance",
                      pl.col(f"filename_{query}").alias("file_query"),
                      pl.col(f"filename_{other}").alias("file_other"))


def similarity(t: WorkTables, num_images: int, threshold: float | None) -> Section:
    title = "Similar images"
    sim = t.table(t.work.similarity_parquet)
    if sim is None:
        return _not_computed("similarity", title, "groups", t.work.similarity_parquet, NO_GRAPH)
    if threshold is not None:
        sim = sim.filter(pl.col("distance") >= threshold)
    both = pl.concat([_directed(sim, "from", "to"), _directed(sim, "to", "from")])
    queries = both.group_by("query").agg(pl.len().alias("n"), pl.col("distance").max().alias("best")).sort(
        ["n", "best", "query"], descending=[True, True, False])
    top = queries.head(num_images).to_dicts()
    neighbours = _by(both.filter(pl.col("query").is_in([q["query"] for q in top])).sort(
        ["distance", "other"], descending=[True, False]).to_dicts(), "query")
    prefetch([r[c] for rows in neighbours.values() for r in rows[:MAX_MEMBERS]
              for c in ("file_query", "file_other")])
    groups = []
    for q in top:
        rows = neighbours[q["query"]]
        groups.append(Group(
            f"{q['n']} similar image{'s' if q['n'] != 1 else ''}",
            [Item(t.tile(r["file_other"], r["other"]), float(r["distance"])) for r in rows[:MAX_MEMBERS]],
            max(0, len(rows) - MAX_MEMBERS), (("best similarity", _fmt(q["best"])),),
            _labels_differ(t, q["query"], *(r["other"] for r in rows)),
            head=t.tile(rows[0]["file_query"], q["query"])))
    return Section("similarity", title,
                   "Each image with its most similar images, images with most neighbours first.", "groups",
                   groups, queries.height, note="No pair of images is similar enough.")


def bad_files(t: WorkTables, num_images: int) -> Section:
    bad = t.table(t.work.bad_files_parquet)
    if bad is None:
        return _not_computed("bad_files", "Bad files", "table", t.work.bad_files_parquet,
                             "the files were not scanned")
    bad = bad.sort(["error_code", "filename"])
    rows = [BadRow(t.relative(r["filename"]), r["filename"], r["error_code"], r["detail"] or "",
                   human_size(r["filesize"])) for r in bad.head(num_images).to_dicts()]
    return Section("bad_files", "Bad files", "Files that could not be decoded or were rejected, by reason.",
                   "table", rows, bad.height, note="Every file could be read.",
                   extra={"reasons": list(bad_reason_counts(bad).items())})


def _split_leakage(t: WorkTables) -> pl.DataFrame | None:
    """Pairs across splits, oriented held-out image first, training image second."""
    leak = t.table(t.work.leakage_csv)
    if leak is None:
        return None
    train = pl.col("split_from").str.to_lowercase().is_in(["train", "training"])
    return leak.select(
        pl.when(train).then(pl.col("to")).otherwise(pl.col("from")).alias("from"),
        pl.when(train).then(pl.col("from")).otherwise(pl.col("to")).alias("to"),
        "distance",
        pl.when(train).then(pl.col("filename_to")).otherwise(pl.col("filename_from")).alias("filename_from"),
        pl.when(train).then(pl.col("filename_from")).otherwise(pl.col("filename_to")).alias("filename_to"),
    )


def leakage(t: WorkTables, num_images: int) -> Section:
    title = "Train/test leakage"
    found = [df for df in (_split_leakage(t), t.table(t.work.cross_similarity_parquet)) if df is not None]
    if not found:
        return _not_computed("leakage", title, "pairs", t.work.leakage_csv,
                             "give labels with a split column, or run mode 3 (test_input) against a training set.")
    schema = {"from": pl.Int64, "to": pl.Int64, "distance": pl.Float64, "filename_from": pl.String,
              "filename_to": pl.String}
    cross = pl.concat([df.select(list(schema)).cast(schema) for df in found])
    cross = cross.sort(["distance", "from", "to"], descending=[True, False, False])
    items = _pairs(t, cross.head(num_images).to_dicts(), ("filename_from", None), ("filename_to", "to"),
                   lambda r: (Badge("identical", "same"),) if r["distance"] >= 1.0 else ())
    return Section("leakage", title,
                   "Held-out (test/validation) images that are near-duplicates of training images, most similar "
                   "first.", "pairs", items, cross.height, note="No test image is similar to a training image.",
                   extra={"left_caption": "test image", "right_caption": "training image",
                          "score_label": "similarity"})


def mislabels(t: WorkTables, num_images: int) -> Section:
    title = "Likely wrong labels"
    issues = t.table(t.work.label_issues_parquet)
    if issues is None:
        return _not_computed("mislabels", title, "groups", t.work.label_issues_parquet,
                             "give labels (--labels CSV, annotations=..., or labels from folder names).")
    flagged = issues.filter(pl.col("status").is_in(["wrong", "ambiguous"])).sort(
        [pl.col("status") == "wrong", "score", "index"], descending=[True, True, False])
    top = flagged.head(num_images).to_dicts()
    paths = dict(zip(issues["index"].to_list(), issues["filename"].to_list()))
    prefetch([paths[i] for r in top for i in [r["index"], *r["neighbours"][:MAX_MEMBERS]] if i in paths])
    groups = []
    for r in top:
        neighbours = [i for i in r["neighbours"] if i in paths]
        verdict = (Badge("likely wrong", "warn"),) if r["status"] == "wrong" else (
            Badge("ambiguous: neighbours disagree", "info"),)
        groups.append(Group(
            f"labeled {r['label']} \u2192 suggested {r['suggested_label']}",
            [Item(t.tile(paths[i], i)) for i in neighbours[:MAX_MEMBERS]],
            max(0, len(neighbours) - MAX_MEMBERS),
            (("score", _fmt(r["score"])), ("suggested probability", _fmt(r.get("suggested_probability"))),
             ("agreement", _fmt(r["agreement"])), ("labeled neighbours", str(r["support"]))),
            verdict, head=t.tile(r["filename"], r["index"]), head_caption=f"given label: {r['label']}"))
    return Section("mislabels", title,
                   "Images whose label cleanlab's confident learning flags, judged from their nearest neighbours' "
                   "labels (score = 1 - the probability of the given label), with those neighbours; ambiguous ones "
                   "(the neighbours' vote is split) after.",
                   "groups", groups, flagged.height, note="No label looks wrong.")
