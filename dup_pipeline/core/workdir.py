"""Where every output lives inside a work_dir (fastdup's names where fastdup has one)."""

import os
import tempfile
from pathlib import Path

from dup_pipeline.core.errors import WorkDirError
from dup_pipeline.core.ranges import OffsetRange

OUTPUT_FOLDERS = ("ranges", "test", "galleries", "report", "audits")



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

    @property
    def faiss_index(self) -> Path:
        return self.root / "faiss.index"

    @property
    def index_meta(self) -> Path:
        return self.root / "faiss.index.json"

    @property
    def knn(self) -> Path:
        return self.root / "knn.npz"

    @property
    def knn_meta(self) -> Path:
        return self.root / "knn.json"

    @property
    def similarity_csv(self) -> Path:
        return self.root / "similarity.csv"

    @property
    def similarity_parquet(self) -> Path:
        return self.root / "similarity.parquet"

    @property
    def cross_similarity_csv(self) -> Path:
        return self.root / "cross_similarity.csv"

    @property
    def cross_similarity_parquet(self) -> Path:
        return self.root / "cross_similarity.parquet"

    @property
    def outliers_csv(self) -> Path:
        return self.root / "outliers.csv"

    @property
    def outliers_parquet(self) -> Path:
        return self.root / "outliers.parquet"

    @property
    def components_csv(self) -> Path:
        return self.root / "connected_components.csv"

    @property
    def components_info_csv(self) -> Path:
        return self.root / "components_info.csv"

    @property
    def components_parquet(self) -> Path:
        return self.root / "connected_components.parquet"

    @property
    def ranks_parquet(self) -> Path:
        return self.root / "pagerank_degree.parquet"

    @property
    def labels_parquet(self) -> Path:
        return self.root / "labels.parquet"

    @property
    def label_issues_parquet(self) -> Path:
        return self.root / "label_issues.parquet"

    @property
    def mislabels_csv(self) -> Path:
        return self.root / "mislabels.csv"

    @property
    def label_conflicts_csv(self) -> Path:
        return self.root / "label_conflicts.csv"

    @property
    def leakage_csv(self) -> Path:
        return self.root / "leakage.csv"

    @property
    def leakage_components_parquet(self) -> Path:
        return self.root / "leakage_components.parquet"

    @property
    def graph_meta(self) -> Path:
        return self.root / "graph.json"

    def outputs(self) -> list[Path]:
        """Every file and folder this tool writes here (what ``overwrite`` deletes, nothing else)."""
        files = [getattr(self, name) for name, value in vars(WorkDir).items() if isinstance(value, property)]
        folders = [self.root / name for name in OUTPUT_FOLDERS]
        return files + folders + [self.root / "audit_summary.md"]

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
