"""A dataset's configuration as a Dagster resource (set once; environment variables welcome)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from dup_pipeline.core.config import SETTINGS_FIELDS, Settings
from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.pipeline import PipelineConfig
from dup_pipeline.core.workdir import WorkDir


def _settings_namespace() -> dict:
    """Every :class:`Settings` field as a resource field with the same type, default and help."""
    namespace: dict = {"__annotations__": {}, "__module__": __name__}
    for f in SETTINGS_FIELDS:
        namespace["__annotations__"][f.name] = f.type
        namespace[f.name] = Field(default=f.default, description=f.metadata["help"])
    return namespace


_SettingsFields = type("_SettingsFields", (dg.ConfigurableResource,), _settings_namespace())


class DatasetResource(_SettingsFields):
    """One audited image dataset: where it is, where outputs go, the run parameters (every field of
    ``core.config.Settings``, same defaults), check limits and the audit schedule."""

    input_dir: str = Field(description="Folder of images, shards and videos, a .txt/.csv file listing image "
                           "paths or URLs, or a bucket prefix or URL (s3://bucket/prefix).")
    work_dir: str = Field(description="Folder for every output (Parquet, fastdup-named CSVs, report).")
    compare_to: str | None = Field(
        default=None, description="Name of another dataset whose index this one is searched against "
        "(run mode 3: e.g. a test set against its training set).")
    max_bad_fraction: float = Field(default=0.05, description="Check: bad files / files.")
    max_duplicate_fraction: float = Field(default=0.2, description="Check: images in similar pairs / images.")
    max_isolated_fraction: float = Field(default=0.1, description="Check: images whose nearest neighbour is "
                                         "below isolation_similarity / images.")
    isolation_similarity: float = Field(default=0.3, description="An image whose nearest neighbour is less "
                                        "similar is isolated (0.3: about the 5% most isolated real photographs, "
                                        "docs/calibration.md).")
    max_label_error_rate: float = Field(default=0.05, description="Check: likely wrong labels / judged images.")
    max_leakage_pairs: int = Field(default=0, description="Check: near-duplicate pairs across splits.")
    failing_checks: list[str] = Field(
        default=["bad_fraction", "duplicate_fraction", "isolated_fraction"],
        description="Checks that fail (severity ERROR) when their limit is exceeded; the others warn.")
    blocking_checks: bool = Field(default=False, description="Failing checks also fail the run (blocking).")
    expected_failures: list[str] = Field(
        default=[], description="Checks that fail on purpose (the demo plants duplicates, wrong labels and "
        "leakage): their results say so.")
    audit_cron: str = Field(default="0 3 * * *", description="When the scheduled audit runs (cron).")
    generate_demo_if_missing: bool = False

    def settings(self) -> Settings:
        """The run parameters as the core's one configuration object."""
        return Settings(**{f.name: getattr(self, f.name) for f in SETTINGS_FIELDS})

    def pipeline_config(self) -> PipelineConfig:
        """The core's configuration (validated: bad values raise naming the parameter)."""
        return self.settings().pipeline_config(self.input_dir, self.work_dir)

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
