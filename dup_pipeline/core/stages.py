"""The pipeline's stages in one registry; the CLI, ``fd.run``, the Dagster assets and the audit all run them.

A stage writes its files into the work_dir (``compute``) and summarizes what is written
(``describe``: counts, fractions, a preview table, paths). Its fingerprint is the digest of its
own settings and of the fingerprints of the stages it reads (the manifest's is the digest of the
manifest, the ranges' the digest of their commit markers); when the fingerprint and the files are
unchanged the stage is not computed again and its result says ``reused``. Fingerprints are kept
in ``work_dir/stages/<name>.json``. A dataset without good images (no vectors) gets empty pair
and outlier tables and no index, components, ranks or label findings, with the reason.

``run_stages`` runs stages in the registry's order: nothing else sequences them.
"""

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dup_pipeline.core.atomic import remove_temp_files, write_json, write_parquet
from dup_pipeline.core.audit import write_audit_summary
from dup_pipeline.core.clean import CLEAN_LIST, CLEAN_PARQUET, DROPPED_PARQUET, CleanList, write_clean_list
from dup_pipeline.core.config import PipelineConfig
from dup_pipeline.core.errors import InputError
from dup_pipeline.core.features import MATRIX_VERSION, FeatureMatrix, assemble_features, load_features
from dup_pipeline.core.image_issues import (
    IMAGE_ISSUES_FILE,
    ISSUES,
    issue_counts,
    issue_thresholds,
    write_image_issues,
)
from dup_pipeline.core.inputs import InputSpec
from dup_pipeline.core.label_issues import label_error_rate, write_label_issues, write_leakage
from dup_pipeline.core.labels import labels_from_folders, load_labels
from dup_pipeline.core.manifest import build_manifest, exact_duplicate_groups
from dup_pipeline.core.memory import release_free_memory, release_mapped_pages
from dup_pipeline.core.progress import ProgressSink, silent_progress
from dup_pipeline.core.range_scan import (
    FEATURES_VERSION,
    SCAN_VERSION,
    RangeScanOutcome,
    is_range_current,
    range_rows,
    read_range_features,
    read_range_scan,
    scan_range,
)
from dup_pipeline.core.ranges import OffsetRange, offset_ranges
from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.report.report import Report, build_report, report_markdown, summarize
from dup_pipeline.core.sources.catalog import SourceSettings, discover
from dup_pipeline.core.similarity import (
    GRAPH_VERSION,
    Neighbours,
    find_neighbours,
    update_index,
    write_components,
    write_outliers,
    write_ranks,
    write_similarity,
)
from dup_pipeline.core.tables import bad_reason_counts, combine_scans
from dup_pipeline.core.workdir import WorkDir, holding_lock

STAGES_VERSION = "1"
Metrics = dict[str, Any]


def _digest(*parts: object) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class StageResult:
    """What one output (asset) of a stage holds now."""

    asset: str
    metrics: Metrics  # counts and fractions (numbers, so that Dagster can plot them across audits)
    paths: dict[str, Path]  # "path" is the main file
    preview: pl.DataFrame | None = None
    reused: bool = False  # the inputs and settings did not change: the files of an earlier run were kept
    skipped: str | None = None  # why there is nothing (e.g. no good images)
    fingerprint: str = ""
    markdown: str | None = None  # a short summary for people


class StageContext:
    """One run over a work_dir: the configuration, progress sink, log and the tables stages share."""

    def __init__(self, config: PipelineConfig, progress: ProgressSink = silent_progress,
                 log: Callable[[str], None] | None = None, name: str | None = None) -> None:
        self.config = config
        self.work = WorkDir(config.work_dir)
        self.progress = progress
        self.log = log or (lambda message: None)
        self.name = name  # the dataset's name (report header)
        self.results: dict[str, list[StageResult]] = {}
        self._manifest: pl.DataFrame | None = None
        self._features: FeatureMatrix | None = None
        self._knn: Neighbours | None = None

    @property
    def manifest(self) -> pl.DataFrame:
        if self._manifest is None:
            self._manifest = pl.read_parquet(self.work.manifest)
        return self._manifest

    @property
    def features(self) -> FeatureMatrix:
        if self._features is None:
            self._features = load_features(self.work)
        return self._features

    @property
    def has_vectors(self) -> bool:
        return self.work.features_meta.exists() and bool(self.features.matrix.shape[0])

    @property
    def knn(self) -> Neighbours:
        """Every image's nearest neighbours (empty without vectors)."""
        if self._knn is None:
            if self.has_vectors:
                self._knn = find_neighbours(self.work, self.manifest, self.features, self.config.graph,
                                            self.config.threads)
            else:
                self._knn = Neighbours(np.empty(0, np.int64), np.empty((0, 1), np.float32),
                                       np.empty((0, 1), np.int64), "")
        return self._knn

    def release_feature_pages(self) -> None:
        """Drop the pages of the feature matrix a stage read (all of them in the kNN search) from the
        process's resident set, if it is loaded (:func:`release_mapped_pages`)."""
        if self._features is not None:
            release_mapped_pages(self._features.matrix)

    def forget(self) -> None:
        """Drop the shared tables (after a stage rewrote them)."""
        self._manifest = self._features = self._knn = None


