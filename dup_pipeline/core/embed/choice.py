"""The default model, chosen per CPU by measurement: int8 where it agrees with fp32 and is faster.

At first use on a machine each int8 candidate (full 8-bit weights, then 7-bit weights) is run
next to the fp32 EfficientNet-Lite0 on :func:`probe_images` (8 generated drawings and textures
plus a resized JPEG copy of each). A candidate qualifies when

- the cosine between its embedding and fp32's is at least :data:`MIN_COSINE_MIN` on every probe
  image and :data:`MIN_COSINE_MEAN` on average,
- the similarity of each copy to its source moves by at most :data:`MAX_COPY_SHIFT` (what
  decides whether a near-duplicate is listed), and its top-1 class is fp32's wherever fp32 is
  confident (probability >= :data:`CONFIDENT`),
- the model alone is at least :data:`MIN_SPEEDUP` times as fast (alternating runs of the probe
  batch, median of per-round ratios, so machine load hits both alike).

Measured on a 2-core AVX-512 VNNI Xeon: full 8-bit weights cosine 0.988..0.997 (mean 0.993), copy
similarity moved <= 0.016, 1.65x; 7-bit weights cosine 0.84..0.99 (mean 0.962), moved up to 0.16
(7-bit weights on an AVX2-only CPU: mean 0.976, lower near-copy separation). The thresholds take
the first and reject the others. The first qualifying candidate runs, else fp32. The decision is
kept in the model cache folder as JSON named after the CPU (flags and model name), the model
files and the onnxruntime version; a lock makes concurrent processes measure only once.
"""

import fcntl
import hashlib
import io
import json
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from dup_pipeline.core.atomic import write_json
from dup_pipeline.core.demo import CLASSES, draw_class_image
from dup_pipeline.core.embed import effnet_lite0
from dup_pipeline.core.embed.model import (
    AUTO_MODEL,
    FP32_MODEL,
    INT8_FULL_MODEL,
    INT8_MODEL,
    Embedder,
    ModelSpec,
    default_model_spec,
)
from dup_pipeline.core.embed.quantized import _dead_leaves, _pink_noise, int8_model_name, int8_model_spec
from dup_pipeline.core.errors import ModelError
from dup_pipeline.core.memory import release_free_memory

CHOICE_VERSION = 2  # bump when the probe images, preprocessing, measures or thresholds change (2: centre crop)
MIN_COSINE_MIN = 0.96
MIN_COSINE_MEAN = 0.98
MAX_COPY_SHIFT = 0.03
CONFIDENT = 0.3
MIN_SPEEDUP = 1.25
ROUNDS = 5
PROBE_BATCH = 8  # images per model call, as a run feeds them (16 at once: twice the activation memory)
CANDIDATES = ((INT8_FULL_MODEL, False), (INT8_MODEL, True))  # (name, reduce_range), in order of preference
_PROBE_SEED = 7


