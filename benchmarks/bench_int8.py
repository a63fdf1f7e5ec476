"""Benchmark: int8 EfficientNet-Lite0 against fp32 (224 and 160 px): model speed and embedding quality.

    python benchmarks/bench_int8.py [--folder /tmp/bench_int8] [--rounds 6] [--seconds 3] [--threads N]

One run measures everything side by side:

- build: time to quantize the model on first use (``int8_model_path()``; 0 when cached);
- speed: model alone (``session.run`` on a prepared NCHW batch of 32) of fp32 224, int8 224 and
  fp32 160, one batch of each in turn, so machine noise hits all three alike; ``--rounds``
  rounds of at least ``--seconds`` per model; speedups are medians of per-round ratios. The fp32
  graph declares a static 224x224 input; for 160 px a copy with symbolic H/W is written (its
  TensorFlow SAME paddings are the same at 160, every stride-2 input size being even);
- demo quality: ``generate_demo`` embedded by ``run_pipeline`` (run mode 1) with each model:
  similarity of every planted near-duplicate/leakage pair, the most similar unrelated pair,
  the share of planted pairs above 0.9 and the number of unrelated pairs above 0.9;
  "unrelated" = every pair except those within one planted family (exact copy, near-duplicates
  of one base, leakage, blurred copy) and any pair with the dark/bright copies (whose sources
  ground_truth.json does not name);
- agreement: cosine between the fp32 and int8 embedding of each image, top-1 ImageNet class
  agreement (``Embedder`` on the same images, as the pipeline hook for int8 logits is missing);
- photos (if scikit-image is installed): its bundled photos plus copies resized 80% + JPEG 85,
  cropped 5%, brightness 1.1 and mirrored.
"""

import argparse
import io
import itertools
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from PIL import Image, ImageEnhance

from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.embed.effnet_lite0 import default_model_path
from dup_pipeline.core.embed.model import Embedder, ModelSpec, default_model_spec
from dup_pipeline.core.embed.quantized import int8_model_path, int8_model_spec
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline

BATCH = 32
THRESHOLD = 0.9
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "camera", "coins", "brick", "grass")


def dynamic_size_copy(folder: Path) -> Path:
    """The fp32 model with symbolic input height and width."""
    model = onnx.load(str(default_model_path()))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    path = folder / "efficientnet_lite0-dynamic-hw.onnx"
    onnx.save(model, str(path))
    return path


# -- speed ---------------------------------------------------------------------------------------


def speed(specs: dict[str, ModelSpec], rounds: int, seconds: float, threads: int | None) -> None:
    embedders = {name: Embedder(spec, threads) for name, spec in specs.items()}
    rng = np.random.default_rng(0)
    batches = {name: rng.normal(size=(BATCH, 3, s.height, s.width)).astype(np.float32) for name, s in specs.items()}
    for name, e in embedders.items():
        e.session.run(None, {"images": batches[name]})  # warm up
    names = list(specs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        elapsed = dict.fromkeys(names, 0.0)
        done = dict.fromkeys(names, 0)
        while min(elapsed.values()) < seconds:
            for name in names:  # one batch each in turn: all models share the same machine noise
                started = time.perf_counter()
                embedders[name].session.run(None, {"images": batches[name]})
                elapsed[name] += time.perf_counter() - started
                done[name] += BATCH
        for name in names:
            rates[name].append(done[name] / elapsed[name])
    base = names[0]
    print(f"\n## model alone, batch {BATCH}, {rounds} rounds of >= {seconds:g} s per model, batches interleaved "
          "(images/s)")
    print(f"{'model':<12} {'median':>7} {'speedup':>8}   per round")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(rates[name], rates[base], strict=True))
        rounds_text = " ".join(f"{v:.0f}" for v in rates[name])
        print(f"{name:<12} {statistics.median(rates[name]):>7.1f} {ratio:>7.2f}x   {rounds_text}")


