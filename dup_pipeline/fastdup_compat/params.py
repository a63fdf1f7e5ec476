"""Translate fastdup's ``run`` parameters into a :class:`PipelineConfig` and a run mode."""

import logging
from dataclasses import dataclass, replace
from typing import Any

import onnxruntime as ort

from dup_pipeline.core.config import SETTINGS_FIELDS, Settings, fastdup_names
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.inputs import InputSpec, discover_files
from dup_pipeline.core.pipeline import PipelineConfig, check_run_mode

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
FASTDUP_ONLY = (  # fd.run keywords that are not run settings (or are accepted and ignored)
    "input_dir", "work_dir", "test_dir", "verbose", "num_images", "turi_param", "license", "version", "d",
    "run_mode", "nn_provider", "min_offset", "max_offset", "resume", "high_accuracy", "run_stats_only",
    "overwrite", "data_type", "print_summary", "run_sentry",
)
# every Settings field under its own and fastdup's names, except ``labels``: fd.run takes ``annotations``
SETTING_NAMES = {name: field for name, field in fastdup_names().items() if name != "labels"}
ACCEPTED = FASTDUP_ONLY + tuple(SETTING_NAMES)
TURI_SETTINGS = ("ccthreshold", "run_cc", "run_pagerank", "run_degree")  # turi_param keys that are settings
EMPTY_IS_DEFAULT = ("model_path", "batch_size", "faiss_mode", "faiss_param", "bounding_box")
FIELD_TYPES = {f.name: f.type for f in SETTINGS_FIELDS}


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


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


def _value(name: str, field: str, value: Any) -> Any:
    """``value`` of keyword ``name`` as the type of Settings' ``field`` (a bad one raises naming ``name``)."""
    kind = FIELD_TYPES[field]
    if kind is bool:
        return _flag(value)
    if kind in (int, float):
        return _number(name, value, kind)
    return value


def settings(kwargs: dict[str, Any], turi: dict[str, str]) -> Settings:
    """The settings fd.run's keywords (and turi_param) give; the others keep :class:`Settings`' defaults."""
    values = {key: _value(key, key, turi[key]) for key in TURI_SETTINGS if key in turi}
    sides = ("min_input_image_height", "min_input_image_width")
    if any(side in turi for side in sides):
        values["min_side"] = min(_int(side, turi.get(side, Settings.min_side)) for side in sides)
    if "num_threads" in kwargs and kwargs["num_threads"] is None:
        values["num_threads"] = -1  # fastdup's None: every core
    # keywords override turi_param; fastdup's aliases go first, so a field's own name wins when both are given
    for name in sorted((k for k in kwargs if k in SETTING_NAMES), key=lambda k: SETTING_NAMES[k] == k):
        field, value = SETTING_NAMES[name], kwargs[name]
        if value is None or (field in EMPTY_IS_DEFAULT and isinstance(value, str) and not value):
            continue
        values[field] = _value(name, field, value)
    if isinstance(values.get("faiss_param"), str):
        values["faiss_param"] = values["faiss_param"].replace("nprobes=", "nprobe=")
    return Settings(**values)


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
    # like fastdup, pages are drawn on request: fd.vis.*_gallery(), fd.vis.report()
    config = replace(settings(kwargs, turi).pipeline_config(source, str(work_dir)), report=False)
    run_mode = check_run_mode(_int("run_mode", kwargs.get("run_mode", 0)))
    test_dir = kwargs.get("test_dir") or None
    train_first = bool(test_dir) and run_mode == 0
    if train_first:
        run_mode = 3
    stats_only = _flag(kwargs.get("run_stats_only", turi.get("run_stats_only", 0)))
    max_offset = _int("max_offset", kwargs.get("max_offset") or 0)
    return RunRequest(config, run_mode, test_dir, not stats_only, _int("min_offset", kwargs.get("min_offset") or 0),
                      max_offset if max_offset > 0 else None, train_first)
