"""The process's memory under glibc: fewer malloc arenas, and freed heap handed back to the system.

glibc gives threads their own malloc arenas (up to 8 per core). The decode threads, onnxruntime
and the report's thumbnail threads each free what they allocate, but the freed pages of an arena
stay resident, so a run's RSS kept what its busiest moment needed (measured with
``benchmarks/bench_rss.py``). glibc also raises its mmap threshold to the largest block freed so far
(up to 32 MiB), after which large arrays are carved from the heap, whose freed holes stay resident
between live blocks: the range scans keep that (a mapped block per decoded image costs ~3 ms of page
faults), the stages after them map their large arrays. Elsewhere than glibc these are no-ops.
"""

import ctypes
import mmap
import os

import numpy as np

ARENA_ENV = "MALLOC_ARENA_MAX"
ARENAS = 2  # the main thread's arena and one shared by the worker threads
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"
MMAP_THRESHOLD = 128 * 1024  # glibc's initial threshold: the stages after the range scans
SCAN_MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for the threshold it raises: the range scans
_M_MMAP_THRESHOLD = -3


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


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Give every block of ``threshold`` bytes or more its own mapping, unmapped when freed (glibc no
    longer raises the threshold), unless the user set ``MALLOC_MMAP_THRESHOLD_``. True when set here."""
    libc = _glibc()
    if libc is None or MMAP_ENV in os.environ:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (``malloc_trim``): after a stage whose buffers
    (decoded images, model activations) are gone. True when some memory was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def release_mapped_pages(array: np.ndarray) -> bool:
    """Drop the pages of a memory-mapped array (e.g. the feature matrix) from the process's resident set
    (``MADV_DONTNEED`` on its mapping): the file's pages stay in the page cache, so a later read faults them
    back without I/O. Without this, every stage after the kNN search (which reads the whole matrix: 509 MB
    at 100k images) counts the matrix in its RSS. True when the array is file-mapped and was released."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if not isinstance(base, mmap.mmap) or base.closed:
        return False
    base.madvise(mmap.MADV_DONTNEED)
    return True
