"""The one configuration object: every run parameter, flat, with fastdup's names and one default each.

The defaults are read from the component configurations that use them (``DecodeSettings``,
``ModelConfig``, ``GraphConfig``, ``PipelineConfig``), so each is stated once. The command line's
options (``cli.py``), the Dagster ``DatasetResource`` fields and fastdup's ``run`` keywords are
derived from or mapped to :class:`Settings`; :meth:`Settings.pipeline_config` builds (and
validates) what the core runs.
"""

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from dup_pipeline.core.embed.choice import BUILT_IN_SPECS, auto_model_spec
from dup_pipeline.core.embed.crop import CropBox
from dup_pipeline.core.embed.effnet_lite0 import imagenet_class_names
from dup_pipeline.core.embed.model import (
    DEFAULT_MODEL,
    DEFAULT_PREPROCESS,
    PREPROCESS,
    Embedder,
    ModelSpec,
    inspect_model,
    parse_input_size,
)
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.image_issues import ISSUES, issue_thresholds
from dup_pipeline.core.inputs import InputSpec
from dup_pipeline.core.label_issues import LabelConfig
from dup_pipeline.core.range_scan import FeatureSettings, features_tag
from dup_pipeline.core.ranges import DEFAULT_RANGE_SIZE, check_range_size
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.similarity import DISTANCES, GraphConfig
from dup_pipeline.core.sources.catalog import SourceSettings
from dup_pipeline.core.threads import resolve_threads

COMPUTE = ("cpu", "gpu")
BUILT_IN_MODELS = {None: auto_model_spec, "": auto_model_spec, **BUILT_IN_SPECS}


