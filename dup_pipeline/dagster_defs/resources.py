"""A dataset's configuration as a Dagster resource (set once; environment variables welcome)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from dup_pipeline.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig
from dup_pipeline.core.ranges import DEFAULT_RANGE_SIZE
from dup_pipeline.core.scan import DecodeSettings
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
    normalization: str = Field(default="imagenet", description="Input normalization of model_path.")
    bounding_box: str | None = Field(default=None, description="Crop before embedding: row_y=,col_x=,height=,width=")
    batch_size: int = 32
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
        )

    def workdir(self) -> WorkDir:
        return WorkDir(self.work_dir)

    def ensure_input(self) -> None:
        """Generate the demo dataset when asked to and the input folder does not exist yet."""
        images = Path(self.input_dir)
        if self.generate_demo_if_missing and not images.exists():
            generate_demo(images.parent)
