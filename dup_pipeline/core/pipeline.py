"""The pipeline as plain function calls over a work_dir: what the CLI and the Python API run.

The Dagster assets call the same steps (manifest, range scans, dataset tables, feature matrix).
"""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from dup_pipeline.core.atomic import remove_temp_files, write_parquet
from dup_pipeline.core.embed.crop import CropBox
from dup_pipeline.core.embed.effnet_lite0 import imagenet_class_names
from dup_pipeline.core.embed.model import (
    DEFAULT_MODEL,
    INT8_MODEL,
    Embedder,
    ModelSpec,
    default_model_spec,
    inspect_model,
    parse_input_size,
)
from dup_pipeline.core.embed.quantized import int8_model_spec
from dup_pipeline.core.errors import ConfigError, WorkDirError
from dup_pipeline.core.features import FeatureMatrix, assemble_features, load_features
from dup_pipeline.core.index import check_index_settings
from dup_pipeline.core.inputs import InputError, InputSpec, discover_files
from dup_pipeline.core.label_issues import (
    LabelConfig,
    write_label_issues,
    write_leakage,
)
from dup_pipeline.core.labels import labels_from_folders, load_labels
from dup_pipeline.core.manifest import build_manifest, exact_duplicate_groups
from dup_pipeline.core.progress import ProgressSink, silent_progress
from dup_pipeline.core.range_scan import (
    FeatureSettings,
    RangeScanOutcome,
    features_tag,
    scan_range,
)
from dup_pipeline.core.ranges import (
    DEFAULT_RANGE_SIZE,
    check_range_size,
    ranges_between,
)
from dup_pipeline.core.report.report import build_report
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.similarity import (
    GraphConfig,
    GraphResult,
    cross_similarity,
    find_neighbours,
    run_similarity,
)
from dup_pipeline.core.tables import bad_reason_counts, combine_scans
from dup_pipeline.core.threads import resolve_threads
from dup_pipeline.core.workdir import WorkDir

BUILT_IN_MODELS = {
    None: default_model_spec,
    "": default_model_spec,
    DEFAULT_MODEL: default_model_spec,
    INT8_MODEL: int8_model_spec,
}


