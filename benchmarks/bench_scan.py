"""Benchmark: manifest + decode + image statistics (no embedding) throughput and peak memory.

    python benchmarks/bench_scan.py --n 10000 --folder /tmp/bench_scan \
        [--fastdup-python /path/to/fastdup_venv/bin/python]

Generates ``--n`` JPEGs of realistic sizes (640x480, 1024x768, 1920x1080, round robin) once,
then runs the scan in a fresh child process (so its peak RSS is the scan's own), cold (empty
work_dir) and warm (rerun: everything reused), and fastdup's stats-only mode on the same folder
when ``--fastdup-python`` names a venv where it is installed. Prints images/s and peak RSS.
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SIZES = ((640, 480), (1024, 768), (1920, 1080))


def generate(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    from dup_pipeline.core.demo import CLASSES, draw_class_image

    marker = folder / f".complete-{n}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = draw_class_image(CLASSES[i % 4], rng).resize(SIZES[i % 3], Image.Resampling.BILINEAR)
        path = folder / f"{i // 1000:03d}" / f"img_{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, "JPEG", quality=88)
    marker.touch()


def child(folder: str, work: str, threads: int) -> None:
    from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline

    started = time.perf_counter()
    summary = run_pipeline(PipelineConfig(folder, work, num_threads=threads, report=False), features=False)
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"files": summary.files, "decoded": summary.decoded, "seconds": elapsed, "peak_rss_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench_scan"))
    parser.add_argument("--threads", type=int, default=-1)
    parser.add_argument("--fastdup-python", default="", help="python of a venv where fastdup is installed")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    images, work = args.folder / "images", args.folder / "work"
    t0 = time.perf_counter()
    generate(images, args.n)
    print(f"dataset ready ({time.perf_counter() - t0:.0f}s): {args.n} JPEGs in {images}")
    shutil.rmtree(work, ignore_errors=True)
    print(f"{'run':<6} {'files':>7} {'decoded':>8} {'seconds':>8} {'images/s':>9} {'peak RSS MiB':>13}")
    for label in ("cold", "warm"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(images), str(work), str(args.threads)],
            check=True, capture_output=True, text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{label:<6} {r['files']:>7} {r['decoded']:>8} {r['seconds']:>8.1f} "
              f"{r['files'] / r['seconds']:>9.0f} {r['peak_rss_mib']:>13.0f}")
    if args.fastdup_python:
        peer = Path(__file__).with_name("fastdup_peer.py")
        out = subprocess.run([args.fastdup_python, str(peer), str(images), str(args.folder / "work_fastdup"),
                              "--stats-only"], check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{'fastdup':<6} {r['files']:>7} {r['files']:>8} {r['seconds']:>8.1f} "
              f"{r['files'] / r['seconds']:>9.0f} {r.get('peak_rss_self_mib', r['peak_rss_mib']):>13.0f}")


if __name__ == "__main__":
    main()
