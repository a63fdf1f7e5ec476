import numpy as np
import onnx
import polars as pl
import pytest
from onnx import TensorProto, helper
from PIL import Image

from dup_pipeline.core.embed.crop import CropBox
from dup_pipeline.core.embed.model import ModelError, inspect_model
from dup_pipeline.core.features import load_binary, load_features
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import noise_image, save_image

DEFAULT_THRESHOLD = GraphConfig().threshold  # the calibrated default


def _similarities(demo_dataset, demo_run):
    features = load_features(WorkDir(demo_run.work_dir))
    root = str(demo_dataset.images) + "/"
    names = [f.removeprefix(root) for f in features.index["filename"]]
    matrix = np.asarray(features.matrix)
    return {n: i for i, n in enumerate(names)}, matrix @ matrix.T


def test_default_model_separates_planted_near_duplicates(demo_dataset, demo_run):
    truth = demo_dataset.ground_truth()
    pos, sims = _similarities(demo_dataset, demo_run)
    planted = truth["near_duplicates"] + truth["leakage"] + truth["exact_duplicates"]
    groups: dict[str, set[str]] = {}
    for original, copy, *_ in planted:
        groups.setdefault(original, {original}).add(copy)
        assert sims[pos[original], pos[copy]] >= DEFAULT_THRESHOLD, (original, copy)
    related = {(a, b) for g in groups.values() for a in g for b in g}
    names = list(pos)
    unrelated = [sims[pos[a], pos[b]] for i, a in enumerate(names) for b in names[i + 1:] if (a, b) not in related]
    assert max(unrelated) < DEFAULT_THRESHOLD


def test_feature_matrix_layout_and_load_binary(demo_run):
    work = WorkDir(demo_run.work_dir)
    features = load_features(work)
    assert features.matrix.shape == (demo_run.good, 1280)
    assert isinstance(features.matrix, np.memmap)
    assert np.allclose(np.linalg.norm(features.matrix, axis=1), 1.0, atol=1e-4)
    files, matrix = load_binary(work.features_dat)
    assert files == features.index["filename"].to_list()
    assert np.array_equal(matrix, np.asarray(features.matrix))
    bad = set(pl.read_parquet(work.bad_files_parquet)["index"].to_list())
    assert not bad & set(features.index["index"].to_list())
    assert features.index["top_label"].null_count() == 0


def _mean_color_model(path, layout: str = "NHWC", size: int = 32) -> None:
    """A tiny ONNX model whose embedding is the mean colour of its input."""
    shape = ["N", size, size, 3] if layout == "NHWC" else ["N", 3, size, size]
    axes = [1, 2] if layout == "NHWC" else [2, 3]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixels", "axes"], ["mean_color"], keepdims=0)],
        "mean_color",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("mean_color", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], axes)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_custom_nhwc_model_and_bounding_box(tmp_path):
    model = tmp_path / "mean_color.onnx"
    _mean_color_model(model)
    spec = inspect_model(model, normalization="raw")
    assert (spec.layout, spec.height, spec.width, spec.dim, spec.input_name) == ("NHWC", 32, 32, 3, "pixels")
    img = Image.new("RGB", (100, 60), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 50, 60))
    save_image(tmp_path / "images" / "half.png", img)
    save_image(tmp_path / "images" / "other.png", noise_image(1))
    config = PipelineConfig(tmp_path / "images", str(tmp_path / "work"),
                            model=ModelConfig(model_path=str(model), normalization="raw",
                                              bounding_box="row_y=0,col_x=0,height=60,width=50"))
    summary = run_pipeline(config)
    half = summary.features.index["filename"].to_list().index(str(tmp_path / "images" / "half.png"))
    assert np.allclose(summary.features.matrix[half], [1.0, 0.0, 0.0], atol=0.02)  # only the red half
    uncropped = run_pipeline(PipelineConfig(tmp_path / "images", str(tmp_path / "work2"),
                                            model=ModelConfig(model_path=str(model), normalization="raw")))
    assert np.allclose(uncropped.features.matrix[half], np.array([1.0, 0.0, 1.0]) / np.sqrt(2), atol=0.02)
    assert summary.features.index["top_class"].to_list() == [-1, -1]


def test_model_errors_are_clear(tmp_path):
    model = tmp_path / "m.onnx"
    _mean_color_model(model, layout="NCHW")
    assert inspect_model(model).layout == "NCHW"
    with pytest.raises(ModelError, match="output_name 'nope'.*outputs: \\['mean_color'\\]"):
        inspect_model(model, output_name="nope")
    with pytest.raises(ModelError, match="does not exist"):
        inspect_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        inspect_model(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="normalization"):
        inspect_model(model, normalization="weird")
    with pytest.raises(ValueError, match="bounding_box"):
        CropBox.parse("top=1")


def test_rerun_embeds_only_new_images(tmp_path):
    model = tmp_path / "m.onnx"
    _mean_color_model(model)
    images = tmp_path / "images"
    for i in range(5):
        save_image(images / f"{i}.png", noise_image(i))
    (images / "bad.png").write_bytes(b"")
    config = PipelineConfig(images, str(tmp_path / "work"), range_size=4,
                            model=ModelConfig(model_path=str(model), normalization="raw"))
    assert run_pipeline(config).embedded == 5
    assert run_pipeline(config).embedded == 0
    save_image(images / "new.png", noise_image(50))
    third = run_pipeline(config)
    assert third.embedded == 1 and third.features.matrix.shape == (6, 3)
    assert {r.key: r.embedded for r in third.ranges} == {"0-3": 0, "4-7": 1}
