"""How far apart the demo's distinct images are, per class and across classes, for one model.

    python benchmarks/demo_similarity.py [--model auto] [--per-class 12] [--seed SEED]

Generates the demo, embeds every image that is not a planted copy (exact, near, leak, blurred, dark,
bright) or outlier, and prints per class the highest and median similarity between two of its
distinct images, the highest to another class, the share of images whose nearest neighbour is of
their class, and how many distinct pairs reach each candidate threshold; then the lowest similarity
of each kind of planted copy to its original. A distinct pair at or above ``threshold`` would be
listed as a false duplicate.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from dup_pipeline.core.config import ModelConfig
from dup_pipeline.core.decode import decode_image
from dup_pipeline.core.demo import DEFAULT_SEED, SCENES, generate_demo
from dup_pipeline.core.embed.model import Embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="auto", help="model_path (auto, efficientnet_lite0, ...)")
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    demo = generate_demo(Path(tempfile.mkdtemp()) / "demo", per_class=args.per_class, seed=args.seed)
    truth = demo.ground_truth()
    copies = [(a, b, kind) for a, b, kind in truth["near_duplicates"]]
    copies += [(a, b, kind) for kind in ("exact_duplicates", "leakage", "blurred") for a, b in truth[kind]]
    derived = {b for _, b, _ in copies} | set(truth["dark"]) | set(truth["bright"]) | set(truth["outliers"])
    everything = sorted(str(p.relative_to(demo.images)) for p in demo.images.rglob("*")
                        if p.is_file() and p.parent.name != "bad")
    distinct = [r for r in everything if r not in derived]
    spec = ModelConfig(model_path=args.model).spec()
    embedder = Embedder(spec)
    prepared = [embedder.prepare(decode_image(str(demo.images / r)).image) for r in everything]
    vectors, _ = embedder.run(prepared)
    row = {r: i for i, r in enumerate(everything)}
    v = vectors[[row[r] for r in distinct]]
    sim = v @ v.T
    np.fill_diagonal(sim, -1)
    label = np.array([r.split("/")[1] for r in distinct])
    print(f"model {spec.label}, {len(distinct)} distinct images")
    for c in SCENES:
        mine = label == c
        within = sim[mine][:, mine]
        others = sim[mine][:, ~mine].max()
        print(f"  {c:11s} n={mine.sum():2d} highest {within.max():.3f} "
              f"median {np.median(within[within > -1]):.3f}  highest to another class {others:.3f}")
    print(f"  nearest neighbour of the same class: {(label[sim.argmax(1)] == label).mean():.3f}")
    print("  distinct pairs at or above: " + ", ".join(f"{t}: {int((sim >= t).sum() // 2)}"
                                                     for t in (0.7, 0.75, 0.8, 0.85, 0.9)))
    lowest: dict[str, float] = {}
    for a, b, kind in copies:
        s = float(vectors[row[a]] @ vectors[row[b]])
        lowest[kind] = min(lowest.get(kind, 1.0), s)
    print("  planted copies, lowest: " + ", ".join(f"{k} {s:.3f}" for k, s in lowest.items()))


if __name__ == "__main__":
    main()
