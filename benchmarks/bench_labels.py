"""Benchmark: precision and recall of wrong-label detection at several flip rates.

    python benchmarks/bench_labels.py --per-class 30 --rates 0.05 0.1 0.2
    python benchmarks/bench_labels.py --photos [--views 6] --rates 0.05

Default: generates the demo (its four planted flips included). ``--photos``: a labelled set of real
photographs instead, the subjects of ``calibrate_photos.py`` as classes (flowers, insects, lakes,
mountains, ...; several different photos per class), each photo seen ``--views`` times (random
crop of 35-80% of each side, mirror, brightness). Runs the pipeline once with the default model,
then flips labels at random (to another class) and scores ``status == wrong`` against the flipped
set, plus the precision of the top-N ranked images (N = number of flips) for cleanlab's ranking
(``score``) and for the plain similarity-weighted vote (1 - the given label's share), averaged
over ``--repeats`` random draws of the flips.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.features import load_features
from dup_pipeline.core.label_issues import LabelConfig, label_issues, neighbour_votes, precision_recall
from dup_pipeline.core.labels import load_labels
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.similarity import find_neighbours
from dup_pipeline.core.workdir import WorkDir


def vote_ranking(knn, labels: pl.DataFrame) -> list[int]:
    """The plain similarity-weighted vote: images by ``1 - share of the given label``, highest first."""
    images, votes = neighbour_votes(knn, labels, LabelConfig())
    share = (votes.join(images.select("index", "label"), on="index")
             .group_by("index").agg((pl.col("vote").filter(pl.col("theirs") == pl.col("label")).sum()
                                     / pl.col("vote").sum()).alias("share")))
    ranked = images.join(share, on="index", how="left").with_columns(pl.col("share").fill_null(1.0))
    return ranked.sort(["share", "index"])["index"].to_list()


def photo_set(root: Path, views: int, seed: int) -> tuple[Path, Path, list[str]]:
    """Real photographs labelled by subject, ``views`` augmented views each: (images, labels.csv, classes)."""
    from calibrate_photos import IGNORED_GROUPS, SUBJECTS, fetch_debian, source_photos
    from PIL import Image, ImageEnhance, ImageOps

    sources = source_photos(fetch_debian(Path(tempfile.gettempdir()) / "calibrate_photos" / "debian"))
    rng = np.random.default_rng(seed)
    images = root / "photos"
    images.mkdir(parents=True)
    rows = []
    for label, members in SUBJECTS.items():
        for name in (m for m in members if m in sources and label not in IGNORED_GROUPS):
            img = ImageOps.exif_transpose(Image.open(sources[name])).convert("RGB")
            img.thumbnail((1024, 1024))
            for v in range(views):
                fw, fh = rng.uniform(0.35, 0.8, 2)
                w, h = int(img.width * fw), int(img.height * fh)
                x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
                view = ImageEnhance.Brightness(img.crop((x, y, x + w, y + h))).enhance(float(rng.uniform(0.8, 1.2)))
                view = ImageOps.mirror(view) if rng.random() < 0.5 else view
                path = images / f"{name}_{v}.jpg"
                view.save(path, quality=90)
                rows.append((str(path), label))
    labels = root / "labels.csv"
    pl.DataFrame(rows, schema=["filename", "label"], orient="row").write_csv(labels)
    return images, labels, sorted({r[1] for r in rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--photos", action="store_true", help="real photographs labelled by subject")
    parser.add_argument("--views", type=int, default=6, help="--photos: augmented views per photograph")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="random flip draws per rate (figures averaged)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_labels_"))
    if args.photos:
        images, labels_csv, classes = photo_set(root, args.views, args.seed)
        planted, outliers = set(), set()
    else:
        demo = generate_demo(root, per_class=args.per_class)
        images, labels_csv = demo.images, demo.labels
    config = PipelineConfig(images, str(root / "work"), report=False)
    run_pipeline(config)
    w = WorkDir(config.work_dir)
    manifest = pl.read_parquet(w.manifest)
    knn = find_neighbours(w, manifest, load_features(w), config.graph)
    base = load_labels(labels_csv, manifest, images)
    if not args.photos:
        truth = demo.ground_truth()
        classes = truth["classes"]
        prefix = str(demo.images) + "/"
        planted = {i for i, f in zip(base["index"], base["filename"])
                   if f.removeprefix(prefix) in truth["wrong_labels"]}
        outliers = {f"{prefix}{p}" for p in truth["outliers"]}
    rng = np.random.default_rng(args.seed)
    print(f"{base.height} labelled images, {len(classes)} classes")
    print(f"{'flip rate':>9} {'flips':>6} {'reported':>9} {'precision':>10} {'recall':>7} {'top-N precision':>16} "
          f"{'top-N (vote)':>13}")
    for rate in args.rates:
        results = []
        for _ in range(args.repeats):
            candidates = [i for i, f in zip(base["index"], base["filename"]) if i not in planted and f not in outliers]
            size = max(int(round(rate * base.height)) - len(planted), 0)
            extra = set(rng.choice(candidates, size=size, replace=False).tolist())
            labels = base.with_columns(pl.Series("label", [
                classes[(classes.index(label) + 1 + int(rng.integers(0, len(classes) - 1))) % len(classes)]
                if i in extra else label for i, label in zip(base["index"], base["label"])]))
            flipped = planted | extra
            issues = label_issues(knn, labels)
            wrong = issues.filter(pl.col("status") == "wrong")["index"].to_list()
            precision, recall = precision_recall(wrong, flipped)
            top, _ = precision_recall(issues.head(len(flipped))["index"].to_list(), flipped)
            vote, _ = precision_recall(vote_ranking(knn, labels)[:len(flipped)], flipped)
            results.append((len(flipped), len(wrong), precision, recall, top, vote))
        flips, reported, precision, recall, top, vote = np.mean(results, axis=0)
        print(f"{flips / base.height:>9.3f} {flips:>6.1f} {reported:>9.1f} {precision:>10.3f} {recall:>7.3f} "
              f"{top:>16.3f} {vote:>13.3f}")

if __name__ == "__main__":
    main()
