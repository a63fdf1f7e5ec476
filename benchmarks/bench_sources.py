"""Benchmark: images/s from a local S3 server against the same files on local disk; video frames/s.

    python benchmarks/bench_sources.py --n 1000 --folder /tmp/bench_sources [--threads 2] [--concurrency 16]

Generates ``--n`` JPEGs (640x480, quality 88) once and uploads them to moto's S3 server started
on localhost (in this process: it shares the CPU with the pipeline, so the bucket figure is a
lower bound for a real store). Times a stats-only pipeline run (manifest with content hashes,
decode, statistics; no model, no report) on the folder and on the bucket, each in a fresh
work_dir, then the rerun (listing only, nothing decoded). Then writes a 60 s 640x360 30 fps
video with PyAV and times its frames through the source layer at 1 fps and at 30 fps (every
frame). Prints one JSON line per measurement.
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def generate(folder: Path, n: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    from dup_pipeline.core.demo import CLASSES, draw_class_image

    marker = folder / f".complete-{n}"
    paths = [folder / f"img_{i:06d}.jpg" for i in range(n)]
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i, path in enumerate(paths):
            img = draw_class_image(CLASSES[i % 4], rng).resize((640, 480), Image.Resampling.BILINEAR)
            img.save(path, "JPEG", quality=88)
        marker.touch()
    return paths


def timed_run(source: str, threads: int, concurrency: int) -> dict:
    from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
    from dup_pipeline.core.sources.catalog import SourceSettings

    work = tempfile.mkdtemp(prefix="bench_sources_")
    config = PipelineConfig(source, work, num_threads=threads, report=False,
                            sources=SourceSettings(read_concurrency=concurrency))
    try:
        started = time.perf_counter()
        summary = run_pipeline(config, features=False)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        run_pipeline(config, features=False)
        warm = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"input": source, "files": summary.files, "good": summary.good, "seconds": round(cold, 2),
            "images_per_s": round(summary.files / cold, 1), "rerun_seconds": round(warm, 2)}


def video_rates(folder: Path) -> list[dict]:
    import av
    import numpy as np

    from dup_pipeline.core.sources.catalog import SourceSettings, discover, iter_payloads

    clip = folder / "clip.mp4"
    if not clip.exists():
        with av.open(str(clip), "w", format="mp4") as container:
            stream = container.add_stream("mpeg4", rate=30)
            stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
            base = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
            for k in range(60 * 30):
                frame = av.VideoFrame.from_ndarray(np.roll(base, k * 4, axis=1), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    rates = []
    for fps in (1.0, 30.0):
        settings = SourceSettings(video_fps=fps)
        names = [e.name for e in discover([str(clip)], settings)]
        started = time.perf_counter()
        frames = sum(p.frame is not None for p in iter_payloads(names, settings))
        seconds = time.perf_counter() - started
        rates.append({"video": "60 s, 640x360, 30 fps mpeg4", "video_fps": fps, "frames": frames,
                      "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1),
                      "decoded_frames_per_s": round(60 * 30 / seconds, 1)})
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench_sources"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    paths = generate(args.folder / "images", args.n)

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    import fsspec
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        fs = fsspec.filesystem("s3")
        fs.mkdir("bench")
        fs.put([str(p) for p in paths], [f"bench/images/{p.name}" for p in paths])
        print(json.dumps(timed_run(str(args.folder / "images"), args.threads, args.concurrency)))
        print(json.dumps(timed_run("s3://bench/images", args.threads, args.concurrency)))
    finally:
        server.stop()
    for rate in video_rates(args.folder):
        print(json.dumps(rate))


if __name__ == "__main__":
    main()