# --------------------------------------------------------------------------------------------
# stage functions: compute writes files (returns metrics of this run), describe summarizes them


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _no_vectors(ctx: StageContext, *paths: Path) -> Metrics:
    _remove(*paths)
    ctx.log(f"{ctx.name or ctx.work.root}: no good images (no vectors): nothing to compute")
    return {}


@holding_lock
def update_manifest(work: WorkDir, source: InputSpec, progress: ProgressSink = silent_progress,
                    sources: SourceSettings = SourceSettings()) -> pl.DataFrame:
    """Scan ``source`` and write ``manifest.parquet`` (append-only, hashes reused when unchanged)."""
    remove_temp_files(work.root)  # left by a killed run (safe: we hold the work_dir lock)
    previous = pl.read_parquet(work.manifest) if work.manifest.exists() else None
    entries = discover(source, sources, previous)
    if not entries and (previous is None or previous.is_empty()):
        raise InputError(f"input {_describe(source)} contains no image files")
    known = set(previous["path"].to_list()) if previous is not None else set()
    with progress("manifest", len(entries) + len(known - {e.name for e in entries})) as advance:
        manifest = build_manifest(entries, previous, advance, sources)
    write_parquet(manifest, work.manifest)
    return manifest


def _describe(source: InputSpec) -> str:
    return f"list of {len(source)} paths" if isinstance(source, (list, tuple)) else repr(str(source))


def compute_manifest(ctx: StageContext) -> Metrics:
    update_manifest(ctx.work, ctx.config.input, ctx.progress, ctx.config.sources)
    if ctx.config.labels is None and not ctx.config.labels_from_folders:
        remove_label_outputs(ctx.work)  # labels dropped from the configuration: their findings go too
    ctx.forget()
    return {}


def describe_manifest(ctx: StageContext) -> list[StageResult]:
    m = ctx.manifest
    groups = exact_duplicate_groups(m)
    return [StageResult("file_manifest", {
        "files": m.height, "missing_files": int(m["missing"].sum()),
        "offset_ranges": len(offset_ranges(m.height, ctx.config.range_size)),
        "byte_identical_groups": groups.height}, {"path": ctx.work.manifest},
        m.select("index", "path", "size", "content_hash"))]


def manifest_fingerprint(ctx: StageContext) -> str:
    return _digest(ctx.manifest.select("index", "path", "size", "mtime_ns", "content_hash", "missing").write_csv())


def ranges_fingerprint(ctx: StageContext, product: str) -> str:
    """Digest of every range's commit marker of ``product`` (``scan`` or ``features``)."""
    markers = []
    for offset_range in offset_ranges(ctx.manifest.height, ctx.config.range_size):
        marker = ctx.work.range_dir(offset_range) / f"{product}.json"
        markers.append(marker.read_text() if marker.exists() else None)
    return _digest(markers)


def compute_tables(ctx: StageContext) -> Metrics:
    tables = combine_scans(ctx.work, ctx.manifest.height, ctx.config.range_size)
    if tables.stats.is_empty() and ctx.manifest.height:
        ctx.log(f"every one of the {ctx.manifest.height} files is bad: see {ctx.work.bad_files_csv}")
    return {}


def describe_tables(ctx: StageContext) -> list[StageResult]:
    work, files = ctx.work, ctx.manifest.height
    bad, stats = pl.read_parquet(work.bad_files_parquet), pl.read_parquet(work.image_stats_parquet)
    return [
        StageResult("dataset_bad_files", {"bad_files": bad.height, "files": files,
                                          "bad_fraction": bad.height / max(files, 1),
                                          "reasons": bad_reason_counts(bad)},
                    {"path": work.bad_files_parquet, "csv": work.bad_files_csv}, bad),
        StageResult("dataset_image_stats", {"images": stats.height},
                    {"path": work.image_stats_parquet, "csv": work.image_stats_csv}, stats.sort("mean")),
    ]


