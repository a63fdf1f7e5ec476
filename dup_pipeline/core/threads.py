"""How many threads a stage uses: every core by default, never more than the machine has."""

import os
import warnings


def default_threads() -> int:
    """All cores, as fastdup's ``num_threads=-1``."""
    return os.cpu_count() or 1


def resolve_threads(num_threads: int | None) -> int:
    """Threads to use: every core for -1 or None; more than the machine's cores is capped, with a warning."""
    cores = default_threads()
    if num_threads is None or num_threads == -1:
        return cores
    if num_threads > cores:
        warnings.warn(f"num_threads={num_threads} is more than this machine's {cores} cores; using {cores}",
                      stacklevel=2)
        return cores
    return num_threads