def probe_images() -> list[Image.Image]:
    """8 deterministic images (the demo's drawings, dead leaves, 1/f noise) then a copy of each
    (resized to 80% and saved as JPEG quality 80): copy ``i + 8`` belongs to image ``i``."""
    rng = np.random.default_rng(_PROBE_SEED)
    base = [draw_class_image(c, rng) for c in (*CLASSES, *CLASSES[:2])]
    base += [_dead_leaves(rng), _pink_noise(rng)]
    copies = []
    for img in base:
        buf = io.BytesIO()
        smaller = img.resize((img.width * 4 // 5, img.height * 4 // 5), Image.Resampling.LANCZOS)
        smaller.save(buf, "JPEG", quality=80)
        copies.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return base + copies


@dataclass(frozen=True)
class Agreement:
    """How a candidate model compares with fp32 on the probe images."""

    cosine_min: float
    cosine_mean: float
    copy_shift: float  # largest change of a copy's similarity to its source
    top1_agree: bool  # same top-1 class wherever fp32 is confident
    speedup: float  # fp32 time / candidate time, model alone

    @property
    def qualifies(self) -> bool:
        return (self.cosine_min >= MIN_COSINE_MIN and self.cosine_mean >= MIN_COSINE_MEAN
                and self.copy_shift <= MAX_COPY_SHIFT and self.top1_agree and self.speedup >= MIN_SPEEDUP)

    def summary(self) -> str:
        """E.g. ``agreement 0.993 (min 0.988), 1.65x``."""
        return f"agreement {self.cosine_mean:.3f} (min {self.cosine_min:.3f}), {self.speedup:.2f}x"


def _copy_similarities(vectors: np.ndarray) -> np.ndarray:
    half = len(vectors) // 2
    return np.einsum("ij,ij->i", vectors[:half], vectors[half:])


def _embed(embedder: Embedder, prepared: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """``embedder.run`` :data:`PROBE_BATCH` images at a time; the outputs joined."""
    parts = [embedder.run(prepared[s:s + PROBE_BATCH]) for s in range(0, len(prepared), PROBE_BATCH)]
    logits = [p[1] for p in parts]
    return np.concatenate([p[0] for p in parts]), None if logits[0] is None else np.concatenate(logits)


def measure(fp32: ModelSpec, candidate: ModelSpec, rounds: int = ROUNDS) -> Agreement:
    """Compare ``candidate`` with ``fp32`` on :func:`probe_images` (see the module's doc)."""
    reference, other = Embedder(fp32), Embedder(candidate)
    images = probe_images()
    prepared_ref = [reference.prepare(im) for im in images]
    prepared = [other.prepare(im) for im in images]
    vec_ref, logits_ref = _embed(reference, prepared_ref)
    vec, logits = _embed(other, prepared)
    cosine = np.einsum("ij,ij->i", vec_ref, vec)
    shift = np.abs(_copy_similarities(vec_ref) - _copy_similarities(vec))
    top1 = True
    if logits_ref is not None and logits is not None:
        probs = np.exp(logits_ref - logits_ref.max(axis=1, keepdims=True))
        confident = (probs / probs.sum(axis=1, keepdims=True)).max(axis=1) >= CONFIDENT
        top1 = bool((logits_ref.argmax(1) == logits.argmax(1))[confident].all())
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        _embed(reference, prepared_ref)
        middle = time.perf_counter()
        _embed(other, prepared)
        ratios.append((middle - start) / max(time.perf_counter() - middle, 1e-9))
    return Agreement(float(cosine.min()), float(cosine.mean()), float(shift.max()), top1,
                     float(statistics.median(ratios)))


def cpu_identity() -> dict[str, str]:
    """The CPU's model name and instruction-set flags (what int8 speed and exactness depend on)."""
    fields = {"machine": platform.machine(), "processor": platform.processor()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features", "CPU implementer", "CPU part") and key not in fields:
            fields[key] = " ".join(sorted(value.split())) if key in ("flags", "Features") else value.strip()
    return fields


def decision_path(fp32: ModelSpec) -> Path:
    """The cached decision for this CPU, these model files and this onnxruntime."""
    fp32_file = Path(fp32.path)
    key = json.dumps({"cpu": cpu_identity(), "fp32": fp32_file.name, "version": CHOICE_VERSION,
                      "onnxruntime": ort.__version__,
                      "candidates": [int8_model_name(fp32_file, reduce) for _, reduce in CANDIDATES]},
                     sort_keys=True)
    return fp32_file.parent / f"model-choice-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}.json"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock next to ``path`` (one process measures; the others wait and read)."""
    try:
        handle = open(path.with_suffix(".lock"), "a")
    except OSError as exc:
        raise ModelError(f"cannot write to the model cache {str(path.parent)!r} ({exc}); "
                         f"set {effnet_lite0.CACHE_DIR_ENV} to a writable folder") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def _decide(fp32: ModelSpec) -> dict:
    measured = {}
    for name, reduce_range in CANDIDATES:
        agreement = measure(fp32, int8_model_spec(reduce_range))
        measured[name] = asdict(agreement)
        if agreement.qualifies:
            return {"model": name, "reason": agreement.summary(), "measured": measured}
    worst = ", ".join(f"{name} {Agreement(**m).summary()}" for name, m in measured.items())
    return {"model": FP32_MODEL, "reason": f"int8 below thresholds: {worst}", "measured": measured}


def _read(path: Path) -> dict | None:
    try:
        decision = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(decision, dict) and decision.get("model") in (FP32_MODEL, *dict(CANDIDATES))
    return decision if ok else None


def auto_model_spec() -> ModelSpec:
    """The built-in model this CPU runs best (measured once, then read from the cache); its
    ``description`` says which and why, e.g. ``efficientnet_lite0_int8_full (auto: agreement 0.993 …)``."""
    fp32 = default_model_spec()
    path = decision_path(fp32)
    decision = _read(path)
    if decision is None:
        with _locked(path):
            decision = _read(path)
            if decision is None:
                decision = _decide(fp32)
                write_json(decision, path)
                release_free_memory()  # the probe sessions' buffers, before the run loads its model
    name = decision["model"]
    spec = fp32 if name == FP32_MODEL else int8_model_spec(dict(CANDIDATES)[name])
    return replace(spec, description=f"{name} (auto: {decision['reason']})")


def _named(name: str, spec: ModelSpec) -> ModelSpec:
    return replace(spec, description=f"{name} (model_path)")


BUILT_IN_SPECS = {  # model_path name -> its spec (``auto`` measures on first use)
    AUTO_MODEL: auto_model_spec,
    FP32_MODEL: lambda: _named(FP32_MODEL, default_model_spec()),
    INT8_MODEL: lambda: _named(INT8_MODEL, int8_model_spec(reduce_range=True)),
    INT8_FULL_MODEL: lambda: _named(INT8_FULL_MODEL, int8_model_spec(reduce_range=False)),
}
