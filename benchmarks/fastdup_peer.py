"""Side-by-side peer benchmark: time fastdup on a folder and print one JSON line.

Run it with the python of a SEPARATE venv that has fastdup installed (fastdup is under a
non-commercial licence: it is never a dependency of dup_pipeline and this script never imports
dup_pipeline)::

    /work/fastdup_venv/bin/python benchmarks/fastdup_peer.py INPUT_DIR WORK_DIR [--threads N] [--stats-only]

Uses fastdup's v0 call ``fastdup.run(...)`` (the v1 ``fastdup.create(...).run(...)`` wraps it and
adds pandas post-processing; both work offline). Telemetry is off: ``SENTRY_OPT_OUT`` and
``FASTDUP_PRODUCTION`` are set before import (no sentry, no PyPI version check) and the C++ side
gets ``run_sentry=0``. ``WORK_DIR`` (empty, or a previous fastdup work_dir) is deleted first:
fastdup v0 has no ``overwrite`` and refuses to run over existing features.

``--stats-only`` passes ``turi_param run_stats_only=1``: fastdup lists, decodes, resizes and writes
``atrain_stats.csv`` only (no embeddings, no nnf index, no similarity/outliers/components).

stdout carries exactly one JSON line; fastdup's own chatter (C and Python) goes to stderr.
``peak_rss_mib`` is ru_maxrss(SELF) + ru_maxrss(CHILDREN). fastdup's C++ forks ~20 ``sh -c`` probes
(nvidia-smi, uname, env | grep ..., find), and a forked child's ru_maxrss counts the RSS inherited
from the parent, so CHILDREN roughly duplicates SELF; ``peak_rss_self_mib`` is the process's own
peak (fastdup works in-process threads).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 (Python and C stdio, e.g. fastdup's progress bar) to fd 2 for the block's duration."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def count_rows(path: Path) -> int:
    """Data rows of a fastdup CSV (header excluded); 0 when the file is absent."""
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--threads", type=int, default=-1, help="num_threads (-1: fastdup's auto = all cores)")
    parser.add_argument("--stats-only", action="store_true", help="decode + image stats only (run_stats_only=1)")
    args = parser.parse_args(argv)

    os.environ.setdefault("SENTRY_OPT_OUT", "1")
    os.environ.setdefault("FASTDUP_PRODUCTION", "1")
    if args.work_dir.resolve() in (args.input_dir.resolve(), *args.input_dir.resolve().parents):
        parser.error("WORK_DIR must not be INPUT_DIR or one of its parents")
    if args.work_dir.is_dir() and any(args.work_dir.iterdir()) and not (args.work_dir / "config.json").exists():
        parser.error(f"{args.work_dir} is neither empty nor a fastdup work_dir; refusing to delete it")
    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    turi_param = "run_sentry=0" + (",run_stats_only=1" if args.stats_only else "")

    with stdout_to_stderr():
        started = time.perf_counter()
        import fastdup

        import_seconds = time.perf_counter() - started
        started = time.perf_counter()
        ret = fastdup.run(
            str(args.input_dir.resolve()),
            work_dir=str(args.work_dir.resolve()),
            num_threads=args.threads,
            turi_param=turi_param,
        )
        seconds = time.perf_counter() - started

    valid = count_rows(args.work_dir / "atrain_features.dat.csv")
    invalid = count_rows(args.work_dir / "atrain_features.bad.csv")
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    files = valid + invalid
    print(json.dumps({
        "files": files,
        "seconds": round(seconds, 3),
        "peak_rss_mib": round(self_mib + children_mib, 1),
        "images_per_s": round(files / seconds, 2) if seconds > 0 else None,
        "fastdup_version": fastdup.__version__,
        "mode": "stats_only" if args.stats_only else "full",
        "threads": args.threads,
        "valid": valid,
        "invalid": invalid,
        "peak_rss_self_mib": round(self_mib, 1),
        "peak_rss_children_mib": round(children_mib, 1),
        "import_seconds": round(import_seconds, 3),
        "returncode": ret,
    }))
    return 0 if ret == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
