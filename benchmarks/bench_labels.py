"""Benchmark: precision and recall of wrong-label detection at several flip rates.

    python benchmarks/bench_labels.py --per-class 30 --rates 0.05 0.1 0.2

Generates the demo (its four planted flips included), runs the pipeline once with the default
model, then flips more labels at random (to another class) and scores ``status == wrong``
against the flipped set, plus the precision of the top-N ranked images (N = number of flips).
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.features import load_features
from dup_pipeline.core.label_issues import label_issues, precision_recall
from dup_pipeline.core.labels import load_labels
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.similarity import find_neighbours
from dup_pipeline.core.workdir import WorkDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_labels_"))
    demo = generate_demo(root, per_class=args.per_class)
    config = PipelineConfig(demo.images, str(root / "work"), report=False)
    run_pipeline(config)
    w = WorkDir(config.work_dir)
    manifest = pl.read_parquet(w.manifest)
    knn = find_neighbours(w, manifest, load_features(w), config.graph)
    base = load_labels(demo.labels, manifest, demo.images)
    truth = demo.ground_truth()
    classes = truth["classes"]
    prefix = str(demo.images) + "/"
    planted = {i for i, f in zip(base["index"], base["filename"]) if f.removeprefix(prefix) in truth["wrong_labels"]}
    outliers = {f"{prefix}{p}" for p in truth["outliers"]}
    rng = np.random.default_rng(args.seed)
    print(f"{'flip rate':>9} {'flips':>6} {'reported':>9} {'precision':>10} {'recall':>7} {'top-N precision':>16}")
    for rate in args.rates:
        candidates = [i for i, f in zip(base["index"], base["filename"]) if i not in planted and f not in outliers]
        extra = set(rng.choice(candidates, size=max(int(rate * base.height) - len(planted), 0), replace=False).tolist())
        labels = base.with_columns(pl.Series("label", [
            classes[(classes.index(label) + 1 + int(rng.integers(0, len(classes) - 1))) % len(classes)]
            if i in extra else label for i, label in zip(base["index"], base["label"])]))
        flipped = planted | extra
        issues = label_issues(knn, labels)
        wrong = issues.filter(pl.col("status") == "wrong")["index"].to_list()
        precision, recall = precision_recall(wrong, flipped)
        top, _ = precision_recall(issues.head(len(flipped))["index"].to_list(), flipped)
        print(f"{len(flipped) / base.height:>9.3f} {len(flipped):>6} {len(wrong):>9} {precision:>10.3f} {recall:>7.3f} "
              f"{top:>16.3f}")


if __name__ == "__main__":
    main()
