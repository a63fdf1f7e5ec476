"""Wrong labels and split leakage, from the similarity graph.

Each labeled image gets out-of-sample class probabilities from its labeled nearest neighbours
(itself excluded): their similarity-weighted votes, smoothed towards the class frequencies.
cleanlab's confident learning (``cleanlab.filter.find_label_issues``) decides which labels are
issues, with per-class thresholds (the mean probability a class's images give their own label);
a class with fewer than ``MIN_CLASS_SIZE`` judged images is too small for that, and there an
image is an issue when its most probable label is another. ``score = 1 - label quality``
(cleanlab's self-confidence by default) ranks them. The most probable label is the
``suggested_label``. An issue is ``wrong`` when the neighbours' vote agrees on the suggested label
(``agreement``), ``ambiguous`` when it is split.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from dup_pipeline.core.atomic import write_csv, write_parquet
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.similarity import Neighbours, with_names
from dup_pipeline.core.workdir import WorkDir

MIN_CLASS_SIZE = 5
RANK_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
ISSUE_COLUMNS = ("index", "filename", "label", "suggested_label", "score", "status", "agreement", "support",
                 "neighbours", "suggested_probability", "label_probability", "class_threshold")


@dataclass(frozen=True)
class LabelConfig:
    """How neighbours vote: similarities below ``min_similarity`` do not count, weights are
    ``similarity ** sharpness``; ``smoothing`` is the weight of the class frequencies added to each
    vote (so probabilities are never 0); ``agreement`` is the share the winning label needs for
    ``wrong``; ``min_support`` labeled neighbours are needed for any verdict; ``filter_by`` and
    ``rank_by`` are cleanlab's issue filter and label-quality score."""

    min_similarity: float = 0.3
    sharpness: float = 4.0
    agreement: float = 0.6
    min_support: int = 2
    smoothing: float = 0.1
    filter_by: str = "prune_by_noise_rate"
    rank_by: str = "self_confidence"

    def __post_init__(self) -> None:
        if not 0 <= self.min_similarity < 1:
            raise ConfigError(f"min_similarity must be in [0, 1), got {self.min_similarity!r}")
        if not 0.5 <= self.agreement <= 1:
            raise ConfigError(f"agreement must be in [0.5, 1], got {self.agreement!r}")
        if self.min_support < 1:
            raise ConfigError(f"min_support must be >= 1, got {self.min_support!r}")
        if not self.smoothing > 0:
            raise ConfigError(f"smoothing must be > 0, got {self.smoothing!r}")
        if self.filter_by not in FILTERS:
            raise ConfigError(f"filter_by must be one of {', '.join(FILTERS)}, got {self.filter_by!r}")
        if self.rank_by not in RANK_METHODS:
            raise ConfigError(f"rank_by must be one of {', '.join(RANK_METHODS)}, got {self.rank_by!r}")


