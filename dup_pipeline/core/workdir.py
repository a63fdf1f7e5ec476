"""Where every output lives inside a work_dir (fastdup's names where fastdup has one), and the
work_dir's lock: one writing run at a time."""

import contextlib
import fcntl
import functools
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from dup_pipeline.core.errors import WorkDirError
from dup_pipeline.core.inputs import WORKDIR_MARKER
from dup_pipeline.core.ranges import OffsetRange

OUTPUT_FOLDERS = ("ranges", "test", "galleries", "report", "audits", "stages")
# Files written beside the work_dir's named outputs (the clean list and the audit summary).
CLEAN_PARQUET = "clean_manifest.parquet"
CLEAN_LIST = "clean_manifest.txt"
DROPPED_PARQUET = "clean_dropped.parquet"
AUDIT_SUMMARY = "audit_summary.md"
LOCK_NAME = ".dup_pipeline.lock"
RANGE_LOCKS = ".dup_pipeline_range_locks"
LOCK_POLL_SECONDS = 0.2


@dataclass
class _HeldLock:
    fd: int
    shared: bool
    count: int


_held: dict[Path, _HeldLock] = {}
_held_guard = threading.Lock()


def _forget_locks_in_child() -> None:
    """A forked child does not own its parent's locks: it must neither reuse nor keep them alive."""
    for held in _held.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)



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

    def outputs(self) -> list[Path]:
        """Every file and folder this tool writes here (what ``overwrite`` deletes, nothing else)."""
        files = [getattr(self, name) for name, value in vars(WorkDir).items()
                 if isinstance(value, property) and name not in ("marker", "lock_file")]
        folders = [self.root / name for name in OUTPUT_FOLDERS]
        return files + folders + [self.root / name for name in (CLEAN_PARQUET, CLEAN_LIST, DROPPED_PARQUET,
                                                                AUDIT_SUMMARY)]

    def range_dir(self, offset_range: OffsetRange) -> Path:
        return self.root / "ranges" / offset_range.key

    @property
    def marker(self) -> Path:
        """Marks the folder as a work_dir: input discovery never scans a folder holding it."""
        return self.root / WORKDIR_MARKER

    @property
    def lock_file(self) -> Path:
        """Holds the lock of the run writing here, and that run's ``pid@host``."""
        return self.root / LOCK_NAME

    @contextlib.contextmanager
    def locked(self, shared: bool = False, wait: float | None = 0.0,
               on_wait: Callable[[str], None] | None = None) -> Iterator["WorkDir"]:
        """Hold the work_dir's lock (``flock`` on :attr:`lock_file`) while writing outputs.

        Exclusive by default; ``shared=True`` lets steps that write only their own offset range run
        side by side while excluding every exclusive holder. Re-entrant within a process (nested
        calls and the steps of an in-process Dagster run share it; an exclusive request inside a
        shared hold is a :class:`WorkDirError`). ``wait`` is how many seconds
        to wait for another process's lock (None: as long as it takes; ``on_wait`` is told who
        holds it once); then :class:`WorkDirError` names the holder. A dead process's lock is
        released by the kernel, so a stale lock file never blocks a new run.
        """
        self.ensure_writable()
        with file_lock(self.lock_file, f"work_dir {str(self.root)!r}", shared, wait, on_wait):
            yield self

    @contextlib.contextmanager
    def range_locked(self, offset_range: OffsetRange) -> Iterator[None]:
        """Hold one offset range's own lock (waiting for it): two runs that share the work_dir (Dagster
        steps) never write, or clean up temporary files in, the same range folder at once."""
        lock_file = self.root / RANGE_LOCKS / f"{offset_range.key}.lock"
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(lock_file, f"offset range {offset_range.key} of work_dir {str(self.root)!r}", wait=None):
            yield

    def ensure_writable(self) -> "WorkDir":
        """Create the folder (with its :attr:`marker`) and prove it is writable, or raise :class:`WorkDirError`."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
            self.marker.touch()
        except OSError as exc:
            raise WorkDirError(f"work_dir {str(self.root)!r} is not writable: {exc.strerror or exc}") from None
        return self


@contextlib.contextmanager
def file_lock(lock_file: Path, what: str, shared: bool = False, wait: float | None = 0.0,
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """``flock`` on ``lock_file`` (``what`` names the locked thing in messages); see :meth:`WorkDir.locked`.

    Re-entrant per process: a nested or concurrent request of this process shares the lock it
    holds (a shared lock is never upgraded: that would release it for a moment)."""
    key = lock_file.resolve()
    with _held_guard:
        held = _held.get(key)
        if held is None:
            try:
                fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise WorkDirError(f"lock file {str(lock_file)!r} cannot be opened: {exc.strerror or exc}") from None
            try:
                _acquire(fd, lock_file, what, shared, wait, on_wait)
            except BaseException:
                os.close(fd)
                raise
            held = _held.get(key)  # another thread of this process may have taken it while this one waited
            if held is None:
                held = _held[key] = _HeldLock(fd, shared, 0)
            else:
                os.close(fd)
        if held.shared and not shared:
            raise WorkDirError(f"{what} is held shared by this process (an offset-range step): it cannot be "
                               "locked exclusively inside it")
        held.count += 1
    try:
        yield
    finally:
        with _held_guard:
            held.count -= 1
            if held.count == 0:
                del _held[key]
                if not held.shared:
                    os.ftruncate(held.fd, 0)
                os.close(held.fd)  # releases the flock


def _acquire(fd: int, lock_file: Path, what: str, shared: bool, wait: float | None,
             on_wait: Callable[[str], None] | None) -> None:
    """Take the flock, polling until ``wait`` runs out; called holding ``_held_guard``, which is let go
    while sleeping so the process's other threads can take and release their locks meanwhile."""
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _read_holder(fd)
            if deadline is not None and time.monotonic() >= deadline:
                raise WorkDirError(f"{what} is in use by another run ({holder}): wait for it to finish or use "
                                   f"another work_dir (lock file {lock_file})") from None
            if on_wait is not None:
                on_wait(f"waiting for {what}, in use by another run ({holder})")
                on_wait = None
            _held_guard.release()
            try:
                time.sleep(LOCK_POLL_SECONDS)
            finally:
                _held_guard.acquire()
        except OSError as exc:  # a filesystem without locks
            raise WorkDirError(f"{what} cannot be locked: {exc.strerror or exc}") from None
    if not shared:
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}@{socket.gethostname()} since {started}\n".encode(), 0)


def _read_holder(fd: int) -> str:
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    return text or "a run whose steps share it, e.g. Dagster offset-range scans"


Func = TypeVar("Func", bound=Callable[..., Any])


def holding_lock(func: Func) -> Func:
    """Run ``func`` holding the exclusive lock of the work_dir its first argument names (a
    :class:`WorkDir`, or a configuration with a ``work_dir``); a second run fails at once."""

    @functools.wraps(func)
    def locked_call(first: Any, *args: Any, **kwargs: Any) -> Any:
        work = first if isinstance(first, WorkDir) else WorkDir(first.work_dir)
        with work.locked():
            return func(first, *args, **kwargs)

    return locked_call  # type: ignore[return-value]


def holding_range_lock(func: Func) -> Func:
    """Run ``func(work, manifest, offset_range, ...)`` holding that range's lock (:meth:`WorkDir.range_locked`)."""

    @functools.wraps(func)
    def locked_call(work: WorkDir, manifest: Any, offset_range: OffsetRange, *args: Any, **kwargs: Any) -> Any:
        with work.range_locked(offset_range):
            return func(work, manifest, offset_range, *args, **kwargs)

    return locked_call  # type: ignore[return-value]
