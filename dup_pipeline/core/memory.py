"""The process's memory under glibc: fewer malloc arenas, and freed heap handed back to the system.

glibc gives threads their own malloc arenas (up to 8 per core). The decode threads, onnxruntime
and the report's thumbnail threads each free what they allocate, but the freed pages of an arena
stay resident, so a run's RSS kept what its busiest moment needed (measured with
``benchmarks/bench_rss.py``). Elsewhere than glibc these are no-ops.
"""

import ctypes
import os

ARENA_ENV = "MALLOC_ARENA_MAX"
ARENAS = 2  # the main thread's arena and one shared by the worker threads
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Let threads started from now on share at most ``arenas`` malloc arenas, unless the user set
    ``MALLOC_ARENA_MAX`` (which glibc already applies). True when the limit was set here."""
    libc = _glibc()
    if libc is None or ARENA_ENV in os.environ:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (``malloc_trim``): after a stage whose buffers
    (decoded images, model activations) are gone. True when some memory was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