@dataclass(frozen=True)
class ModelConfig:
    """Which model embeds the images: ``efficientnet_lite0`` (default), ``efficientnet_lite0_int8``
    (about 2x faster, opt-in) or any ONNX image model file."""

    model_path: str | None = DEFAULT_MODEL
    output_name: str | None = None
    normalization: str | None = None
    input_size: tuple[int, int] | None = None
    bounding_box: str | None = None
    batch_size: int = 32
    compute: str = "cpu"

    def __post_init__(self) -> None:
        if self.compute not in ("cpu", "gpu"):
            raise ConfigError(f"compute must be 'cpu' or 'gpu', got {self.compute!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.bounding_box:
            CropBox.parse(self.bounding_box)
        if self.input_size is not None:
            object.__setattr__(self, "input_size", parse_input_size(self.input_size))

    def spec(self) -> ModelSpec:
        """The model to run: a built-in name (converted and cached on first use) or an ONNX file."""
        if self.model_path in BUILT_IN_MODELS:
            if self.output_name or self.normalization or self.input_size:
                raise ConfigError(f"model_output, normalization and input_size apply to an ONNX model file, not to the "
                                 f"built-in model {self.model_path!r}")
            return BUILT_IN_MODELS[self.model_path]()
        return inspect_model(self.model_path, self.output_name, self.normalization or "imagenet", self.input_size)

    def features_tag(self, decode: DecodeSettings) -> str:
        """What a range's embeddings depend on (to tell stale ranges without loading the model)."""
        return features_tag(self.spec(), CropBox.parse(self.bounding_box) if self.bounding_box else None, decode)

    def feature_settings(self, num_threads: int | None = None) -> FeatureSettings:
        """Load the model; the crop and batch size come along."""
        crop = CropBox.parse(self.bounding_box) if self.bounding_box else None
        return FeatureSettings(Embedder(self.spec(), num_threads, gpu=self.compute == "gpu"), crop, self.batch_size)

    @property
    def class_names(self) -> list[str] | None:
        return imagenet_class_names() if self.model_path in BUILT_IN_MODELS else None


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs; invalid values raise ``ConfigError`` naming the parameter."""

    input: InputSpec
    work_dir: str
    range_size: int = DEFAULT_RANGE_SIZE
    num_threads: int = -1
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    labels: Any = None
    labels_from_folders: bool = False
    label_config: LabelConfig = field(default_factory=LabelConfig)
    report: bool = True

    def __post_init__(self) -> None:
        check_range_size(self.range_size)
        if not isinstance(self.num_threads, int) or self.num_threads == 0 or self.num_threads < -1:
            raise ConfigError(f"num_threads must be -1 (all cores) or a positive integer, got {self.num_threads!r}")

    @property
    def threads(self) -> int:
        return resolve_threads(self.num_threads)


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
        lines.append(
            f"ranges: {len(self.ranges)}, images decoded this run: {self.decoded}, "
            f"reused from earlier runs: {sum(r.reused for r in self.ranges)}"
        )
        if self.features is not None:
            lines.append(f"feature matrix: {self.features.matrix.shape[0]} x {self.features.dim} "
                         f"({self.embedded} embedded this run)")
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


def update_manifest(work: WorkDir, source: InputSpec, progress: ProgressSink = silent_progress) -> pl.DataFrame:
    """Scan ``source`` and write ``manifest.parquet`` (append-only, hashes reused when unchanged)."""
    paths = discover_files(source)
    remove_temp_files(work.root)  # left by a killed run; one run per work_dir at a time
    previous = pl.read_parquet(work.manifest) if work.manifest.exists() else None
    if not paths and (previous is None or previous.is_empty()):
        raise InputError(f"input {_describe(source)} contains no image files")
    known = set(previous["path"].to_list()) if previous is not None else set()
    with progress("manifest", len(paths) + len(known - set(paths))) as advance:
        manifest = build_manifest(paths, previous, advance)
    write_parquet(manifest, work.manifest)
    return manifest


def _describe(source: InputSpec) -> str:
    return f"list of {len(source)} paths" if isinstance(source, (list, tuple)) else repr(str(source))


def run_pipeline(
    config: PipelineConfig,
    progress: ProgressSink = silent_progress,
    min_offset: int = 0,
    max_offset: int | None = None,
    features: bool = True,
    run_mode: int = 0,
    test_input: InputSpec | None = None,
) -> RunSummary:
    """Run fastdup's ``run_mode`` (0 = everything) over ``config.work_dir``.

    ``features=False`` stops after bad files and statistics (no model). Run mode 3 computes the
    features of ``test_input`` under ``work_dir/test`` and searches them in the existing index.
    """
    check_run_mode(run_mode)
    work = WorkDir(config.work_dir).ensure_writable()
    if run_mode in (2, 4):
        return _similarity_only(config, work, progress, reuse_index=run_mode == 4)
    if run_mode == 3:
        if test_input is None:
            raise ConfigError("run_mode 3 needs test_input: the new images to compare with the existing index")
        if not work.faiss_index.exists():
            raise WorkDirError(f"run_mode 3 needs an existing index: {work.faiss_index} not found (run mode 0 first)")
        test_config = replace(config, input=test_input, work_dir=str(work.root / "test"), labels=None,
                              labels_from_folders=False)
        summary = run_pipeline(test_config, progress, min_offset, max_offset, run_mode=1)
        train = load_features(work)
        cross = cross_similarity(work, pl.read_parquet(work.manifest), train, WorkDir(test_config.work_dir),
                                 summary.features, config.graph, config.threads)
        report = write_report(work) if config.report else None  # the leakage section shows the cross pairs
        return replace(summary, work_dir=str(work.root), cross=cross, report=report)
    feature_settings = config.model.feature_settings() if features else None
    if feature_settings is not None and run_mode == 0:
        g = config.graph
        check_index_settings(feature_settings.embedder.spec.dim, g.faiss_mode, g.distance, g.search_params)
    manifest = update_manifest(work, config.input, progress)
    if config.labels is not None or config.labels_from_folders:
        store_labels(config, work, manifest)  # bad labels fail now, not after hours of work
    ranges = ranges_between(manifest.height, config.range_size, min_offset, max_offset)
    total = int(sum(min(r.end, manifest.height - 1) - r.start + 1 for r in ranges))
    outcomes = []
    with progress("decode + stats" + (" + embed" if features else ""), total) as advance:
        for offset_range in ranges:
            outcomes.append(scan_range(work, manifest, offset_range, config.decode, config.threads, advance,
                                       feature_settings))
    spec = feature_settings.embedder.spec if feature_settings is not None else None
    return finish_run(config, work, manifest, outcomes, spec, run_mode, progress)


def finish_run(
    config: PipelineConfig,
    work: WorkDir,
    manifest: pl.DataFrame,
    outcomes: list[RangeScanOutcome],
    spec: ModelSpec | None,
    run_mode: int = 0,
    progress: ProgressSink = silent_progress,
) -> RunSummary:
    """Everything after the range scans: dataset tables, feature matrix (when the range scans
    embedded with ``spec``), similarity, labels. Needs the model's identity, not the model."""
    tables = combine_scans(work, manifest.height, config.range_size)
    matrix = graph = None
    if spec is not None:
        matrix = assemble_features(work, manifest, config.range_size, spec.model_id, spec.dim,
                                   config.model.class_names)
        if run_mode == 0 and matrix.matrix.shape[0]:
            graph = run_similarity(work, manifest, matrix, config.graph, config.threads, progress)
    return _conclude(config, work, manifest, tables.bad, tables.stats.height, outcomes, matrix, graph)


def _conclude(config: PipelineConfig, work: WorkDir, manifest: pl.DataFrame, bad: pl.DataFrame, good: int,
              outcomes: list[RangeScanOutcome], matrix: FeatureMatrix | None, graph: GraphResult | None,
              ) -> RunSummary:
    """Labels (or removal of an earlier run's label findings), the report, and the run's summary."""
    label_outcome = None
    wants_labels = config.labels is not None or config.labels_from_folders
    if graph is not None and wants_labels:
        label_outcome = analyse_labels(config, work, manifest, matrix)
    elif not wants_labels:
        remove_label_outputs(work)
    report = write_report(work) if config.report else None
    groups = exact_duplicate_groups(manifest)
    return RunSummary(
        work_dir=str(work.root),
        files=manifest.height,
        good=good,
        bad=bad.height,
        bad_reasons=bad_reason_counts(bad),
        exact_duplicate_groups=groups.height,
        exact_duplicate_files=int(groups["count"].sum()) if groups.height else 0,
        ranges=outcomes,
        features=matrix,
        graph=graph,
        labels=label_outcome,
        report=report,
    )


def write_report(work: WorkDir) -> Path:
    """The HTML report (``report/index.html`` and every gallery), with the stored labels if any."""
    labels = pl.read_parquet(work.labels_parquet) if work.labels_parquet.exists() else None
    remove_temp_files(work.root / "report")
    return build_report(work, labels=labels).index_path


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


def remove_label_outputs(work: WorkDir) -> None:
    """A run without labels must not leave an earlier run's label findings behind."""
    for path in (work.labels_parquet, work.label_issues_parquet, work.mislabels_csv, work.label_conflicts_csv,
                 work.leakage_csv, work.leakage_components_parquet):
        path.unlink(missing_ok=True)


def analyse_labels(config: PipelineConfig, work: WorkDir, manifest: pl.DataFrame, matrix: FeatureMatrix,
                   ) -> LabelOutcome:
    """Wrong labels, label conflicts among duplicates and split leakage (labels from ``config``)."""
    labels = store_labels(config, work, manifest)
    knn = find_neighbours(work, manifest, matrix, config.graph, config.threads)
    pairs = pl.read_parquet(work.similarity_parquet)
    components = pl.read_parquet(work.components_parquet) if work.components_parquet.exists() else None
    issues, conflicts = write_label_issues(work, manifest, knn, pairs, labels, config.label_config)
    crossing, spanning = write_leakage(work, manifest, pairs, labels, components)
    return LabelOutcome(labels.filter(pl.col("label").is_not_null()).height, issues, conflicts, crossing, spanning)


def _similarity_only(config: PipelineConfig, work: WorkDir, progress: ProgressSink, reuse_index: bool) -> RunSummary:
    """Run modes 2 and 4: the similarity stage from the features already in work_dir."""
    if not work.features_meta.exists():
        raise WorkDirError(f"run modes 2 and 4 need existing features: {work.features_meta} not found (run mode 1 first)")
    if reuse_index and not work.faiss_index.exists():
        raise WorkDirError(f"run_mode 4 needs an existing index: {work.faiss_index} not found (use run_mode 2)")
    manifest = pl.read_parquet(work.manifest)
    matrix = load_features(work)
    graph = run_similarity(work, manifest, matrix, config.graph, config.threads, progress, reuse_index=reuse_index)
    return _conclude(config, work, manifest, pl.read_parquet(work.bad_files_parquet), matrix.matrix.shape[0], [],
                     matrix, graph)
