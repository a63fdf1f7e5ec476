"""Benchmark: decode, embed and decode+embed throughput and peak RSS, side by side with fastdup.

    python benchmarks/bench_embed.py --n 2000 --folder /tmp/bench_embed \
        [--fastdup-python /work/fastdup_venv/bin/python]

Generates ``--n`` JPEGs of realistic sizes (640x480, 1024x768, 1920x1080) once. Each measurement
runs in a fresh child process, one after the other in the same invocation, so ratios compare
like with like on a noisy machine:

- ``decode+stats``: our scan without embedding;
- ``model alone``: the default model on prepared 224x224 batches of 32 (no decoding);
- ``decode+embed``: our full feature extraction (cold work_dir), with the default model and with
  the opt-in int8 variant (``efficientnet_lite0_int8``);
- ``fastdup``: fastdup's run on the same folder, when ``--fastdup-python`` names a venv with it
  (fastdup is never a dependency of this project; see benchmarks/fastdup_peer.py).
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import generate  # noqa: E402


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, folder: str, work: str, model: str) -> dict:
    from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline

    config = PipelineConfig(folder, work, model=ModelConfig(model_path=model or None), report=False)
    if kind == "model":
        import numpy as np

        settings = config.model.feature_settings()
        spec = settings.embedder.spec
        batch = [np.random.default_rng(0).normal(size=(spec.height, spec.width, 3)).astype(np.float32)] * 32
        settings.embedder.run(batch)
        started, done = time.perf_counter(), 0
        while time.perf_counter() - started < 20:
            settings.embedder.run(batch)
            done += len(batch)
        return {"images": done, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_mib()}
    started = time.perf_counter()
    summary = run_pipeline(config, features=(kind == "embed"), run_mode=1)
    return {"images": summary.files, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_mib()}


def _run_child(args: list[str]) -> dict:
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench_embed"))
    parser.add_argument("--model", default="", help="model_path (default: EfficientNet-Lite0)")
    parser.add_argument("--fastdup-python", default="", help="python of a venv where fastdup is installed")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    images = args.folder / "images"
    generate(images, args.n)
    rows = []
    steps = [("scan", "decode+stats", args.model), ("model", "model alone", args.model),
             ("embed", "decode+embed", args.model), ("embed", "decode+embed int8", "efficientnet_lite0_int8")]
    for kind, label, model in steps:
        work = args.folder / f"work_{kind}_{model or 'default'}"
        shutil.rmtree(work, ignore_errors=True)
        rows.append((label, _run_child([sys.executable, __file__, "--child", kind, str(images), str(work), model])))
    if args.fastdup_python:
        peer = Path(__file__).with_name("fastdup_peer.py")
        r = _run_child([args.fastdup_python, str(peer), str(images), str(args.folder / "work_fastdup")])
        rows.append(("fastdup", {"images": r["files"], "seconds": r["seconds"],
                                 "peak_rss_mib": r.get("peak_rss_self_mib", r["peak_rss_mib"])}))
    print(f"{'step':<18} {'images':>7} {'seconds':>8} {'images/s':>9} {'peak RSS MiB':>13}")
    for label, r in rows:
        print(f"{label:<18} {r['images']:>7} {r['seconds']:>8.1f} {r['images'] / r['seconds']:>9.1f} "
              f"{r['peak_rss_mib']:>13.0f}")


if __name__ == "__main__":
    main()
