"""Wrong labels and split leakage, from the similarity graph.

Each labeled image gets a vote of its labeled nearest neighbours, weighted by similarity. The
label's share of the vote gives ``score = 1 - share`` (how likely the label is wrong) and the
winning label is the ``suggested_label``. An image is reported ``wrong`` only when its
neighbours agree among themselves on another label; when they disagree it is ``ambiguous``.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from dup_pipeline.core.atomic import write_csv, write_parquet
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.similarity import Neighbours, with_names
from dup_pipeline.core.workdir import WorkDir


@dataclass(frozen=True)
class LabelConfig:
    """How neighbours vote: similarities below ``min_similarity`` do not count, weights are
    ``similarity ** sharpness``; ``agreement`` is the share the winning label needs for ``wrong``;
    ``min_support`` labeled neighbours are needed for any verdict."""

    min_similarity: float = 0.3
    sharpness: float = 4.0
    agreement: float = 0.6
    min_support: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.min_similarity < 1:
            raise ConfigError(f"min_similarity must be in [0, 1), got {self.min_similarity!r}")
        if not 0.5 <= self.agreement <= 1:
            raise ConfigError(f"agreement must be in [0.5, 1], got {self.agreement!r}")
        if self.min_support < 1:
            raise ConfigError(f"min_support must be >= 1, got {self.min_support!r}")


def label_issues(knn: Neighbours, labels: pl.DataFrame, config: LabelConfig = LabelConfig()) -> pl.DataFrame:
    """One row per labeled image with a feature vector, highest score first: ``index, filename, label,
    suggested_label, score, status, agreement, support, neighbours``. Computed on a table of
    (image, neighbour) edges with polars, no Python loop per image or edge."""
    known = labels.filter(pl.col("label").is_not_null()).select(pl.col("index").cast(pl.Int64), "filename", "label")
    n, k = knn.ids.shape
    images = known.join(pl.DataFrame({"index": knn.rows.astype(np.int64)}), on="index", how="semi")
    edges = (
        pl.DataFrame({"index": np.repeat(knn.rows.astype(np.int64), k), "pos": np.tile(np.arange(k), n),
                      "other": knn.ids.ravel().astype(np.int64), "sim": knn.sims.ravel().astype(np.float64)})
        .join(images.select("index", "label"), on="index")
        .join(known.select(pl.col("index").alias("other"), pl.col("label").alias("theirs")), on="other")
        .filter((pl.col("other") != pl.col("index")) & (pl.col("sim") >= config.min_similarity)
                & pl.col("sim").is_not_nan())
        .with_columns(weight=pl.col("sim") ** config.sharpness)
    )
    votes = (
        edges.group_by("index", "theirs")
        .agg(pl.col("weight").sum().alias("vote"), pl.col("pos").min().alias("first"),
             (pl.col("theirs") == pl.col("label")).first().alias("own"))
    )
    best = (  # the highest vote; the given label among equal votes, else the label seen first
        votes.sort(["index", "vote", "own", "first"], descending=[False, True, True, False])
        .group_by("index", maintain_order=True)
        .agg(pl.col("theirs").first().alias("suggested_label"), pl.col("vote").first().alias("best"),
             pl.col("vote").sum().alias("total"), pl.col("vote").filter(pl.col("own")).sum().alias("own_vote"))
    )
    neighbours = edges.sort("index", "pos").group_by("index", maintain_order=True).agg(
        pl.col("other").alias("neighbours"), pl.len().alias("support"))
    rows = (
        images.join(neighbours, on="index", how="left").join(best, on="index", how="left")
        .with_columns(pl.col("support").fill_null(0).cast(pl.Int64),
                      pl.col("neighbours").fill_null(pl.lit([], dtype=pl.List(pl.Int64))))
    )
    verdict = (pl.col("support") >= config.min_support) & (pl.col("total") > 0)
    agreement = pl.col("best") / pl.col("total")
    return (
        rows.with_columns(
            suggested_label=pl.when(verdict).then("suggested_label"),
            score=pl.when(verdict).then(1.0 - pl.col("own_vote") / pl.col("total")).otherwise(0.0),
            status=pl.when(~verdict).then(pl.lit("unsupported"))
            .when(pl.col("suggested_label") == pl.col("label")).then(pl.lit("ok"))
            .when(agreement >= config.agreement).then(pl.lit("wrong")).otherwise(pl.lit("ambiguous")),
            agreement=pl.when(verdict).then(agreement),
        )
        .select("index", "filename", "label", "suggested_label", "score", "status", "agreement", "support",
                "neighbours")
        .sort(["score", "index"], descending=[True, False])
    )


def label_conflicts(pairs: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Duplicate / near-duplicate pairs whose two images carry different labels."""
    lab = labels.filter(pl.col("label").is_not_null()).select("index", "label")
    return (
        pairs.select("from", "to", "distance")
        .join(lab.rename({"index": "from", "label": "label_from"}), on="from")
        .join(lab.rename({"index": "to", "label": "label_to"}), on="to")
        .filter(pl.col("label_from") != pl.col("label_to"))
        .sort("distance", descending=True)
    )