def compute_image_issues(ctx: StageContext) -> Metrics:
    stats = pl.read_parquet(ctx.work.image_stats_parquet)
    write_image_issues(ctx.work, stats, issue_thresholds(ctx.config.image_issue_thresholds))
    return {}


def describe_image_issues(ctx: StageContext) -> list[StageResult]:
    path = ctx.work.root / IMAGE_ISSUES_FILE
    issues = pl.read_parquet(path)
    found = issues.filter(pl.col("issues").list.len() > 0)
    return [StageResult("image_issues", {"images": issues.height, "images_with_issues": found.height,
                                         **issue_counts(issues)}, {"path": path}, found)]


def compute_feature_matrix(ctx: StageContext) -> Metrics:
    model = ctx.config.model
    spec = model.spec()
    assemble_features(ctx.work, ctx.manifest, ctx.config.range_size, spec.model_id, spec.dim, model.class_names,
                      spec.label)
    ctx.forget()
    return {}


def describe_feature_matrix(ctx: StageContext) -> list[StageResult]:
    f = ctx.features
    return [StageResult("feature_matrix", {"rows": f.matrix.shape[0], "dim": f.dim, "model": f.model_id,
                                          "model_choice": f.model},
                        {"path": ctx.work.features_dat, "csv": ctx.work.features_csv}, f.index.drop("row"))]


def compute_index(ctx: StageContext) -> Metrics:
    work = ctx.work
    if not ctx.has_vectors:
        return _no_vectors(ctx, work.faiss_index, work.index_meta, work.knn, work.knn_meta)
    with ctx.progress("faiss index", ctx.features.matrix.shape[0]) as advance:
        _, added = update_index(work, ctx.features, ctx.config.graph, ctx.config.threads)
        advance(ctx.features.matrix.shape[0])
    ctx._knn = None
    return {"added_this_run": added}


def describe_index(ctx: StageContext) -> list[StageResult]:
    g = ctx.config.graph
    vectors = ctx.features.matrix.shape[0] if ctx.work.features_meta.exists() else 0
    mode = g.resolved(*ctx.features.matrix.shape).faiss_mode if vectors else g.faiss_mode  # auto: as built
    return [StageResult("faiss_index", {"vectors": vectors, "faiss_mode": mode, "distance": g.distance},
                        {"path": ctx.work.faiss_index}, skipped=None if vectors else "no vectors: no good images")]


def _images_in_pairs(pairs: pl.DataFrame) -> int:
    return pl.concat([pairs["from"], pairs["to"]]).n_unique() if pairs.height else 0


def _vectors(ctx: StageContext) -> int:
    return ctx.features.matrix.shape[0] if ctx.work.features_meta.exists() else 0


def compute_similarity(ctx: StageContext) -> Metrics:
    with ctx.progress("nearest neighbours", _vectors(ctx)) as advance:
        knn = ctx.knn
        advance(len(knn.rows))
    write_similarity(ctx.work, ctx.manifest, knn, ctx.config.graph)
    return {}


def describe_similarity(ctx: StageContext) -> list[StageResult]:
    pairs = pl.read_parquet(ctx.work.similarity_parquet)
    images = _images_in_pairs(pairs)
    return [StageResult("similarity", {"pairs": pairs.height, "images_in_pairs": images,
                                       "duplicate_fraction": images / max(_vectors(ctx), 1),
                                       "threshold": ctx.config.graph.threshold},
                        {"path": ctx.work.similarity_parquet, "csv": ctx.work.similarity_csv}, pairs)]


def compute_outliers(ctx: StageContext) -> Metrics:
    write_outliers(ctx.work, ctx.manifest, ctx.knn, ctx.config.graph)
    return {}


def describe_outliers(ctx: StageContext) -> list[StageResult]:
    out = pl.read_parquet(ctx.work.outliers_parquet)
    return [StageResult("outliers", {"outliers": out.height, "outlier_fraction": out.height / max(_vectors(ctx), 1),
                                     "lower_threshold": ctx.config.graph.lower_threshold},
                        {"path": ctx.work.outliers_parquet, "csv": ctx.work.outliers_csv}, out)]