# -- quality -------------------------------------------------------------------------------------


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def pipeline_vectors(images: Path, work: Path, model: ModelConfig) -> dict[str, np.ndarray]:
    """Embeddings from ``run_pipeline`` (run mode 1), keyed by path relative to ``images``."""
    summary = run_pipeline(PipelineConfig(images, str(work), model=model), run_mode=1)
    names = [str(Path(f).relative_to(images)) for f in summary.features.index["filename"]]
    return dict(zip(names, np.asarray(summary.features.matrix), strict=True))


def demo_pairs(truth: dict, names: list[str]) -> tuple[list[tuple[str, str, str]], list[tuple[int, int]]]:
    """Planted (a, b, kind) pairs, and the index pairs of unrelated images."""
    planted = [(a, b, kind) for a, b, kind in truth["near_duplicates"]]
    planted += [(a, b, "leakage") for a, b in truth["leakage"]]
    family: dict[str, str] = {}
    for a, b, *_ in truth["exact_duplicates"] + truth["near_duplicates"] + truth["leakage"] + truth["blurred"]:
        family[b] = family.get(a, a)
    excluded = set(truth["dark"]) | set(truth["bright"])
    unrelated = [
        (i, j) for i, j in itertools.combinations(range(len(names)), 2)
        if family.get(names[i], names[i]) != family.get(names[j], names[j])
        and names[i] not in excluded and names[j] not in excluded
    ]
    return planted, unrelated


def separation(vectors: dict[str, np.ndarray], planted: list[tuple[str, str, str]],
               unrelated: list[tuple[int, int]], names: list[str]) -> tuple[list[float], dict[str, float]]:
    matrix = np.stack([vectors[n] for n in names])
    sims = [float(vectors[a] @ vectors[b]) for a, b, _ in planted]
    i, j = np.array(unrelated).T
    other = cosine_rows(matrix[i], matrix[j])
    return sims, {
        "planted min": min(sims), "planted mean": float(np.mean(sims)), "unrelated max": float(other.max()),
        f"planted > {THRESHOLD}": float(np.mean(np.array(sims) > THRESHOLD)),
        f"unrelated > {THRESHOLD}": float((other > THRESHOLD).sum()), "margin": min(sims) - float(other.max()),
    }


