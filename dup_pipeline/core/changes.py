"""What changed in the input since the manifest was written (stat-based, nothing is read)."""

import hashlib
import os
from dataclasses import dataclass

import polars as pl

from dup_pipeline.core.inputs import InputSpec, discover_files
from dup_pipeline.core.workdir import WorkDir


@dataclass(frozen=True)
class InputChanges:
    """Files added, modified (size or mtime) and removed since the last manifest."""

    added: list[str]
    modified: list[str]
    removed: list[str]

    @property
    def any(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    @property
    def digest(self) -> str:
        """Identifies this set of changes (a sensor's run key)."""
        text = "\n".join(["+" + p for p in self.added] + ["~" + p for p in self.modified] + ["-" + p for p in self.removed])
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    def describe(self) -> str:
        return f"{len(self.added)} new, {len(self.modified)} changed, {len(self.removed)} removed files"


def input_changes(work: WorkDir, source: InputSpec) -> InputChanges:
    """Compare the input's current files with ``manifest.parquet`` by path, size and mtime."""
    paths = discover_files(source)
    if not work.manifest.exists():
        return InputChanges(paths, [], [])
    manifest = pl.read_parquet(work.manifest, columns=["path", "size", "mtime_ns", "missing"])
    known = {p: (s, m) for p, s, m, gone in manifest.iter_rows() if not gone}
    current = set(paths)
    added, modified = [], []
    for path in paths:
        if path not in known:
            added.append(path)
            continue
        try:
            st = os.stat(path)
        except OSError:
            modified.append(path)
            continue
        if (st.st_size, st.st_mtime_ns) != known[path]:
            modified.append(path)
    removed = sorted(p for p in known if p not in current)
    return InputChanges(added, modified, removed)
