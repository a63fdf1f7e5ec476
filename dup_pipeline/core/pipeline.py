"""The pipeline as plain function calls over a work_dir: what the CLI and the Python API run.

``run_pipeline`` picks the stages of fastdup's run mode from the registry (``core/stages.py``),
which the Dagster assets and the audit run as well.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from dup_pipeline.core.config import ModelConfig, PipelineConfig, Settings  # noqa: F401 (the public API)
from dup_pipeline.core.errors import ConfigError, WorkDirError
from dup_pipeline.core.features import FeatureMatrix, load_features
from dup_pipeline.core.image_issues import ISSUES
from dup_pipeline.core.index import check_index_settings
from dup_pipeline.core.inputs import InputSpec
from dup_pipeline.core.manifest import exact_duplicate_groups
from dup_pipeline.core.memory import SCAN_MMAP_THRESHOLD, fix_mmap_threshold, release_free_memory
from dup_pipeline.core.progress import ProgressSink, silent_progress
from dup_pipeline.core.range_scan import RangeScanOutcome
from dup_pipeline.core.ranges import check_offsets, ranges_between
from dup_pipeline.core.similarity import GraphResult, cross_similarity
from dup_pipeline.core.stages import (  # noqa: F401 (update_manifest and store_labels: the public API)
    STAGES,
    StageContext,
    remove_label_outputs,
    run_stages,
    scan_ranges,
    store_labels,
    update_manifest,
)
from dup_pipeline.core.tables import bad_reason_counts
from dup_pipeline.core.workdir import WorkDir, holding_lock

@dataclass(frozen=True)
class LabelOutcome:
    """What the labels revealed."""

    labeled: int
    issues: pl.DataFrame
    conflicts: pl.DataFrame
    leakage: pl.DataFrame
    leaking_components: pl.DataFrame

    def line(self) -> str:
        counts = dict(zip(*self.issues.group_by("status").len().to_dict(as_series=False).values()))
        return (f"labeled images: {self.labeled}, likely wrong labels: {counts.get('wrong', 0)} (mislabels.csv), "
                f"ambiguous: {counts.get('ambiguous', 0)}, duplicate pairs with different labels: "
                f"{self.conflicts.height}, pairs across splits: {self.leakage.height} (leakage.csv)")


@dataclass(frozen=True)
class RunSummary:
    """What a run found and where it wrote it."""

    work_dir: str
    files: int
    good: int
    bad: int
    bad_reasons: dict[str, int]
    exact_duplicate_groups: int
    exact_duplicate_files: int
    ranges: list[RangeScanOutcome]
    features: FeatureMatrix | None = None
    graph: GraphResult | None = None
    cross: pl.DataFrame | None = None
    labels: LabelOutcome | None = None
    report: Path | None = None
    image_issues: dict[str, int] | None = None  # images per issue (image_issues.parquet)

    @property
    def decoded(self) -> int:
        return sum(r.decoded for r in self.ranges)

    @property
    def embedded(self) -> int:
        return sum(r.embedded for r in self.ranges)

    def lines(self) -> list[str]:
        """A human summary, one line per fact."""
        lines = [f"files: {self.files}, good images: {self.good}, bad files: {self.bad}"]
        if self.bad_reasons:
            lines.append("bad files by reason: " + ", ".join(f"{k}={v}" for k, v in self.bad_reasons.items()))
        lines.append(
            f"byte-identical groups: {self.exact_duplicate_groups} ({self.exact_duplicate_files} files)"
        )
        if self.ranges:  # run modes 2 and 4 scan no range
            lines.append(
                f"ranges: {len(self.ranges)}, images decoded this run: {self.decoded}, "
                f"reused from earlier runs: {sum(r.reused for r in self.ranges)}"
            )
        if self.image_issues is not None:
            lines.append("image issues: " + ", ".join(f"{k}={v}" for k, v in self.image_issues.items())
                         + " (image_issues.parquet)")
        if self.features is not None:
            lines.append(f"feature matrix: {self.features.matrix.shape[0]} x {self.features.dim} "
                         f"({self.embedded} embedded this run"
                         + (f", {copied} of them copied from byte-identical files"
                            if (copied := sum(r.copied for r in self.ranges)) else "") + ")"
                         + (f", model: {self.features.model}" if self.features.model else ""))
        if self.graph is not None:
            lines.append(self.graph_line())
        if self.labels is not None:
            lines.append(self.labels.line())
        if self.cross is not None:
            lines.append(f"pairs between the new images and the existing index: {self.cross.height} "
                         f"(cross_similarity.csv)")
        if self.report is not None:
            lines.append(f"report: {self.report}")
        if self.files and not self.good:
            lines.append(f"every one of the {self.files} files is bad: see features.bad.csv for the reasons")
        return lines

    def graph_line(self) -> str:
        g = self.graph
        components = g.components_info.filter(pl.col("count") > 1).height if g.components_info is not None else 0
        in_pairs = len(set(g.similarity["from"].to_list()) | set(g.similarity["to"].to_list()))
        return (f"similar pairs: {g.similarity.height} ({in_pairs} images), outliers: {g.outliers.height}, "
                f"components with 2+ images: {components}" + ("" if g.recomputed else " (unchanged, reused)"))


RUN_MODES = {
    0: "everything: manifest, bad files, statistics, features, index, similarity, outliers, components",
    1: "features only (use min_offset/max_offset to process a part of the manifest)",
    2: "similarity from existing features (no decoding); the index is updated or rebuilt",
    3: "features of new images (test_input) searched against the existing index: cross-set pairs",
    4: "similarity from existing features and the existing index as it is",
}


def check_run_mode(run_mode: int) -> int:
    """Validate fastdup's run_mode."""
    if run_mode not in RUN_MODES:
        raise ConfigError("run_mode must be one of " + "; ".join(f"{k}: {v}" for k, v in RUN_MODES.items())
                         + f" — got {run_mode!r}")
    return run_mode



