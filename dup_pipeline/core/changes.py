"""What changed in the input since the manifest was written, from sizes and change stamps.

No image is read; a shard or video is opened only when its own stamp changed (to list it).
"""

import hashlib
from dataclasses import dataclass, field

import polars as pl

from dup_pipeline.core.inputs import InputSpec
from dup_pipeline.core.sources.catalog import SourceSettings, discover
from dup_pipeline.core.workdir import WorkDir


@dataclass(frozen=True)
class InputChanges:
    """Files added, modified (size or mtime) and removed since the last manifest."""

    added: list[str]
    modified: list[str]
    removed: list[str]
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    @property
    def digest(self) -> str:
        """Identifies this set of changes (a sensor's run key)."""
        def stamped(p: str) -> str:
            size, mtime_ns = self.stamps.get(p, (-1, -1))
            return f"{p}:{size}:{mtime_ns}"

        text = "\n".join(["+" + stamped(p) for p in self.added] + ["~" + stamped(p) for p in self.modified]
                         + ["-" + p for p in self.removed])
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    def describe(self) -> str:
        return f"{len(self.added)} new, {len(self.modified)} changed, {len(self.removed)} removed files"


def input_changes(work: WorkDir, source: InputSpec,
                  sources: SourceSettings = SourceSettings()) -> InputChanges:
    """Compare the input's current entries with ``manifest.parquet`` by name, size and change stamp."""
    manifest = pl.read_parquet(work.manifest) if work.manifest.exists() else None
    entries = discover(source, sources, manifest)
    stamps = {e.name: (e.size, e.stamp) for e in entries}
    if manifest is None:
        return InputChanges(list(stamps), [], [], stamps)
    manifest = manifest.select("path", "size", "mtime_ns", "missing")
    known = {p: (s, m) for p, s, m, _ in manifest.iter_rows()}
    gone = {p for p, _, _, missing in manifest.iter_rows() if missing}
    current = set(stamps)
    added, modified = [], []
    for path in stamps:
        if path not in known:
            added.append(path)  # a new manifest row
        elif path in gone or stamps[path] != known[path]:
            modified.append(path)  # changed, or back after being removed: its row is reused
    removed = sorted(p for p in known if p not in current and p not in gone)
    return InputChanges(added, modified, removed, stamps)
