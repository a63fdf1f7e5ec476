"""A dataset's configuration as a Dagster resource (set once; environment variables welcome)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from dup_pipeline.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig
from dup_pipeline.core.ranges import DEFAULT_RANGE_SIZE
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.workdir import WorkDir


class DatasetResource(dg.ConfigurableResource):
    """One audited image dataset: where it is, where outputs go, and the run parameters."""

    input_dir: str = Field(description="Folder of images, or a .txt/.csv file listing image paths.")
    work_dir: str = Field(description="Folder for every output (Parquet, fastdup-named CSVs, report).")
    range_size: int = DEFAULT_RANGE_SIZE
    num_threads: int = -1
    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    model_path: str | None = Field(default=None, description="ONNX model; default: EfficientNet-Lite0.")
    model_output: str | None = Field(default=None, description="Output of model_path that is the embedding.")
    normalization: str | None = Field(default=None, description="Input normalization of an ONNX model_path "
                                      "(default imagenet).")
    bounding_box: str | None = Field(default=None, description="Crop before embedding: row_y=,col_x=,height=,width=")
    batch_size: int = 32
    faiss_mode: str = Field(default="HNSW32", description="faiss.index_factory string (Flat = exact).")
    faiss_param: str = Field(default="", description="faiss parameters, e.g. efSearch=128 or nprobe=16.")
    distance: str = Field(default="cosine", description="cosine, euclidean, squared_euclidean or manhattan.")
    nearest_neighbors_k: int = 10
    threshold: float = Field(default=0.9, description="Pairs at or above this similarity are listed.")
    ccthreshold: float = Field(default=0.9, description="Edges at or above this similarity join components.")
    lower_threshold: float = Field(default=0.05, description="Fraction of images reported as outliers.")
    run_cc: bool = True
    run_pagerank: bool = True
    run_degree: bool = True
    compare_to: str | None = Field(
        default=None, description="Name of another dataset whose index this one is searched against "
        "(run mode 3: e.g. a test set against its training set).")
    labels: str | None = Field(default=None, description="CSV filename,label[,split] for wrong labels and leakage.")
    labels_from_folders: bool = Field(default=False, description="Labels from folder names (train/cat/x.jpg).")
    max_bad_fraction: float = Field(default=0.05, description="Check: bad files / files.")
    max_duplicate_fraction: float = Field(default=0.2, description="Check: images in similar pairs / images.")
    max_isolated_fraction: float = Field(default=0.1, description="Check: images whose nearest neighbour is "
                                         "below isolation_similarity / images.")
    isolation_similarity: float = 0.5
    max_label_error_rate: float = Field(default=0.05, description="Check: likely wrong labels / judged images.")
    max_leakage_pairs: int = Field(default=0, description="Check: near-duplicate pairs across splits.")
    failing_checks: list[str] = Field(
        default=["bad_fraction", "duplicate_fraction", "isolated_fraction"],
        description="Checks that fail (severity ERROR) when their limit is exceeded; the others warn.")
    blocking_checks: bool = Field(default=False, description="Failing checks also fail the run (blocking).")
    audit_cron: str = Field(default="0 3 * * *", description="When the scheduled audit runs (cron).")
    generate_demo_if_missing: bool = False

    def pipeline_config(self) -> PipelineConfig:
        """The core's configuration (validated: bad values raise naming the parameter)."""
        return PipelineConfig(
            input=self.input_dir,
            work_dir=self.work_dir,
            range_size=self.range_size,
            num_threads=self.num_threads,
            decode=DecodeSettings(max_pixels=self.max_pixels, min_side=self.min_side),
            model=ModelConfig(model_path=self.model_path, output_name=self.model_output,
                              normalization=self.normalization, bounding_box=self.bounding_box,
                              batch_size=self.batch_size),
            graph=GraphConfig(faiss_mode=self.faiss_mode, faiss_param=self.faiss_param, distance=self.distance,
                              nearest_neighbors_k=self.nearest_neighbors_k, threshold=self.threshold,
                              ccthreshold=self.ccthreshold, lower_threshold=self.lower_threshold,
                              run_cc=self.run_cc, run_pagerank=self.run_pagerank, run_degree=self.run_degree),
            labels=self.labels, labels_from_folders=self.labels_from_folders,
        )

    @property
    def has_labels(self) -> bool:
        return bool(self.labels) or self.labels_from_folders

    def workdir(self) -> WorkDir:
        return WorkDir(self.work_dir)

    def ensure_input(self) -> None:
        """Generate the demo dataset when asked to and the input folder does not exist yet."""
        images = Path(self.input_dir)
        if self.generate_demo_if_missing and not images.exists():
            generate_demo(images.parent)
