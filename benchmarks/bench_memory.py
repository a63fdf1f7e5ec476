"""Benchmark: peak memory per stage of a whole run, to see what grows with the number of images.

    python benchmarks/bench_memory.py N WORK_DIR [--mode stats|embed|tiny] [--range-size R]

Generates N tiny JPEGs (64x48) once under /tmp/bench_memory/N, runs ``run_pipeline`` on them in
this process (fresh WORK_DIR) and samples the process's anonymous resident memory (RssAnon, so
memory-mapped feature files do not count) every 20 ms, keeping the peak of each stage (the stage
the registry runs, or the progress bar's label during the range scans). ``--mode``: ``stats``
statistics only, ``embed`` the default model, ``tiny`` a 1280-d ONNX model that costs nothing to
run (the vectors' memory without the model's time). Run it at two sizes (e.g. 2000 and 8000) and
compare: a stage whose peak grows with N holds something per image. Prints one JSON line.
"""

import argparse
import contextlib
import json
import resource
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

import dup_pipeline.core.stages as stages
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline


def rss_anon_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon")) / 1024


def generate(folder: Path, n: int) -> None:
    marker = folder / f".complete-{n}"
    if marker.exists():
        return
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"{i // 1000:03d}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((64, 48), Image.Resampling.BICUBIC).save(path, "JPEG", quality=85)
    marker.touch()


def tiny_model(path: Path) -> None:
    """Embedding = the mean colour times a fixed 3x1280 matrix (a 1280-d vector at no cost)."""
    weights = np.random.default_rng(0).normal(size=(3, 1280)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixels", "axes"], ["mean"], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["embedding"])], "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 1280])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3]),
         helper.make_tensor("w", TensorProto.FLOAT, [3, 1280], weights.ravel())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("work_dir")
    parser.add_argument("--mode", choices=("stats", "embed", "tiny"), default="embed")
    parser.add_argument("--range-size", type=int, default=1000)
    args = parser.parse_args()
    folder = Path("/tmp/bench_memory") / str(args.n)
    generate(folder, args.n)
    model = ModelConfig()
    if args.mode == "tiny":
        tiny_model(folder.parent / "tiny.onnx")
        model = ModelConfig(model_path=str(folder.parent / "tiny.onnx"), normalization="raw")
    stage, peaks, done = ["start"], {}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks[stage[0]] = max(peaks.get(stage[0], 0.0), rss_anon_mib())
            time.sleep(0.02)

    @contextlib.contextmanager
    def progress(desc: str, total: int):
        stage[0] = desc
        yield lambda n: None

    run_stage = stages.run_stage

    def labelled(st, ctx):
        stage[0] = st.name
        return run_stage(st, ctx)

    stages.run_stage = labelled
    shutil.rmtree(args.work_dir, ignore_errors=True)
    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    config = PipelineConfig(str(folder), args.work_dir, range_size=args.range_size, model=model)
    run_pipeline(config, progress, features=args.mode != "stats")
    seconds = time.perf_counter() - started
    stage[0] = "end"
    time.sleep(0.1)
    done.set()
    print(json.dumps({"n": args.n, "mode": args.mode, "range_size": args.range_size, "seconds": round(seconds, 1),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "peak_anon_mib_by_stage": {k: round(v, 1) for k, v in peaks.items()}}))


if __name__ == "__main__":
    main()