def split_leakage(pairs: pl.DataFrame, labels: pl.DataFrame, components: pl.DataFrame | None = None,
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pairs whose images belong to different splits, and components spanning several splits."""
    split = labels.filter(pl.col("split").is_not_null()).select("index", "split")
    crossing = (
        pairs.select("from", "to", "distance")
        .join(split.rename({"index": "from", "split": "split_from"}), on="from")
        .join(split.rename({"index": "to", "split": "split_to"}), on="to")
        .filter(pl.col("split_from") != pl.col("split_to"))
        .sort("distance", descending=True)
    )
    if components is None or components.is_empty():
        return crossing, pl.DataFrame(schema={"component_id": pl.Int64, "count": pl.Int64, "splits": pl.List(pl.String)})
    spanning = (
        components.select(pl.col("__id").alias("index"), "component_id")
        .join(split, on="index")
        .group_by("component_id")
        .agg(pl.len().alias("count"), pl.col("split").unique().sort().alias("splits"))
        .filter(pl.col("splits").list.len() > 1)
        .sort(["count", "component_id"], descending=[True, False])
    )
    return crossing, spanning


def _named(df: pl.DataFrame, manifest: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    return with_names(df, manifest.select("index", pl.col("path").alias("filename")), columns)


def write_label_issues(work: WorkDir, manifest: pl.DataFrame, knn: Neighbours, pairs: pl.DataFrame,
                       labels: pl.DataFrame, config: LabelConfig = LabelConfig()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``label_issues.parquet`` (every labeled image), ``mislabels.csv`` (status wrong, highest score
    first) and ``label_conflicts.csv`` (duplicate pairs with different labels)."""
    issues = label_issues(knn, labels, config)
    write_parquet(issues, work.label_issues_parquet)
    wrong = issues.filter(pl.col("status") == "wrong")
    write_csv(wrong.select("filename", "label", "suggested_label", "score", "agreement", "support", "index"),
              work.mislabels_csv)
    conflicts = _named(label_conflicts(pairs, labels), manifest, {"from": "filename_from", "to": "filename_to"})
    write_csv(conflicts, work.label_conflicts_csv)
    return issues, conflicts


def write_leakage(work: WorkDir, manifest: pl.DataFrame, pairs: pl.DataFrame, labels: pl.DataFrame,
                  components: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``leakage.csv`` (pairs across splits, with file names) and ``leakage_components.parquet``."""
    crossing, spanning = split_leakage(pairs, labels, components)
    crossing = _named(crossing, manifest, {"from": "filename_from", "to": "filename_to"})
    write_csv(crossing, work.leakage_csv)
    write_parquet(spanning, work.leakage_components_parquet)
    return crossing, spanning


def label_error_rate(issues: pl.DataFrame) -> float:
    """Fraction of images with a verdict whose label is estimated wrong."""
    judged = issues.filter(pl.col("status") != "unsupported")
    return float((judged["status"] == "wrong").sum() / judged.height) if judged.height else 0.0


def precision_recall(found: list[int], truth: set[int]) -> tuple[float, float]:
    """Precision and recall of ``found`` against ``truth`` (used by tests and benchmarks)."""
    hits = len(set(found) & truth)
    return (hits / len(found) if found else 1.0), (hits / len(truth) if truth else 1.0)


