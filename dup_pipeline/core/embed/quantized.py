"""An int8 variant of the default EfficientNet-Lite0 model, quantized locally with onnxruntime.

:func:`int8_model_path` builds it once from the cached fp32 model with
``onnxruntime.quantization.quantize_static``: QDQ format, per-channel symmetric int8 weights
of reduced (7-bit) range, asymmetric uint8 activations, MinMax ranges. The reduced range keeps the
model exact on x86 CPUs without VNNI, whose u8×s8 kernels (VPMADDUBSW) saturate in int16 with
full 8-bit weights: on an AVX2-only CPU full range gave cosine to fp32 as low as 0.84, reduced
range 0.95 (onnxruntime's own advice for such CPUs). ``reduce_range=False`` builds the full 8-bit
variant, more exact where the CPU has int8 dot products (AVX-512 VNNI: cosine to fp32 0.988..0.997
on the auto choice's probe images, against 0.84..0.99 with reduced range). The classifier (``_fc``) stays fp32, so
``logits`` keep full precision at negligible cost; ``embedding`` comes from the int8 body.

Activation ranges are calibrated on :func:`calibration_images`, synthesized deterministically
at build time (no downloads, no data files). ``quant_pre_process`` is not used: on this graph
(batch norm already folded, static shapes) it leaves the quantized model unchanged.
"""

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dup_pipeline.core.demo import CLASSES, draw_class_image
from dup_pipeline.core.embed import effnet_lite0
from dup_pipeline.core.embed.model import ModelSpec, default_model_spec

__all__ = ["QUANTIZER_VERSION", "build_int8_model", "calibration_images", "int8_model_name", "int8_model_path",
           "int8_model_spec"]

#: Bump whenever the quantization recipe or the calibration images change (part of the file name).
QUANTIZER_VERSION = 2

_CALIBRATION_SEED = 20240611
_PER_CLASS = 8  # demo-style drawings per demo class
_PER_KIND = 16  # dead-leaves and 1/f-noise images each
_NATURAL_SIZE = 256
_BATCH = 8


def _dead_leaves(rng: np.random.Generator, size: int = _NATURAL_SIZE, discs: int = 400) -> Image.Image:
    """Occluding discs of random colours with radius density ~ r^-3: scale-invariant like photos."""
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    r_min, r_max = 2.0, size / 2
    for _ in range(discs):
        r = (r_min**-2 - rng.random() * (r_min**-2 - r_max**-2)) ** -0.5
        x, y = rng.uniform(-r, size + r, 2)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.5))))


def _pink_noise(rng: np.random.Generator, size: int = _NATURAL_SIZE) -> Image.Image:
    """Colour noise with a 1/f amplitude spectrum and correlated channels (natural image statistics)."""
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :])
    f[0, 0] = math.inf  # no DC term
    planes = [
        np.fft.irfft2((rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f, s=(size, size))
        for _ in range(3)
    ]
    mix = 0.5 + 0.6 * np.eye(3) + 0.4 * rng.normal(size=(3, 3))
    pixels = np.stack(planes, axis=-1) @ mix
    pixels = (pixels - pixels.mean()) / pixels.std() * rng.uniform(30, 60) + rng.uniform(80, 170)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def calibration_images() -> list[Image.Image]:
    """The 64 deterministic calibration images: demo drawings, dead leaves and 1/f noise."""
    rng = np.random.default_rng(_CALIBRATION_SEED)
    images = [draw_class_image(label, rng) for label in CLASSES for _ in range(_PER_CLASS)]
    images += [_dead_leaves(rng) for _ in range(_PER_KIND)]
    images += [_pink_noise(rng) for _ in range(_PER_KIND)]
    return images


class _Batches:
    """Feeds preprocessed calibration batches to the calibrator: a ``CalibrationDataReader`` by its
    ``get_next`` (the ABC's subclass hook), so onnxruntime.quantization and onnx (20 MiB) are imported
    only when a model is built."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._inputs = inputs
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._inputs):
            return None
        batch = self._inputs[self._next : self._next + _BATCH]
        self._next += _BATCH
        return {"images": batch}

    def rewind(self) -> None:
        self._next = 0


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextmanager
def _no_preprocess_hint() -> Iterator[None]:
    """Silence quantize_static's root-logger advice to run quant_pre_process (measured useless here)."""
    root, hint = logging.getLogger(), _DropPreprocessHint()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def build_int8_model(fp32_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
                     reduce_range: bool = True) -> None:
    """Quantize the fp32 EfficientNet-Lite0 at ``fp32_path`` into ``output_path`` (not atomic);
    ``reduce_range``: 7-bit weights (exact without VNNI) or full 8-bit weights."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = _Batches(effnet_lite0.preprocess(calibration_images()))
    with _no_preprocess_hint():
        quantize_static(
            str(fp32_path),
            str(output_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=["_fc"],
        )


def int8_model_name(fp32: Path, reduce_range: bool = True) -> str:
    """The cached int8 file's name: the fp32 file's sha256, the weight range and :data:`QUANTIZER_VERSION`."""
    kind = "int8" if reduce_range else "int8full"
    return f"efficientnet_lite0-{kind}-{effnet_lite0.sha256_prefix(fp32)}-v{QUANTIZER_VERSION}.onnx"


def int8_model_path(reduce_range: bool = True) -> Path:
    """Return the cached int8 model, building it (tens of seconds) on first use.

    It sits next to :func:`effnet_lite0.default_model_path` and is written to a temporary file
    in the same directory and renamed, so concurrent processes never see a partial model.
    """
    fp32 = effnet_lite0.default_model_path()
    target = fp32.parent / int8_model_name(fp32, reduce_range)
    if target.is_file():
        return target
    with effnet_lite0.cache_file(target) as tmp:
        build_int8_model(fp32, tmp, reduce_range)
    return target


def int8_model_spec(reduce_range: bool = True) -> ModelSpec:
    """:func:`default_model_spec` with an int8 model: same input, normalization and outputs."""
    return replace(default_model_spec(), path=str(int8_model_path(reduce_range)))