GRAPH_STAGES = tuple(s.name for s in STAGES if s.needs_vectors)


def stage_names(run_mode: int, features: bool = True) -> list[str]:
    """The stages after the range scans that fastdup's ``run_mode`` runs (``features=False``: statistics only)."""
    if run_mode in (2, 4):
        graph = [n for n in GRAPH_STAGES if run_mode == 2 or n != "faiss_index"]
        return [*graph, "report"]
    if not features:
        return ["dataset_tables", "image_issues", "report"]
    if run_mode == 1:
        return ["dataset_tables", "image_issues", "feature_matrix", "report"]
    return [s.name for s in STAGES if s.name != "file_manifest"]


@holding_lock
def run_pipeline(
    config: PipelineConfig,
    progress: ProgressSink = silent_progress,
    min_offset: int = 0,
    max_offset: int | None = None,
    features: bool = True,
    run_mode: int = 0,
    test_input: InputSpec | None = None,
    name: str | None = None,
) -> RunSummary:
    """Run fastdup's ``run_mode`` (0 = everything) over ``config.work_dir``.

    ``features=False`` stops after bad files and statistics (no model). Run mode 3 computes the
    features of ``test_input`` under ``work_dir/test`` and searches them in the existing index.
    ``name`` names the dataset in the report.
    """
    check_run_mode(run_mode)
    check_offsets(min_offset, max_offset)
    work = WorkDir(config.work_dir).ensure_writable()
    ctx = StageContext(config, progress, name=name)
    wants_labels = config.labels is not None or config.labels_from_folders
    if not wants_labels:
        remove_label_outputs(work)
    if run_mode in (2, 4):
        _check_similarity_inputs(work, reuse_index=run_mode == 4)
        run_stages(ctx, stage_names(run_mode))
        return _summary(ctx, [])
    if run_mode == 3:
        return _cross_run(config, ctx, progress, min_offset, max_offset, test_input)
    if features:  # a model or faiss setting that cannot work fails now, not after hours of decoding
        spec, g = config.model.spec(), config.graph
        if run_mode == 0:
            check_index_settings(spec.dim, g.faiss_mode, g.distance, g.search_params)
    run_stages(ctx, ["file_manifest"])
    if wants_labels:
        store_labels(config, work, ctx.manifest)  # bad labels fail now, not after hours of work
    fix_mmap_threshold(SCAN_MMAP_THRESHOLD)  # decoded images reuse heap pages (no page faults per image)
    outcomes = scan_ranges(ctx, ranges_between(ctx.manifest.height, config.range_size, min_offset, max_offset),
                           features)
    release_free_memory()  # the decode threads' and the model's buffers, freed but still resident
    fix_mmap_threshold()  # the later stages' large arrays are unmapped when freed
    run_stages(ctx, stage_names(run_mode, features))
    return _summary(ctx, outcomes)