def compute_components(ctx: StageContext) -> Metrics:
    work = ctx.work
    outputs = (work.components_csv, work.components_info_csv, work.components_parquet)
    if not ctx.has_vectors:
        return _no_vectors(ctx, *outputs)
    if not ctx.config.graph.run_cc:
        _remove(*outputs)
        return {}
    write_components(work, ctx.manifest, ctx.features, ctx.knn, ctx.config.graph)
    return {}


def describe_components(ctx: StageContext) -> list[StageResult]:
    work = ctx.work
    if not work.components_info_csv.exists():
        reason = "run_cc is off" if ctx.config.graph.run_cc is False else "no vectors: no good images"
        return [StageResult("components", {"components_with_2_or_more": 0}, {"path": work.components_csv},
                            skipped=reason)]
    info = pl.read_csv(work.components_info_csv)
    groups = info.filter(pl.col("count") > 1)
    return [StageResult("components", {
        "components_with_2_or_more": groups.height, "images_in_groups": int(groups["count"].sum() or 0),
        "largest": int(info["count"].max() or 0)},
        {"path": work.components_csv, "info_csv": work.components_info_csv},
        groups.sort("count", descending=True))]


def compute_ranks(ctx: StageContext) -> Metrics:
    g = ctx.config.graph
    if not ctx.has_vectors:
        return _no_vectors(ctx, ctx.work.ranks_parquet)
    if not (g.run_pagerank or g.run_degree):
        _remove(ctx.work.ranks_parquet)
        return {}
    write_ranks(ctx.work, ctx.manifest, ctx.knn, g)
    return {}


def describe_ranks(ctx: StageContext) -> list[StageResult]:
    path = ctx.work.ranks_parquet
    if not path.exists():
        return [StageResult("pagerank_degree", {"images": 0}, {"path": path},
                            skipped="no vectors, or run_pagerank and run_degree are off")]
    ranks = pl.read_parquet(path)
    order = "pagerank" if "pagerank" in ranks.columns else ranks.columns[1]
    return [StageResult("pagerank_degree", {"images": ranks.height}, {"path": path},
                        ranks.sort(order, descending=True))]


def store_labels(config: PipelineConfig, work: WorkDir, manifest: pl.DataFrame) -> pl.DataFrame:
    """Match ``config.labels`` (or folder names) to the manifest and write ``labels.parquet``."""
    root = config.input if isinstance(config.input, (str, os.PathLike)) else None
    if config.labels is not None:
        labels = load_labels(config.labels, manifest, root)
    else:
        paths = manifest["path"].to_list()
        labels = labels_from_folders(manifest, root if root and Path(root).is_dir() else os.path.commonpath(paths))
    write_parquet(labels, work.labels_parquet)
    return labels


def labels_fingerprint(config: PipelineConfig) -> str:
    """What the label findings depend on besides the neighbours: the labels file's content or folder labels."""
    labels = config.labels
    if isinstance(labels, (str, os.PathLike)):
        return hashlib.blake2b(Path(labels).read_bytes(), digest_size=16).hexdigest() if Path(labels).is_file() \
            else str(labels)
    if labels is not None:  # a table (pandas or polars)
        return _digest(labels.to_csv() if hasattr(labels, "to_csv") else labels.write_csv())
    return f"folders={config.labels_from_folders}"


def compute_label_issues(ctx: StageContext) -> Metrics:
    work = ctx.work
    labels = store_labels(ctx.config, work, ctx.manifest)
    if not ctx.has_vectors:
        return _no_vectors(ctx, work.label_issues_parquet, work.mislabels_csv, work.label_conflicts_csv)
    write_label_issues(work, ctx.manifest, ctx.knn, pl.read_parquet(work.similarity_parquet), labels,
                       ctx.config.label_config)
    return {}


def describe_label_issues(ctx: StageContext) -> list[StageResult]:
    work = ctx.work
    if not work.label_issues_parquet.exists():
        return [StageResult("label_issues", {"likely_wrong": 0}, {"path": work.label_issues_parquet},
                            skipped="no vectors: no label can be judged")]
    issues = pl.read_parquet(work.label_issues_parquet)
    conflicts = pl.read_csv(work.label_conflicts_csv) if work.label_conflicts_csv.exists() else None
    wrong = issues.filter(pl.col("status") == "wrong")
    return [StageResult("label_issues", {
        "labeled": issues.height, "likely_wrong": wrong.height,
        "ambiguous": int((issues["status"] == "ambiguous").sum()), "label_error_rate": label_error_rate(issues),
        "label_conflicts": conflicts.height if conflicts is not None else 0},
        {"path": work.label_issues_parquet, "csv": work.mislabels_csv}, wrong.drop("neighbours"))]


