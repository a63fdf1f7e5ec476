"""Peak memory and speed, side by side: ``dup-pipeline run`` (variants) and fastdup 2.54 on the same folders.

    python benchmarks/bench_rss.py FOLDER [FOLDER ...] [--rounds 2]
        [--fastdup-python /work/fastdup_venv/bin/python]
        [--variant NAME='--labels {labels} --batch-size 32 MALLOC_ARENA_MAX=8' ...]

Each FOLDER is one of ``benchmarks/planted_folder.py`` (``FOLDER/images``, ``FOLDER/labels.csv``).
Per round, every variant of ``dup-pipeline run FOLDER/images WORK`` (a fresh WORK each time) and
then fastdup's ``run()`` (``benchmarks/fastdup_peer.py``, its own venv, offline) run one after the
other, so machine load hits all alike. A variant adds CLI options (``{labels}`` stands for
``FOLDER/labels.csv``) and ``KEY=VALUE`` environment variables to the command; the default is
``labels='--labels {labels}'`` (as ``bench_e2e.py`` runs it). Peak RSS is
the sum of RSS over the process tree sampled every 0.2 s (psutil), as ``bench_e2e.py`` measures
it. Prints one JSON line per run, then per folder and tool the lowest peak RSS and the best
images/s over the rounds, and the ratio of each variant's peak RSS to fastdup's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).parent
CLI = "from dup_pipeline.cli import main; main()"


def peak_tree_rss(proc: subprocess.Popen, every: float = 0.2) -> float:
    """Wait for ``proc``; the highest sum of RSS (MiB) over it and its descendants."""
    root, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        total = 0
        with contextlib.suppress(psutil.Error):
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
        peak = max(peak, total / 2**20)
        time.sleep(every)
    return peak


def run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak tree RSS (MiB) of ``cmd``; a failure stops the benchmark."""
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, env={**os.environ, **env})
        peak = [0.0]
        sampler = threading.Thread(target=lambda: peak.__setitem__(0, peak_tree_rss(proc)))
        sampler.start()
        proc.wait()
        sampler.join()
    if proc.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - started, peak[0]


def parse_variant(text: str) -> tuple[str, list[str], dict[str, str]]:
    """``NAME=ARGS``: CLI options, and ``KEY=VALUE`` words (upper-case key) as environment variables."""
    name, _, spec = text.partition("=")
    args, env = [], {}
    for word in shlex.split(spec):
        key, eq, value = word.partition("=")
        if eq and key.isupper() and not word.startswith("-"):
            env[key] = value
        else:
            args.append(word)
    return name, args, env


def report(folder: Path, files: int, tool: str, round_: int, wall: float, peak: float) -> None:
    print(json.dumps({"folder": str(folder), "files": files, "tool": tool, "round": round_,
                      "wall_s": round(wall, 1), "images_per_s": round(files / wall, 1),
                      "peak_rss_mib": round(peak)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME='CLI options KEY=VALUE ...'")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fastdup-python", default="/work/fastdup_venv/bin/python")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant or ["labels=--labels {labels}"]]
    scratch = Path(tempfile.mkdtemp(prefix="bench_rss_"))
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for folder in args.folders:
        images = folder / "images"
        files = sum(1 for p in images.rglob("*") if p.is_file())
        for round_ in range(args.rounds):
            for name, extra, env in variants:
                work = scratch / "work"
                shutil.rmtree(work, ignore_errors=True)
                options = [a.replace("{labels}", str(folder / "labels.csv")) for a in extra]
                cmd = [sys.executable, "-c", CLI, "run", str(images), str(work), "--quiet", *options]
                results.setdefault((str(folder), name), []).append(run(cmd, env, scratch / f"{name}.log"))
                wall, peak = results[(str(folder), name)][-1]
                report(folder, files, name, round_, wall, peak)
            if args.fastdup_python:
                shutil.rmtree(scratch / "fastdup", ignore_errors=True)
                cmd = [args.fastdup_python, str(HERE / "fastdup_peer.py"), str(images),
                       str(scratch / "fastdup")]
                offline = {"SENTRY_OPT_OUT": "1", "FASTDUP_PRODUCTION": "1"}
                wall, peak = run(cmd, offline, scratch / "fastdup.log")
                results.setdefault((str(folder), "fastdup"), []).append((wall, peak))
                report(folder, files, "fastdup", round_, wall, peak)
        print("| folder | tool | files | best images/s | lowest peak RSS MiB | RSS / fastdup's |")
        print("|---|---|---|---|---|---|")
        fastdup = results.get((str(folder), "fastdup"))
        for (where, tool), runs in results.items():
            if where != str(folder):
                continue
            peak = min(p for _, p in runs)
            ratio = f"{peak / min(p for _, p in fastdup):.2f}×" if fastdup else "–"
            best = files / min(w for w, _ in runs)
            print(f"| {folder.name} | {tool} | {files} | {best:.1f} | {peak:.0f} | {ratio} |")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
