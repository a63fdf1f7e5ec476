"""Where every output lives inside a work_dir (fastdup's names where fastdup has one)."""

import os
import tempfile
from pathlib import Path

from dup_pipeline.core.ranges import OffsetRange


class WorkDirError(ValueError):
    """The work_dir cannot be created or written."""


class WorkDir:
    """Paths of the pipeline's outputs under one work_dir."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def bad_files_parquet(self) -> Path:
        return self.root / "bad_files.parquet"

    @property
    def bad_files_csv(self) -> Path:
        return self.root / "features.bad.csv"

    @property
    def image_stats_parquet(self) -> Path:
        return self.root / "image_stats.parquet"

    @property
    def image_stats_csv(self) -> Path:
        return self.root / "atrain_stats.csv"

    @property
    def features_dat(self) -> Path:
        return self.root / "features.dat"

    @property
    def features_csv(self) -> Path:
        return self.root / "features.dat.csv"

    @property
    def features_parquet(self) -> Path:
        return self.root / "features.parquet"

    @property
    def features_meta(self) -> Path:
        return self.root / "features.json"

    def range_dir(self, offset_range: OffsetRange) -> Path:
        return self.root / "ranges" / offset_range.key

    def ensure_writable(self) -> "WorkDir":
        """Create the folder and prove it is writable, or raise :class:`WorkDirError`."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise WorkDirError(f"work_dir {str(self.root)!r} is not writable: {exc.strerror or exc}") from None
        return self
