"""Build the HTML report of a work_dir and save Chromium screenshots of its pages.

    python scripts/screenshot_report.py OUT_DIR [--work-dir WORK_DIR] [--labels CSV] [--pages index blur]

Without ``--work-dir`` the demo dataset is generated under ``OUT_DIR/demo`` and analysed with its
test split held out, then compared with the training images (run mode 3), so every section has data.
Writes ``OUT_DIR/report/*.html`` and ``OUT_DIR/<page>.png``; exits 1 when a page logs to the console.
"""

import argparse
import os
import sys
from pathlib import Path

import polars as pl

from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.inputs import discover_files
from dup_pipeline.core.labels import load_labels
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.report import build_report
from dup_pipeline.core.report.browser import CHROMIUM, screenshot
from dup_pipeline.core.workdir import WorkDir

PAGES = ("index", "duplicates", "outliers", "components", "similarity", "dark", "bright", "blur", "bad_files",
         "leakage")


def demo_work_dir(root: Path) -> tuple[WorkDir, Path]:
    """The demo analysed without its test split, plus the test split searched against it; returns the
    work_dir and the training images' labels."""
    demo = generate_demo(root)
    test = demo.images / "test"
    train = [p for p in discover_files(demo.images) if not Path(p).is_relative_to(test)]
    config = PipelineConfig(train, str(root / "work"))
    run_pipeline(config)
    run_pipeline(config, run_mode=3, test_input=str(test))
    train_labels = root / "train_labels.csv"
    pl.read_csv(demo.labels).filter(pl.col("split") != "test").write_csv(train_labels)
    return WorkDir(config.work_dir), train_labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--work-dir", type=Path, help="an existing work_dir (default: run the demo)")
    parser.add_argument("--labels", type=Path, help="filename,label CSV (default: the demo's labels)")
    parser.add_argument("--name", default=None, help="dataset name shown in the header")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=PAGES)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args(argv)
    if args.work_dir is None:
        work, labels_csv = demo_work_dir(args.out_dir / "demo")
        args.name = args.name or "demo"
    else:
        work, labels_csv = WorkDir(args.work_dir), None
    labels_csv = args.labels or labels_csv
    labels = None
    if labels_csv:
        manifest = pl.read_parquet(work.manifest)
        labels = load_labels(labels_csv, manifest, os.path.commonpath(manifest["path"].to_list()))
    report = build_report(work, args.out_dir / "report", labels=labels, dataset_name=args.name)
    failed = False
    for page in args.pages:
        png = args.out_dir / f"{page}.png"
        messages = screenshot(report.index_path.parent / f"{page}.html", png, args.width, args.height,
                              binary=args.chromium)
        print(png)
        for message in messages:
            print(f"  console: {message}", file=sys.stderr)
        failed |= bool(messages)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
