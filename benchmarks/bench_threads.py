"""Benchmark: decode threads against onnxruntime intra-op threads, decode + statistics + embedding.

    python benchmarks/bench_threads.py [--n 300] [--folder /tmp/bench_threads] [--rounds 2] [--model auto]

Generates ``--n`` JPEGs once (640x480, 1024x768 and 1920x1080 drawings, as bench_scan.py), then
decodes, computes statistics and embeds all of them as a range scan does (``process_rows`` feeding
``Embedder.run`` in batches of 32) with each split of the cores: decode threads x onnxruntime
intra-op threads, onnxruntime's idle threads spinning or sleeping. The splits run one after the
other in each round, in one process, so machine load hits them alike; per split: images/s of each
round and their median, and the median images per CPU-second (all threads: what spinning or
oversubscription wastes, which on a shared machine other work loses).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import generate  # noqa: E402

from dup_pipeline.core.config import ModelConfig  # noqa: E402
from dup_pipeline.core.embed.model import Embedder  # noqa: E402
from dup_pipeline.core.inputs import discover_files  # noqa: E402
from dup_pipeline.core.manifest import build_manifest  # noqa: E402
from dup_pipeline.core.scan import DecodeSettings, process_rows  # noqa: E402

SPLITS = ((2, 2, True), (2, 2, False), (1, 2, False), (2, 1, True), (2, 1, False))


def embed_all(manifest, embedder: Embedder, decode_threads: int, batch: int = 32) -> tuple[float, float]:
    """Images per second and per CPU second (all threads) for decode + statistics + embedding of every row."""
    started, cpu, pending = time.perf_counter(), time.process_time(), []
    prepare = lambda decoded: embedder.prepare(decoded.image)  # noqa: E731
    for item in process_rows(manifest, DecodeSettings(), decode_threads, prepare=prepare):
        if item.tensor is not None:
            pending.append(item.tensor)
        if len(pending) == batch:
            embedder.run(pending)
            pending = []
    if pending:
        embedder.run(pending)
    return manifest.height / (time.perf_counter() - started), manifest.height / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench_threads"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="auto")
    args = parser.parse_args()
    generate(args.folder, args.n)
    manifest = build_manifest(discover_files(str(args.folder)))
    spec = ModelConfig(model_path=args.model).spec()
    print(f"{manifest.height} JPEGs, model {spec.label}")
    embedders = {split: Embedder(spec, split[1], spin=split[2]) for split in SPLITS}
    results: dict[tuple, list[tuple[float, float]]] = {split: [] for split in SPLITS}
    for _ in range(args.rounds):
        for split, embedder in embedders.items():
            results[split].append(embed_all(manifest, embedder, split[0]))
    for (decode, intra, spin), rates in results.items():
        wall, cpu = zip(*rates)
        print(f"decode threads {decode}, onnxruntime threads {intra}, spinning {'on ' if spin else 'off'}: "
              f"median {statistics.median(wall):.1f} images/s ({', '.join(f'{r:.1f}' for r in wall)}), "
              f"median {statistics.median(cpu):.1f} images per CPU-second")


if __name__ == "__main__":
    main()