def _check_similarity_inputs(work: WorkDir, reuse_index: bool) -> None:
    """Run modes 2 and 4 start from the features (and for 4 the index) already in work_dir."""
    if not work.features_meta.exists():
        raise WorkDirError(f"run modes 2 and 4 need existing features: {work.features_meta} not found "
                           "(run mode 1 first)")
    if reuse_index and not work.faiss_index.exists():
        raise WorkDirError(f"run_mode 4 needs an existing index: {work.faiss_index} not found (use run_mode 2)")


def _cross_run(config: PipelineConfig, ctx: StageContext, progress: ProgressSink, min_offset: int,
               max_offset: int | None, test_input: InputSpec | None) -> RunSummary:
    """Run mode 3: the features of ``test_input`` (in ``work_dir/test``) searched in the existing index."""
    work = ctx.work
    if test_input is None:
        raise ConfigError("run_mode 3 needs test_input: the new images to compare with the existing index")
    if not work.faiss_index.exists():
        raise WorkDirError(f"run_mode 3 needs an existing index: {work.faiss_index} not found (run mode 0 first)")
    test_config = replace(config, input=test_input, work_dir=str(work.root / "test"), labels=None,
                          labels_from_folders=False, report=False)
    summary = run_pipeline(test_config, progress, min_offset, max_offset, run_mode=1)
    cross = cross_similarity(work, pl.read_parquet(work.manifest), load_features(work), WorkDir(test_config.work_dir),
                             summary.features, config.graph, config.threads)
    if config.report:  # the leakage section shows the cross pairs
        run_stages(ctx, ["report"])
    return replace(summary, work_dir=str(work.root), cross=cross, report=_report_path(ctx))


def _report_path(ctx: StageContext) -> Path | None:
    return ctx.results["report"][0].paths["path"] if "report" in ctx.results else None


def _summary(ctx: StageContext, outcomes: list[RangeScanOutcome]) -> RunSummary:
    """The run's summary from the stages' results and the files they wrote."""
    work = ctx.work
    manifest = ctx.manifest
    bad = pl.read_parquet(work.bad_files_parquet)
    matrix: FeatureMatrix | None = ctx.features if "feature_matrix" in ctx.results or "faiss_index" in ctx.results \
        or "similarity" in ctx.results else None
    good = (pl.scan_parquet(work.image_stats_parquet).select(pl.len()).collect().item()
            if "dataset_tables" in ctx.results else (matrix.matrix.shape[0] if matrix is not None else 0))
    graph = labels = None
    if "similarity" in ctx.results and ctx.has_vectors:
        stages = [r for name in GRAPH_STAGES if name in ctx.results for r in ctx.results[name]]
        added = ctx.results["faiss_index"][0].metrics.get("added_this_run", 0) if "faiss_index" in ctx.results else 0
        graph = _graph_result(work, recomputed=not all(r.reused for r in stages), added=added)
        if "label_issues" in ctx.results:
            labels = _label_outcome(work)
    groups = exact_duplicate_groups(manifest)
    return RunSummary(
        work_dir=str(work.root), files=manifest.height, good=good, bad=bad.height,
        bad_reasons=bad_reason_counts(bad), exact_duplicate_groups=groups.height,
        exact_duplicate_files=int(groups["count"].sum()) if groups.height else 0, ranges=outcomes,
        features=matrix, graph=graph, labels=labels, report=_report_path(ctx),
        image_issues={k: v for k, v in ctx.results["image_issues"][0].metrics.items() if k in ISSUES}
        if "image_issues" in ctx.results else None,
    )


def _graph_result(work: WorkDir, recomputed: bool, added: int) -> GraphResult:
    """The similarity stage's tables as written (Parquet: exact float32 similarities)."""
    def optional(path: Path) -> pl.DataFrame | None:
        return pl.read_parquet(path) if path.exists() else None

    info = pl.read_csv(work.components_info_csv) if work.components_info_csv.exists() else None
    components = optional(work.components_parquet)
    return GraphResult(pl.read_parquet(work.similarity_parquet).select("from", "to", "distance"),
                       pl.read_parquet(work.outliers_parquet).select("outlier", "nearest", "distance"),
                       components.drop("filename") if components is not None else None, info,
                       optional(work.ranks_parquet), recomputed, added)


def _label_outcome(work: WorkDir) -> LabelOutcome:
    labels = pl.read_parquet(work.labels_parquet)
    components = work.leakage_components_parquet
    return LabelOutcome(labels.filter(pl.col("label").is_not_null()).height, pl.read_parquet(work.label_issues_parquet),
                        pl.read_csv(work.label_conflicts_csv), pl.read_csv(work.leakage_csv),
                        pl.read_parquet(components) if components.exists() else pl.DataFrame())