def compute_leakage(ctx: StageContext) -> Metrics:
    work = ctx.work
    if not ctx.has_vectors:
        return _no_vectors(ctx, work.leakage_csv, work.leakage_components_parquet)
    components = pl.read_parquet(work.components_parquet) if work.components_parquet.exists() else None
    write_leakage(work, ctx.manifest, pl.read_parquet(work.similarity_parquet),
                  pl.read_parquet(work.labels_parquet), components)
    return {}


def describe_leakage(ctx: StageContext) -> list[StageResult]:
    work = ctx.work
    if not work.leakage_csv.exists():
        return [StageResult("leakage", {"pairs_across_splits": 0}, {"path": work.leakage_csv},
                            skipped="no vectors: no good images")]
    crossing = pl.read_csv(work.leakage_csv)
    spanning = (pl.read_parquet(work.leakage_components_parquet).height
                if work.leakage_components_parquet.exists() else 0)
    return [StageResult("leakage", {"pairs_across_splits": crossing.height, "components_across_splits": spanning},
                        {"path": work.leakage_csv}, crossing)]


def remove_label_outputs(work: WorkDir) -> None:
    """A run without labels must not leave an earlier run's label findings behind."""
    _remove(work.labels_parquet, work.label_issues_parquet, work.mislabels_csv, work.label_conflicts_csv,
            work.leakage_csv, work.leakage_components_parquet)


def compute_report(ctx: StageContext) -> Metrics:
    remove_temp_files(ctx.work.root / "report")
    build_report(ctx.work, labels=_stored_labels(ctx.work), dataset_name=ctx.name,
                 cutoffs=report_cutoffs(ctx))
    return {}


def report_cutoffs(ctx: StageContext) -> dict[str, float]:
    """The similarity cut-offs the report's histogram marks (the outliers' comes from outliers.parquet)."""
    return {"threshold": ctx.config.graph.threshold, "ccthreshold": ctx.config.graph.ccthreshold}


def _stored_labels(work: WorkDir) -> pl.DataFrame | None:
    return pl.read_parquet(work.labels_parquet) if work.labels_parquet.exists() else None


def report_path(work: WorkDir) -> Path:
    return work.root / "report" / "index.html"


def report_settings(ctx: StageContext) -> object:
    """The report also shows the dataset's name, its labels, the cut-offs and run mode 3's cross pairs."""
    cross = ctx.work.cross_similarity_csv
    return {"name": ctx.name, "labels": labels_fingerprint(ctx.config), "cutoffs": report_cutoffs(ctx),
            "cross": cross.stat().st_mtime_ns if cross.exists() else None}


def describe_report(ctx: StageContext) -> list[StageResult]:
    """The report's headline counts (only what was measured: no label counts without labels)."""
    path = report_path(ctx.work)
    summary = summarize(WorkTables(ctx.work, _stored_labels(ctx.work)))
    counts = {k: v for k, v in asdict(summary).items() if isinstance(v, int) and not isinstance(v, bool)}
    return [StageResult("report", counts, {"path": path},
                        markdown=report_markdown(Report(path, {}, summary)))]


def compute_clean(ctx: StageContext) -> Metrics:
    write_clean_list(ctx.work, ctx.config.exclude_outliers, ctx.config.exclude_wrong_labels,
                     ctx.features if ctx.has_vectors else None)  # the run's open matrix, not a second mapping
    return {}


def describe_clean(ctx: StageContext) -> list[StageResult]:
    root = ctx.work.root
    keep, dropped = pl.read_parquet(root / CLEAN_PARQUET), pl.read_parquet(root / DROPPED_PARQUET)
    reasons = CleanList(keep, dropped).reasons()
    return [StageResult("clean_manifest", {"keep": keep.height, "dropped": dropped.height,
                                           "keep_fraction": keep.height / max(keep.height + dropped.height, 1),
                                           **{f"dropped_{k}": v for k, v in reasons.items()}},
                        {"path": root / CLEAN_PARQUET, "list": root / CLEAN_LIST, "dropped": root / DROPPED_PARQUET},
                        dropped)]


def compute_audit(ctx: StageContext) -> Metrics:
    write_audit_summary(ctx.work)
    return {}


def describe_audit(ctx: StageContext) -> list[StageResult]:
    """The latest audit's counts (now, new, resolved; label categories only when measured)."""
    latest = ctx.work.root / "audits" / "latest.json"
    metrics = json.loads(latest.read_text()).get("metrics", {}) if latest.exists() else {}
    summary = ctx.work.root / "audit_summary.md"
    return [StageResult("audit_summary", metrics, {"path": summary},
                        markdown=summary.read_text() if summary.exists() else None)]


