"""Progress reporting that the core can call without knowing who listens (CLI bar, Dagster log)."""

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Protocol

Advance = Callable[[int], None]


class ProgressSink(Protocol):
    """Open a progress context for ``total`` steps described by ``desc``; yields ``advance(n)``."""

    def __call__(self, desc: str, total: int) -> contextlib.AbstractContextManager[Advance]: ...


@contextlib.contextmanager
def silent_progress(desc: str, total: int) -> Iterator[Advance]:
    """A progress sink that reports nothing."""
    yield lambda n: None


def logging_progress(log: Callable[[str], None], every_seconds: float = 10.0) -> ProgressSink:
    """A progress sink that calls ``log`` with a line at most every ``every_seconds`` and at the end."""

    @contextlib.contextmanager
    def sink(desc: str, total: int) -> Iterator[Advance]:
        started = last = time.monotonic()
        done = 0

        def advance(n: int) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            if now - last >= every_seconds:
                last = now
                log(f"{desc}: {done}/{total} ({done / max(now - started, 1e-9):.0f}/s)")

        yield advance
        elapsed = time.monotonic() - started
        log(f"{desc}: {done}/{total} done in {elapsed:.1f}s ({done / max(elapsed, 1e-9):.0f}/s)")

    return sink