def embed_all(spec: ModelSpec, images: list[Image.Image], threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    embedder = Embedder(spec, threads)
    parts = [embedder.run([embedder.prepare(im) for im in images[k : k + BATCH]])
             for k in range(0, len(images), BATCH)]
    logits = [p[1] for p in parts if p[1] is not None]
    return np.concatenate([p[0] for p in parts]), (np.concatenate(logits) if logits else np.empty(0))


def agreement(label: str, fp32: tuple[np.ndarray, np.ndarray], int8: tuple[np.ndarray, np.ndarray]) -> None:
    cos = cosine_rows(fp32[0], int8[0])
    top_fp32, top_int8 = fp32[1].argmax(1), int8[1].argmax(1)
    z = fp32[1] - fp32[1].max(1, keepdims=True)
    confident = (np.exp(z).max(1) / np.exp(z).sum(1)) >= 0.5
    print(f"{label}: fp32-int8 cosine mean {cos.mean():.4f} median {np.median(cos):.4f} min {cos.min():.4f} "
          f"(n={len(cos)}); top-1 agreement {np.mean(top_fp32 == top_int8):.3f}, "
          f"where fp32 p(top-1) >= 0.5: {np.mean((top_fp32 == top_int8)[confident]):.3f} (n={confident.sum()})")


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    keys = list(next(iter(rows.values())))
    print(f"\n## {title}")
    print(f"{'model':<12}" + "".join(f"{k:>16}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<12}" + "".join(f"{row[k]:>16.4f}" for k in keys))


def demo_quality(folder: Path, specs: dict[str, ModelSpec], configs: dict[str, ModelConfig],
                 threads: int | None) -> None:
    demo = generate_demo(folder / "demo")
    truth = demo.ground_truth()
    vectors = {name: pipeline_vectors(demo.images, folder / f"work_{name}", cfg) for name, cfg in configs.items()}
    names = sorted(vectors["fp32 224"])
    planted, unrelated = demo_pairs(truth, names)
    results = {name: separation(v, planted, unrelated, names) for name, v in vectors.items()}
    print(f"\n## demo: {len(names)} images, {len(planted)} planted pairs, {len(unrelated)} unrelated pairs")
    print(f"{'planted pair':<58}" + "".join(f"{name:>10}" for name in results))
    for k, (a, b, kind) in enumerate(planted):
        print(f"{Path(a).name + ' ~ ' + kind:<58}" + "".join(f"{sims[k]:>10.4f}" for sims, _ in results.values()))
    print_table("demo separation (run_pipeline)", {name: summary for name, (_, summary) in results.items()})
    fp32 = np.stack([vectors["fp32 224"][n] for n in names])
    int8 = np.stack([vectors["int8 224"][n] for n in names])
    cos = cosine_rows(fp32, int8)
    print(f"\npipeline fp32-int8 cosine: mean {cos.mean():.4f} min {cos.min():.4f} "
          f"({names[int(cos.argmin())]})")
    images = [Image.open(demo.images / n).convert("RGB") for n in names]
    agreement("demo (Embedder)", embed_all(specs["fp32 224"], images, threads),
              embed_all(specs["int8 224"], images, threads))


def augmented(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    buf = io.BytesIO()
    img.resize((w * 4 // 5, h * 4 // 5), Image.Resampling.LANCZOS).save(buf, "JPEG", quality=85)
    dx, dy = w // 40, h // 40
    return {
        "resized_jpeg": Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
        "cropped": img.crop((dx, dy, w - dx, h - dy)),
        "brighter": ImageEnhance.Brightness(img).enhance(1.1),
        "hflip": img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    }


def photo_quality(specs: dict[str, ModelSpec], threads: int | None) -> None:
    try:
        import skimage.data
    except ImportError:
        print("\n(scikit-image not installed: real-photo check skipped)")
        return
    images, owner, kinds = [], [], []
    for k, name in enumerate(PHOTOS):
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        for kind, img in {"original": photo, **augmented(photo)}.items():
            images.append(img)
            owner.append(k)
            kinds.append(kind)
    owner_arr = np.array(owner)
    outputs = {name: embed_all(spec, images, threads) for name, spec in specs.items()}
    rows = {}
    for name, (vecs, _) in outputs.items():
        sims = vecs @ vecs.T
        originals = [i for i, kind in enumerate(kinds) if kind == "original"]
        copies = [sims[i, j] for i in originals for j in range(len(images)) if owner[j] == owner[i] and j != i]
        unrelated = sims[owner_arr[:, None] != owner_arr[None, :]]
        rows[name] = {
            "copy min": float(min(copies)), "copy mean": float(np.mean(copies)),
            "unrelated max": float(unrelated.max()),
            f"copies > {THRESHOLD}": float(np.mean(np.array(copies) > THRESHOLD)),
            f"unrelated > {THRESHOLD}": float((unrelated > THRESHOLD).sum() / 2),
        }
    print_table(f"skimage photos: {len(PHOTOS)} photos x (original + 4 copies)", rows)
    print()
    agreement("photos", outputs["fp32 224"], outputs["int8 224"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_int8_") as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        default_model_path()
        started = time.perf_counter()
        int8 = int8_model_path()
        print(f"int8 model: {int8} ({int8.stat().st_size / 2**20:.1f} MiB; fp32 "
              f"{default_model_path().stat().st_size / 2**20:.1f} MiB), int8_model_path() took "
              f"{time.perf_counter() - started:.1f} s")
        dynamic = dynamic_size_copy(folder)
        specs = {
            "fp32 224": default_model_spec(),
            "int8 224": int8_model_spec(),
            "fp32 160": replace(default_model_spec(), path=str(dynamic), height=160, width=160),
        }
        configs = {
            "fp32 224": ModelConfig(),
            "int8 224": ModelConfig(model_path=str(int8), output_name="embedding", normalization="efficientnet"),
            "fp32 160": ModelConfig(model_path=str(dynamic), output_name="embedding", normalization="efficientnet",
                                    input_size=(160, 160)),
        }
        speed(specs, args.rounds, args.seconds, args.threads)
        demo_quality(folder, specs, configs, args.threads)
        photo_quality(specs, args.threads)


if __name__ == "__main__":
    main()