# --------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: what it reads, what it depends on, how it computes and summarizes."""

    name: str
    outputs: tuple[str, ...]  # the asset names it materializes (the first is the stage's name)
    deps: tuple[str, ...]  # stages whose files it reads
    compute: Callable[[StageContext], Metrics]
    describe: Callable[[StageContext], list[StageResult]]
    settings: Callable[[StageContext], object]  # what else its files depend on
    files: Callable[[WorkDir], list[Path]]  # what it may write (those written must exist to be reused)
    description: str
    kinds: frozenset[str] = frozenset()
    needs_labels: bool = False
    needs_vectors: bool = False  # part of the similarity stage (run modes 0, 2, 4)


def _graph(ctx: StageContext, *names: str) -> dict:
    g = asdict(ctx.config.graph)
    return {"graph_version": GRAPH_VERSION, "search": ctx.config.graph.search_params,
            **{n: g[n] for n in ("nearest_neighbors_k", "distance", *names)}}


STAGES: tuple[Stage, ...] = (
    Stage("file_manifest", ("file_manifest",), (), compute_manifest, describe_manifest,
          lambda c: None, lambda w: [w.manifest],
          "Every input file with a stable index, size, modification time and content hash (BLAKE2b-128). "
          "Append-only across reruns; registers the offset-range partitions.", frozenset({"python", "parquet"})),
    Stage("dataset_tables", ("dataset_bad_files", "dataset_image_stats"), ("file_manifest", "ranges:scan"),
          compute_tables, describe_tables, lambda c: {"range_size": c.config.range_size, "scan": SCAN_VERSION},
          lambda w: [w.bad_files_parquet, w.bad_files_csv, w.image_stats_parquet, w.image_stats_csv],
          "All bad files (bad_files.parquet, fastdup's features.bad.csv) and the statistics of every good image "
          "(image_stats.parquet, fastdup's atrain_stats.csv).", frozenset({"python", "parquet", "csv"})),
    Stage("image_issues", ("image_issues",), ("dataset_tables",), compute_image_issues, describe_image_issues,
          lambda c: {"thresholds": issue_thresholds(c.config.image_issue_thresholds)},
          lambda w: [w.root / IMAGE_ISSUES_FILE],
          "cleanvision-style issues of every good image, each with its score and a flag at its threshold "
          f"(image_issue_thresholds): {', '.join(ISSUES)} (image_issues.parquet).", frozenset({"parquet"})),
    Stage("feature_matrix", ("feature_matrix",), ("file_manifest", "ranges:features"), compute_feature_matrix,
          describe_feature_matrix,
          lambda c: {"range_size": c.config.range_size, "features": FEATURES_VERSION, "matrix": MATRIX_VERSION,
                     "model": asdict(c.config.model)},
          lambda w: [w.features_dat, w.features_csv, w.features_parquet, w.features_meta],
          "The dataset's embeddings in manifest order, memory-mapped: fastdup's features.dat (raw float32, rows x "
          "dim) + features.dat.csv (index,filename), features.parquet (with the top ImageNet class).",
          frozenset({"numpy", "csv"})),
    Stage("faiss_index", ("faiss_index",), ("feature_matrix",), compute_index, describe_index,
          lambda c: {"graph_version": GRAPH_VERSION, **c.config.graph.index_tag},
          lambda w: [w.faiss_index, w.index_meta],
          "faiss index over the feature matrix (faiss.index): built with index_factory(faiss_mode), extended in "
          "place when images are appended, rebuilt when features or parameters change.", frozenset({"faiss"}),
          needs_vectors=True),
    Stage("similarity", ("similarity",), ("faiss_index", "file_manifest"), compute_similarity,
          describe_similarity, lambda c: _graph(c, "threshold"),
          lambda w: [w.similarity_csv, w.similarity_parquet],
          "Pairs of similar images (similarity >= threshold), each pair once, most similar first: similarity.csv "
          "(from,to,distance; fastdup's shape) and similarity.parquet (with file names). Byte-identical files are "
          "always included.", frozenset({"parquet", "csv"}), needs_vectors=True),
    Stage("outliers", ("outliers",), ("faiss_index",), compute_outliers, describe_outliers,
          lambda c: _graph(c, "lower_threshold"), lambda w: [w.outliers_csv, w.outliers_parquet],
          "Images whose nearest neighbour is weakest (the lower_threshold fraction), one row per image: "
          "outliers.csv (outlier,nearest,distance) and outliers.parquet.", frozenset({"parquet", "csv"}),
          needs_vectors=True),
    Stage("components", ("components",), ("similarity",), compute_components, describe_components,
          lambda c: _graph(c, "ccthreshold", "run_cc"),
          lambda w: [w.components_csv, w.components_info_csv, w.components_parquet],
          "Connected components of the graph of pairs >= ccthreshold, verified with exact similarities "
          "(min_exact_similarity): connected_components.csv and components_info.csv.",
          frozenset({"scipy", "csv"}), needs_vectors=True),
    Stage("pagerank_degree", ("pagerank_degree",), ("similarity",), compute_ranks, describe_ranks,
          lambda c: _graph(c, "threshold", "run_pagerank", "run_degree"), lambda w: [w.ranks_parquet],
          "PageRank and degree of every image in the similarity graph (pagerank_degree.parquet).",
          frozenset({"scipy", "parquet"}), needs_vectors=True),
    Stage("label_issues", ("label_issues",), ("similarity", "file_manifest"), compute_label_issues,
          describe_label_issues,
          lambda c: {**_graph(c), "labels": labels_fingerprint(c.config), "config": asdict(c.config.label_config)},
          lambda w: [w.labels_parquet, w.label_issues_parquet, w.mislabels_csv, w.label_conflicts_csv],
          "For every labeled image, how likely its label is wrong (similarity-weighted vote of its neighbours' "
          "labels), the suggested label and a status (ok / wrong / ambiguous / unsupported): label_issues.parquet, "
          "mislabels.csv (wrong, highest score first), label_conflicts.csv.", frozenset({"parquet", "csv"}),
          needs_labels=True, needs_vectors=True),
    Stage("leakage", ("leakage",), ("label_issues", "components"), compute_leakage, describe_leakage,
          lambda c: None, lambda w: [w.leakage_csv, w.leakage_components_parquet],
          "Near-duplicate pairs whose images are in different splits (e.g. a test image that copies a training "
          "image) and components spanning splits: leakage.csv, leakage_components.parquet.", frozenset({"csv"}),
          needs_labels=True, needs_vectors=True),
    Stage("report", ("report",), ("dataset_tables", "image_issues", "similarity", "outliers", "components",
                                  "label_issues", "leakage"), compute_report, describe_report, report_settings,
          lambda w: [report_path(w)],
          "HTML report: an overview page with summary counts linking galleries of duplicates, outliers, groups, "
          "similar images, dark/bright/blurry images, likely wrong labels, bad files and leakage "
          "(self-contained pages with inline thumbnails; file names escaped).", frozenset({"html"})),
    Stage("clean_manifest", ("clean_manifest",), ("dataset_tables", "components", "outliers", "label_issues"),
          compute_clean, describe_clean,
          lambda c: {"outliers": c.config.exclude_outliers, "wrong_labels": c.config.exclude_wrong_labels},
          lambda w: [w.root / CLEAN_PARQUET, w.root / CLEAN_LIST, w.root / DROPPED_PARQUET],
          "The files to keep for training: bad files out, one representative per duplicate group (most pixels), "
          "outliers and likely wrong labels out when exclude_outliers / exclude_wrong_labels are set: "
          "clean_manifest.parquet (index, filename), clean_manifest.txt (one path a line) and clean_dropped.parquet "
          "(index, filename, reason).", frozenset({"parquet", "text"})),
    Stage("audit_summary", ("audit_summary",), ("dataset_tables", "similarity", "outliers", "label_issues",
                                                "leakage"), compute_audit, describe_audit, lambda c: None,
          lambda w: [w.root / "audit_summary.md"],
          "What changed since the previous audit: bad files, duplicate pairs, outliers (images that became "
          "outliers), wrong labels and leakage pairs now, new and resolved (audit_summary.md, audits/*.json).",
          frozenset({"markdown"})),
)
BY_NAME = {s.name: s for s in STAGES}


