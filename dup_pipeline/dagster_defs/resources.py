"""A dataset's configuration as a Dagster resource (set once; environment variables welcome)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from dup_pipeline.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.pipeline import PipelineConfig
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
    generate_demo_if_missing: bool = False

    def pipeline_config(self) -> PipelineConfig:
        """The core's configuration (validated: bad values raise naming the parameter)."""
        return PipelineConfig(
            input=self.input_dir,
            work_dir=self.work_dir,
            range_size=self.range_size,
            num_threads=self.num_threads,
            decode=DecodeSettings(max_pixels=self.max_pixels, min_side=self.min_side),
        )

    def workdir(self) -> WorkDir:
        return WorkDir(self.work_dir)

    def ensure_input(self) -> None:
        """Generate the demo dataset when asked to and the input folder does not exist yet."""
        images = Path(self.input_dir)
        if self.generate_demo_if_missing and not images.exists():
            generate_demo(images.parent)
