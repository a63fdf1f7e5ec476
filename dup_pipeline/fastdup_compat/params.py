"""Translate fastdup's ``run`` parameters into a :class:`PipelineConfig` and a run mode."""

import logging
from dataclasses import dataclass
from typing import Any

import onnxruntime as ort

from dup_pipeline.core.embed.model import DEFAULT_MODEL
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.inputs import InputSpec, discover_files
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, check_run_mode
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.similarity import GraphConfig

log = logging.getLogger("dup_pipeline")

TURI_KEYS = {
    "nnmodel": "0 only (faiss search)",
    "ccthreshold": "edge threshold of connected components",
    "run_cc": "0/1", "run_pagerank": "0/1", "run_degree": "0/1",
    "run_stats": "0/1 (statistics are always computed)", "run_stats_only": "0/1",
    "min_input_image_height": "pixels", "min_input_image_width": "pixels",
    "run_sentry": "ignored: dup_pipeline never sends telemetry", "store_int": "ignored: ids are always integers",
    "num_onnx_intra_threads": "ignored: onnxruntime uses every core", "global_log_error_level": "ignored",
}
ACCEPTED = (
    "input_dir", "work_dir", "test_dir", "compute", "verbose", "num_threads", "num_images", "turi_param",
    "distance", "threshold", "lower_threshold", "outlier_percentile", "model_path", "license", "version",
    "nearest_neighbors_k", "d", "run_mode", "nn_provider", "min_offset", "max_offset", "faiss_mode", "faiss_param",
    "nnf_mode", "nnf_param", "bounding_box", "batch_size", "resume", "high_accuracy", "ccthreshold", "cc_threshold",
    "run_cc", "run_pagerank", "run_degree", "run_stats_only", "overwrite", "annotations", "model_output",
    "normalization", "range_size", "labels_from_folders", "run_sentry", "data_type", "print_summary", "input_size",
)


def parse_turi_param(text: str) -> dict[str, str]:
    """``'nnmodel=0,ccthreshold=0.9,run_cc=1'`` → dict; unknown keys raise naming the allowed ones."""
    values: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").replace(":", "=").split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or key not in TURI_KEYS:
            allowed = ", ".join(f"{k} ({v})" for k, v in TURI_KEYS.items())
            raise ConfigError(f"turi_param entry {part!r} is not supported; allowed keys: {allowed}")
        values[key] = value
    if values.get("nnmodel", "0") != "0":
        raise ConfigError("turi_param nnmodel must be 0 (faiss nearest-neighbour search)")
    return values


def _number(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    """``kind(value)``, or a ValueError naming the parameter and what it accepts."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {value!r}") from None


def _int(name: str, value: Any) -> int:
    return _number(name, value, int)


def _float(name: str, value: Any) -> float:
    return _number(name, value, float)


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class RunRequest:
    """A fastdup ``run`` call, translated."""

    config: PipelineConfig
    run_mode: int
    test_input: InputSpec | None
    features: bool
    min_offset: int
    max_offset: int | None
    train_first: bool = False  # test_dir with run mode 0: analyse the training set, then the test set


def translate(input_dir: InputSpec, work_dir: str, kwargs: dict[str, Any]) -> RunRequest:
    """Validate fastdup's parameters (clear errors naming each) and build the request."""
    unknown = sorted(set(kwargs) - set(ACCEPTED))
    if unknown:
        raise ConfigError(f"unknown fastdup parameter(s) {unknown}; supported: {', '.join(ACCEPTED)}")
    turi = parse_turi_param(kwargs.get("turi_param", ""))
    compute = kwargs.get("compute", "cpu")
    if compute not in ("cpu", "gpu"):
        raise ConfigError(f"compute must be 'cpu' or 'gpu', got {compute!r}")
    if compute == "gpu" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ConfigError("compute='gpu' needs onnxruntime-gpu with a CUDA device; available providers: "
                         f"{ort.get_available_providers()} (use compute='cpu')")
    if kwargs.get("nn_provider", "nnf") not in ("nnf", "faiss"):
        raise ConfigError(f"nn_provider must be 'nnf' or 'faiss' (both mean faiss), got {kwargs['nn_provider']!r}")
    if kwargs.get("high_accuracy"):
        raise ConfigError("high_accuracy=True selects fastdup's closed model; pass model_path=<your ONNX model>")
    num_images = _int("num_images", kwargs.get("num_images") or 0)
    if num_images < 0 and num_images != -1:
        raise ConfigError(f"num_images must be -1/0 (all) or a positive count, got {num_images}")
    source = input_dir
    if num_images > 0:
        source = discover_files(input_dir)[:num_images]
    min_side = min(_int("min_input_image_height", turi.get("min_input_image_height", 10)),
                   _int("min_input_image_width", turi.get("min_input_image_width", 10)))
    ccthreshold = kwargs.get("ccthreshold", kwargs.get("cc_threshold", turi.get("ccthreshold", 0.9)))
    threads = kwargs.get("num_threads")
    model_path = kwargs.get("model_path") or DEFAULT_MODEL
    config = PipelineConfig(
        input=source,
        work_dir=str(work_dir),
        range_size=_int("range_size", kwargs.get("range_size", 10_000)),
        num_threads=-1 if threads in (None, -1) else _int("num_threads", threads),
        decode=DecodeSettings(min_side=min_side),
        model=ModelConfig(
            model_path=model_path, output_name=kwargs.get("model_output"),
            normalization=kwargs.get("normalization"), input_size=kwargs.get("input_size"),
            bounding_box=kwargs.get("bounding_box") or None,
            batch_size=_int("batch_size", kwargs.get("batch_size") or 32), compute=compute,
        ),
        graph=GraphConfig(
            faiss_mode=kwargs.get("faiss_mode") or kwargs.get("nnf_mode") or "HNSW32",
            faiss_param=(kwargs.get("faiss_param") or kwargs.get("nnf_param") or "").replace("nprobes=", "nprobe="),
            distance=kwargs.get("distance", "cosine"),
            nearest_neighbors_k=_int("nearest_neighbors_k", kwargs.get("nearest_neighbors_k", 10)),
            threshold=_float("threshold", kwargs.get("threshold", 0.9)),
            ccthreshold=_float("ccthreshold", ccthreshold),
            lower_threshold=_float("lower_threshold",
                                   kwargs.get("lower_threshold", kwargs.get("outlier_percentile", 0.05))),
            run_cc=_flag(kwargs.get("run_cc", turi.get("run_cc", 1))),
            run_pagerank=_flag(kwargs.get("run_pagerank", turi.get("run_pagerank", 1))),
            run_degree=_flag(kwargs.get("run_degree", turi.get("run_degree", 1))),
        ),
        labels=kwargs.get("annotations"),
        labels_from_folders=bool(kwargs.get("labels_from_folders", False)),
        report=False,  # like fastdup, pages are drawn on request: fd.vis.*_gallery(), fd.vis.report()
    )
    run_mode = check_run_mode(_int("run_mode", kwargs.get("run_mode", 0)))
    test_dir = kwargs.get("test_dir") or None
    train_first = bool(test_dir) and run_mode == 0
    if train_first:
        run_mode = 3
    stats_only = _flag(kwargs.get("run_stats_only", turi.get("run_stats_only", 0)))
    max_offset = _int("max_offset", kwargs.get("max_offset") or 0)
    return RunRequest(config, run_mode, test_dir, not stats_only, _int("min_offset", kwargs.get("min_offset") or 0),
                      max_offset if max_offset > 0 else None, train_first)