def applicable(config: PipelineConfig, names: Iterable[str] | None = None) -> list[Stage]:
    """The stages of ``names`` (default all) that apply to ``config``, in the registry's order."""
    wanted = set(names) if names is not None else set(BY_NAME)
    wants_labels = config.labels is not None or config.labels_from_folders
    return [s for s in STAGES if s.name in wanted and (wants_labels or not s.needs_labels)
            and (config.report or s.name != "report")]


# --------------------------------------------------------------------------------------------
# running


def _state_path(work: WorkDir, name: str) -> Path:
    return work.root / "stages" / f"{name}.json"


def stored_fingerprint(work: WorkDir, name: str) -> str | None:
    """The fingerprint of ``name``'s files as last written (None when never written)."""
    return _state(work, name).get("fingerprint")


def stored_settings(work: WorkDir, name: str) -> dict:
    """The settings ``name``'s files were last written with (e.g. the report's cut-offs and dataset name)."""
    return _state(work, name).get("settings") or {}


def _dep_fingerprint(ctx: StageContext, dep: str) -> str | None:
    if dep.startswith("ranges:"):
        return ranges_fingerprint(ctx, dep.split(":", 1)[1])
    return stored_fingerprint(ctx.work, dep)


def fingerprint(stage: Stage, ctx: StageContext) -> str:
    """Digest of the stage's settings and of the fingerprints of what it reads."""
    return _digest(STAGES_VERSION, stage.name, stage.settings(ctx),
                   [_dep_fingerprint(ctx, d) for d in stage.deps])


