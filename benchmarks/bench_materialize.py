"""Dagster's "Materialize all" (the audit asset job, in-process executor) against the CLI on one folder.

    python benchmarks/bench_materialize.py [--images FOLDER --labels CSV] [--range-size N]

Without ``--images`` the demo dataset is generated in a temporary folder. Each side starts from an
empty work_dir (cold), then runs again with nothing changed (warm: every stage reused). Prints JSON.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from dup_pipeline.core.demo import generate_demo
from dup_pipeline.dagster_defs.audit import materialize_dataset
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline.dagster_defs.resources import DatasetResource


def _cli(images: Path, work: Path, labels: Path | None, range_size: int) -> float:
    command = [str(Path(sys.executable).parent / "dup-pipeline"), "run", str(images), str(work), "--quiet",
               "--range-size", str(range_size)] + (["--labels", str(labels)] if labels else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _materialize_all(images: Path, work: Path, labels: Path | None, range_size: int, home: Path) -> float:
    dataset = DatasetResource(input_dir=str(images), work_dir=str(work), range_size=range_size,
                              labels=str(labels) if labels else None)
    defs = build_definitions({"bench": dataset}, executor=dg.in_process_executor)
    home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        started = time.perf_counter()
        materialize_dataset(defs, "bench", instance)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--range-size", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images, labels = args.images, args.labels
        if images is None:
            demo = generate_demo(root / "demo")
            images, labels = demo.images, demo.labels
        figures = {}
        for side in ("cli", "materialize_all"):
            work = root / f"work_{side}"
            for attempt in ("cold", "warm"):
                if side == "cli":
                    seconds = _cli(images, work, labels, args.range_size)
                else:
                    seconds = _materialize_all(images, work, labels, args.range_size, root / "home")
                figures[f"{side}_{attempt}_s"] = round(seconds, 1)
        print(json.dumps({"images": str(images), **figures}))


if __name__ == "__main__":
    main()