@dataclass(frozen=True)
class ModelConfig:
    """Which model embeds the images: ``auto`` (default: EfficientNet-Lite0 fp32 or int8, chosen per
    CPU by measurement, see ``embed/choice.py``), a built-in by name (``efficientnet_lite0``,
    ``efficientnet_lite0_int8``, ``efficientnet_lite0_int8_full``) or any ONNX image model file."""

    model_path: str | None = DEFAULT_MODEL
    output_name: str | None = None
    normalization: str | None = None
    input_size: tuple[int, int] | None = None
    bounding_box: str | None = None
    batch_size: int = 8  # as fast as 32 on CPU, a quarter of onnxruntime's activation memory
    compute: str = "cpu"
    preprocess: str = DEFAULT_PREPROCESS

    def __post_init__(self) -> None:
        if self.compute not in COMPUTE:
            raise ConfigError(f"compute must be one of {', '.join(COMPUTE)}, got {self.compute!r}")
        if self.preprocess not in PREPROCESS:
            raise ConfigError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {self.preprocess!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.bounding_box:
            CropBox.parse(self.bounding_box)
        if self.input_size is not None:
            object.__setattr__(self, "input_size", parse_input_size(self.input_size))

    def spec(self) -> ModelSpec:
        """The model to run: a built-in name (converted and cached on first use) or an ONNX file, fed
        as ``preprocess`` says."""
        if self.model_path in BUILT_IN_MODELS:
            if self.output_name or self.normalization or self.input_size:
                raise ConfigError(f"model_output, normalization and input_size apply to an ONNX model file, not to the "
                                 f"built-in model {self.model_path!r}")
            spec = BUILT_IN_MODELS[self.model_path]()
        else:
            spec = inspect_model(self.model_path, self.output_name, self.normalization or "imagenet", self.input_size)
        return replace(spec, preprocess=self.preprocess)

    def features_tag(self, decode: DecodeSettings) -> str:
        """What a range's embeddings depend on (to tell stale ranges without loading the model)."""
        return features_tag(self.spec(), CropBox.parse(self.bounding_box) if self.bounding_box else None, decode)

    def feature_settings(self, num_threads: int | None = None) -> FeatureSettings:
        """Load the model; the crop and batch size come along."""
        crop = CropBox.parse(self.bounding_box) if self.bounding_box else None
        return FeatureSettings(Embedder(self.spec(), num_threads, gpu=self.compute == "gpu"), crop, self.batch_size)

    @property
    def class_names(self) -> list[str] | None:
        return imagenet_class_names() if self.model_path in BUILT_IN_MODELS else None


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs; invalid values raise ``ConfigError`` naming the parameter."""

    input: InputSpec
    work_dir: str
    range_size: int = DEFAULT_RANGE_SIZE
    num_threads: int = -1
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    labels: Any = None
    labels_from_folders: bool = False
    label_config: LabelConfig = field(default_factory=LabelConfig)
    report: bool = True
    sources: SourceSettings = field(default_factory=SourceSettings)
    exclude_outliers: bool = False  # the clean list also drops outliers
    exclude_wrong_labels: bool = False  # the clean list also drops images whose label is likely wrong
    image_issue_thresholds: str = ""  # "name=value,..." overriding image_issues.ISSUES' thresholds

    def __post_init__(self) -> None:
        check_range_size(self.range_size)
        issue_thresholds(self.image_issue_thresholds)
        if not isinstance(self.num_threads, int) or self.num_threads == 0 or self.num_threads < -1:
            raise ConfigError(f"num_threads must be -1 (all cores) or a positive integer, got {self.num_threads!r}")

    @property
    def threads(self) -> int:
        return resolve_threads(self.num_threads)


def _default(owner: type, name: str) -> Any:
    """The default of ``owner.name`` (a dataclass field): the single place it is stated."""
    return next(f.default for f in dataclasses.fields(owner) if f.name == name)


def _option(owner: type, name: str, help: str, choices: tuple[str, ...] | None = None,
            fastdup: tuple[str, ...] = (), short: str | None = None) -> Any:
    """A settings field whose default is ``owner.name``'s; ``fastdup`` lists fastdup's other names."""
    return field(default=_default(owner, name),
                 metadata={"help": help, "choices": choices, "fastdup": fastdup, "short": short})


@dataclass(frozen=True)
class Settings:
    """Every parameter of a run except what to read (input) and where to write (work_dir)."""

    range_size: int = _option(PipelineConfig, "range_size", "Images per offset-range partition.")
    num_threads: int = _option(PipelineConfig, "num_threads", "Decoding threads; -1 uses every core.")
    min_side: int = _option(DecodeSettings, "min_side", "Images with a shorter side below this are bad (too_small).")
    max_pixels: int = _option(DecodeSettings, "max_pixels",
                              "Images with more pixels are bad (too_large, decompression-bomb guard).")
    model_path: str = _option(ModelConfig, "model_path", "auto (int8 where this CPU runs it faster "
                              "and as exact as fp32, measured once), efficientnet_lite0 (fp32), "
                              "efficientnet_lite0_int8, efficientnet_lite0_int8_full or an ONNX image model file.")
    model_output: str | None = _option(ModelConfig, "output_name", "Output of model_path that is the embedding.")
    normalization: str | None = _option(ModelConfig, "normalization",
                                        "Input normalization of an ONNX model_path: imagenet (default), "
                                        "efficientnet, unit, symmetric, raw or 'mean=R,G,B;std=R,G,B'.")
    input_size: str | None = _option(ModelConfig, "input_size", "HEIGHT,WIDTH fed to an ONNX model_path whose "
                                     "graph does not fix its input size (e.g. 224,224).")
    bounding_box: str | None = _option(ModelConfig, "bounding_box",
                                       "Crop before embedding: 'row_y=,col_x=,height=,width='.")
    batch_size: int = _option(ModelConfig, "batch_size", "Images per model call.")
    compute: str = _option(ModelConfig, "compute", "cpu, or gpu (needs onnxruntime-gpu).", choices=COMPUTE)
    preprocess: str = _option(ModelConfig, "preprocess", "How images reach the model's input size: crop (the "
                              "central 87.5% of the centred square window, the ImageNet evaluation crop) or "
                              "squash (the whole image resized, aspect ratio lost; as before features "
                              "version 4; suits panoramas).", choices=PREPROCESS)
    faiss_mode: str = _option(GraphConfig, "faiss_mode", "faiss.index_factory string (Flat = exact), or "
                              "auto: exact Flat below 120,000 images, else PCA256,IVF<4*sqrt(n)>,Flat "
                              "nprobe=32; approximate modes are re-ranked to exact similarities.",
                              fastdup=("nnf_mode",))
    faiss_param: str = _option(GraphConfig, "faiss_param", "faiss search parameters, e.g. 'efSearch=128' "
                               "(default efSearch=64 for HNSW, nprobe=16 for IVF, 32 for PCA..,IVF; with auto only "
                               "nprobe and max_codes, used when it picks the IVF).",
                               fastdup=("nnf_param",))
    distance: str = _option(GraphConfig, "distance", "Similarity measure.", choices=DISTANCES)
    nearest_neighbors_k: int = _option(GraphConfig, "nearest_neighbors_k", "Neighbours searched per image.",
                                       short="-k")
    threshold: float = _option(GraphConfig, "threshold", "Pairs at or above this similarity are listed.")
    ccthreshold: float = _option(GraphConfig, "ccthreshold", "Edges at or above this similarity join components.",
                                 fastdup=("cc_threshold",))
    lower_threshold: float = _option(GraphConfig, "lower_threshold",
                                     "Fraction of images with the weakest nearest neighbour reported as outliers.",
                                     fastdup=("outlier_percentile",))
    run_cc: bool = _option(GraphConfig, "run_cc", "Compute connected components.")
    run_pagerank: bool = _option(GraphConfig, "run_pagerank", "Compute the PageRank of each image.")
    run_degree: bool = _option(GraphConfig, "run_degree", "Compute the degree of each image.")
    labels: str | None = _option(PipelineConfig, "labels", "CSV with filename,label[,split] (names relative to "
                                 "the input or absolute): wrong labels and train/test leakage.",
                                 fastdup=("annotations",))
    labels_from_folders: bool = _option(PipelineConfig, "labels_from_folders",
                                        "Labels from folder names (train/cat/x.jpg: label cat, split train).")
    exclude_outliers: bool = _option(PipelineConfig, "exclude_outliers", "The clean list also drops outliers.")
    exclude_wrong_labels: bool = _option(PipelineConfig, "exclude_wrong_labels",
                                         "The clean list also drops images whose label is likely wrong.")
    image_issue_thresholds: str = _option(
        PipelineConfig, "image_issue_thresholds", "Image-issue thresholds 'name=value,...' over the defaults: "
        + ", ".join(f"{n}={s.threshold:g}" for n, s in ISSUES.items()) + ".")

    video_fps: float = _option(SourceSettings, "video_fps", "Video frames sampled per second of video (the "
                               "first frame of each 1/video_fps-second window).")
    read_concurrency: int = _option(SourceSettings, "read_concurrency",
                                    "Objects read at once from buckets and URLs.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")

    def pipeline_config(self, input: InputSpec, work_dir: str) -> PipelineConfig:
        """The core's configuration (validated: a bad value raises ``ConfigError`` naming it)."""
        return PipelineConfig(
            input=input, work_dir=str(work_dir), range_size=self.range_size, num_threads=self.num_threads,
            decode=DecodeSettings(max_pixels=self.max_pixels, min_side=self.min_side),
            model=ModelConfig(model_path=self.model_path, output_name=self.model_output,
                              normalization=self.normalization, input_size=self.input_size,
                              bounding_box=self.bounding_box, batch_size=self.batch_size, compute=self.compute,
                              preprocess=self.preprocess),
            graph=GraphConfig(faiss_mode=self.faiss_mode, faiss_param=self.faiss_param, distance=self.distance,
                              nearest_neighbors_k=self.nearest_neighbors_k, threshold=self.threshold,
                              ccthreshold=self.ccthreshold, lower_threshold=self.lower_threshold,
                              run_cc=self.run_cc, run_pagerank=self.run_pagerank, run_degree=self.run_degree),
            labels=self.labels, labels_from_folders=self.labels_from_folders,
            sources=SourceSettings(video_fps=self.video_fps, read_concurrency=self.read_concurrency),
            exclude_outliers=self.exclude_outliers, exclude_wrong_labels=self.exclude_wrong_labels,
            image_issue_thresholds=self.image_issue_thresholds,
        )


SETTINGS_FIELDS: tuple[dataclasses.Field, ...] = dataclasses.fields(Settings)


def fastdup_names() -> dict[str, str]:
    """fastdup's ``run`` keyword -> the :class:`Settings` field it sets (own names and fastdup's aliases)."""
    names = {f.name: f.name for f in SETTINGS_FIELDS}
    names.update({alias: f.name for f in SETTINGS_FIELDS for alias in f.metadata["fastdup"]})
    return names