def _state(work: WorkDir, name: str) -> dict:
    path = _state_path(work, name)
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def run_stage(stage: Stage, ctx: StageContext) -> list[StageResult]:
    """Compute ``stage`` unless its fingerprint is unchanged and the files it wrote are still there."""
    work = ctx.work
    before = _state(work, stage.name)
    if stage.name == "file_manifest":
        extra = stage.compute(ctx)
        current = manifest_fingerprint(ctx)
        reused = current == before.get("fingerprint")
    else:
        current = fingerprint(stage, ctx)
        reused = (current == before.get("fingerprint")
                  and all((work.root / p).exists() for p in before.get("files", [])))
        extra = {} if reused else stage.compute(ctx)
    if not reused:
        written = [os.path.relpath(p, work.root) for p in stage.files(work) if p.exists()]  # the work_dir may move
        settings = None if stage.name == "file_manifest" else stage.settings(ctx)
        write_json({"fingerprint": current, "files": written, "settings": settings}, _state_path(work, stage.name))
    results = [replace(r, metrics={**r.metrics, **extra}, reused=reused, fingerprint=current)
               for r in stage.describe(ctx)]
    ctx.results[stage.name] = results
    return results


def run_stages(ctx: StageContext, names: Sequence[str] | None = None) -> dict[str, list[StageResult]]:
    """Run the applicable stages among ``names`` (default all) in the registry's order."""
    for stage in applicable(ctx.config, names):
        run_stage(stage, ctx)
        release_free_memory()  # what the stage freed, before the next one (labels, report) allocates more
        ctx.release_feature_pages()
    return ctx.results


def scan_ranges(ctx: StageContext, ranges: Sequence[OffsetRange], features: bool = True,
                progress: ProgressSink | None = None) -> list[RangeScanOutcome]:
    """Decode what is stale in ``ranges`` (bad files, statistics and, with ``features``, embeddings).
    Ranges that match the manifest and settings are reused without loading the model."""
    config, manifest = ctx.config, ctx.manifest
    tag = config.model.features_tag(config.decode) if features else None
    settings = None
    total = int(sum(range_rows(manifest, r).height for r in ranges))
    outcomes = []
    with (progress or ctx.progress)("decode + stats" + (" + embed" if features else ""), total) as advance:
        for offset_range in ranges:
            if features and _range_done(ctx, offset_range, tag):
                outcomes.append(_current_range(ctx, offset_range, advance))
                continue
            if features and settings is None:
                settings = config.model.feature_settings()
            outcomes.append(scan_range(ctx.work, manifest, offset_range, config.decode, config.threads, advance,
                                       settings, config.sources))
    return outcomes


def _range_done(ctx: StageContext, offset_range: OffsetRange, tag: str) -> bool:
    """The range's state matches the manifest and settings, and its files hold what the state recorded."""
    work = ctx.work
    return (is_range_current(work, ctx.manifest, offset_range, ctx.config.decode, tag)
            and read_range_features(work, offset_range) is not None)


def _current_range(ctx: StageContext, offset_range: OffsetRange, advance) -> RangeScanOutcome:
    """The outcome of a range that needs no work (every row reused)."""
    rows = range_rows(ctx.manifest, offset_range).height
    bad = read_range_scan(ctx.work, offset_range).bad.height
    advance(rows)
    return RangeScanOutcome(offset_range.key, rows, 0, rows, bad, rows - bad)