def neighbour_votes(knn: Neighbours, labels: pl.DataFrame, config: LabelConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(images, votes)``: one row per labeled image with a vector (``index, filename, label,
    neighbours, support``) and its similarity-weighted vote per label (``index, theirs, vote, first``).
    Computed on a table of (image, neighbour) edges with polars, no Python loop per image."""
    known = labels.filter(pl.col("label").is_not_null()).select(pl.col("index").cast(pl.Int64), "filename", "label")
    n, k = knn.ids.shape
    images = known.join(pl.DataFrame({"index": knn.rows.astype(np.int64)}), on="index", how="semi")
    edges = (
        pl.DataFrame({"index": np.repeat(knn.rows.astype(np.int64), k), "pos": np.tile(np.arange(k), n),
                      "other": knn.ids.ravel().astype(np.int64), "sim": knn.sims.ravel().astype(np.float64)})
        .join(images.select("index"), on="index")
        .join(known.select(pl.col("index").alias("other"), pl.col("label").alias("theirs")), on="other")
        .filter((pl.col("other") != pl.col("index")) & (pl.col("sim") >= config.min_similarity)
                & pl.col("sim").is_not_nan())
        .with_columns(weight=pl.col("sim") ** config.sharpness)
    )
    votes = edges.group_by("index", "theirs").agg(pl.col("weight").sum().alias("vote"), pl.col("pos").min().alias("first"))
    neighbours = edges.sort("index", "pos").group_by("index", maintain_order=True).agg(
        pl.col("other").alias("neighbours"), pl.len().alias("support"))
    images = images.join(neighbours, on="index", how="left").with_columns(
        pl.col("support").fill_null(0).cast(pl.Int64),
        pl.col("neighbours").fill_null(pl.lit([], dtype=pl.List(pl.Int64))))
    return images, votes


def class_probabilities(images: pl.DataFrame, votes: pl.DataFrame, classes: list[str],
                        smoothing: float) -> np.ndarray:
    """Out-of-sample ``P(class | neighbours)`` per image (rows of ``images``, columns ``classes``):
    the votes plus ``smoothing`` times the class frequencies among ``images``, normalized."""
    code = {c: i for i, c in enumerate(classes)}
    row = {int(i): r for r, i in enumerate(images["index"])}
    votes = votes.filter(pl.col("index").is_in(images["index"].implode()))
    counts = np.zeros((images.height, len(classes)))
    np.add.at(counts, ([row[int(i)] for i in votes["index"]], [code[c] for c in votes["theirs"]]),
              votes["vote"].to_numpy())
    prior = np.bincount([code[c] for c in images["label"]], minlength=len(classes)) / max(images.height, 1)
    counts += smoothing * prior
    return counts / counts.sum(axis=1, keepdims=True)


def _confident_learning(given: np.ndarray, probs: np.ndarray, config: LabelConfig,
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cleanlab's verdict: ``(is_issue, label_quality, per-class thresholds)``."""
    from cleanlab.count import get_confident_thresholds
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    present, sizes = np.unique(given, return_counts=True)
    small = np.isin(given, present[sizes < MIN_CLASS_SIZE])
    # cleanlab expects classes 0..K-1 all present: restrict to the classes that images carry.
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = probs[:, present] / probs[:, present].sum(axis=1, keepdims=True)
    labels = remap[given]
    thresholds = np.full(probs.shape[1], np.nan)
    if len(present) < 2:  # one class: nothing to confuse it with
        thresholds[present] = 1.0
        return np.zeros(len(given), bool), np.ones(len(given)), thresholds
    with warnings.catch_warnings():  # "too few examples" warnings: small classes are handled below
        warnings.simplefilter("ignore")
        quality = get_label_quality_scores(labels, sub, method=config.rank_by)
        thresholds[present] = get_confident_thresholds(labels, sub)
        issues = find_label_issues(labels, sub, filter_by=config.filter_by, n_jobs=1)
    # an undefined score (e.g. entropy weights of a single image) falls back to self-confidence
    quality = np.where(np.isfinite(quality), quality, sub[np.arange(len(labels)), labels])
    return issues | (small & (sub.argmax(axis=1) != labels)), quality, thresholds


def label_issues(knn: Neighbours, labels: pl.DataFrame, config: LabelConfig = LabelConfig()) -> pl.DataFrame:
    """One row per labeled image with a feature vector, highest score first: ``index, filename, label,
    suggested_label, score, status, agreement, support, neighbours, suggested_probability,
    label_probability, class_threshold``."""
    images, votes = neighbour_votes(knn, labels, config)
    classes = sorted(set(images["label"]))
    share = votes.join(votes.group_by("index").agg(pl.col("vote").sum().alias("total")), on="index")
    best = (share.with_columns(agreement=pl.col("vote") / pl.col("total"))
            .sort(["index", "vote", "first"], descending=[False, True, False])
            .group_by("index", maintain_order=True).agg(pl.col("agreement").first(), pl.col("total").first()))
    images = images.join(best, on="index", how="left")
    judged = images.filter((pl.col("support") >= config.min_support) & (pl.col("total") > 0))
    schema = {"index": pl.Int64, "suggested_label": pl.String, "score": pl.Float64, "flagged": pl.Boolean,
              "suggested_probability": pl.Float64, "label_probability": pl.Float64, "class_threshold": pl.Float64}
    verdicts = pl.DataFrame(schema=schema)
    if judged.height:
        probs = class_probabilities(judged, votes, classes, config.smoothing)
        code = {c: i for i, c in enumerate(classes)}
        given = np.array([code[c] for c in judged["label"]])
        # the given label wins ties, so an image is never suggested a label no more probable than its own
        top = np.where(probs.max(axis=1) <= probs[np.arange(len(given)), given], given, probs.argmax(axis=1))
        flagged, quality, thresholds = _confident_learning(given, probs, config)
        verdicts = pl.DataFrame({
            "index": judged["index"], "suggested_label": [classes[t] for t in top], "score": 1.0 - quality,
            "flagged": flagged, "suggested_probability": probs[np.arange(len(top)), top],
            "label_probability": probs[np.arange(len(given)), given], "class_threshold": thresholds[given],
        }, schema=schema)
    rows = images.join(verdicts, on="index", how="left")
    return (
        rows.with_columns(
            score=pl.col("score").fill_null(0.0),
            status=pl.when(pl.col("flagged").is_null()).then(pl.lit("unsupported"))
            .when(~pl.col("flagged") | (pl.col("suggested_label") == pl.col("label"))).then(pl.lit("ok"))
            .when(pl.col("agreement") >= config.agreement).then(pl.lit("wrong")).otherwise(pl.lit("ambiguous")),
            agreement=pl.when(pl.col("flagged").is_not_null()).then("agreement"),
        )
        .select(*ISSUE_COLUMNS)
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
    write_csv(wrong.select("filename", "label", "suggested_label", "score", "agreement", "support", "index",
                           "suggested_probability", "class_threshold"), work.mislabels_csv)
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


