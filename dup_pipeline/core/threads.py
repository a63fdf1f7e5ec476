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


def model_threads(cores: int | None = None) -> int:
    """onnxruntime's intra-op threads while images are decoded alongside: one core fewer than the
    machine has (at least 1), its idle threads sleeping instead of spinning. Measured on 2 shared
    cores, 150 JPEGs (benchmarks/bench_threads.py, medians, int8 / fp32 model), 1 sleeping model
    thread + 2 decode threads against 2 spinning model threads (the former default): 63.4 vs 53.7 /
    39.9 vs 32.8 images/s at load average ~6, 26.0 vs 17.7 (int8) at ~15; 2 sleeping model threads
    were as fast in wall time (64.4 / 38.6) but used more CPU per image (71.6 vs 76.6 int8 images
    per CPU-second)."""
    return max(1, (cores or default_threads()) - 1)
