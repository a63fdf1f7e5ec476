"""ONNX models that are unusual but valid work; broken ones fail early with a message naming the problem."""

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from dup_pipeline.core.embed import effnet_lite0
from dup_pipeline.core.embed.model import Embedder, inspect_model
from dup_pipeline.core.config import Settings
from dup_pipeline.core.errors import ConfigError, ModelError
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline
from dup_pipeline.fastdup_compat.params import translate
from dup_pipeline_tests.conftest import noise_image, save_image


def _model(path, batch: int | str = "N", height: int | str = 16, width: int | str = 16, nodes=None) -> None:
    """A tiny NCHW model: the embedding is the per-channel mean, optionally passed through ``nodes``."""
    nodes = nodes or []
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixels", "axes"], ["mean" if nodes else "embedding"], keepdims=0), *nodes],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def _images(folder, count: int):
    for i in range(count):
        save_image(folder / f"{i:02d}.png", noise_image(i))
    return folder


@pytest.mark.parametrize("batch", [1, 5])
def test_fixed_batch_model_gets_batches_of_its_size(tmp_path, batch):
    model = tmp_path / "fixed.onnx"
    _model(model, batch=batch)
    spec = inspect_model(model, normalization="raw")
    assert spec.batch == batch and spec.dim == 3
    prepared = [np.full((16, 16, 3), float(i), np.float32) + np.arange(3, dtype=np.float32) for i in range(7)]
    vectors, _ = Embedder(spec).run(prepared)
    expected = np.array([[i, i + 1, i + 2] for i in range(7)], np.float32)
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    config = PipelineConfig(_images(tmp_path / "images", 40), str(tmp_path / "work"),
                            model=ModelConfig(model_path=str(model), normalization="raw"))
    summary = run_pipeline(config)  # 40 images in batches of 32: onnxruntime refused a batch of 32
    assert summary.embedded == 40 and summary.features.matrix.shape == (40, 3)


def test_dynamic_input_size_needs_input_size_which_exists(tmp_path):
    model = tmp_path / "dynamic.onnx"
    _model(model, height="H", width="W")
    with pytest.raises(ModelError, match=r"input size is dynamic.*input_size=\(height, width\).*--input-size"):
        inspect_model(model)
    assert (inspect_model(model, input_size=(20, 24)).height, inspect_model(model, input_size=(20, 24)).width) == (20, 24)
    config = ModelConfig(model_path=str(model), normalization="raw", input_size="20,24")
    assert config.input_size == (20, 24) and config.spec().width == 24
    for bad in ("20", "0,24", "a,b", (20, -1), (20.5, 24)):
        with pytest.raises(ValueError, match="input_size must be HEIGHT,WIDTH"):
            ModelConfig(model_path=str(model), input_size=bad)
    request = translate(_images(tmp_path / "images", 3), str(tmp_path / "work"),
                        {"model_path": str(model), "normalization": "raw", "input_size": "20,24"})  # fd.run's
    assert run_pipeline(request.config).features.matrix.shape == (3, 3)


def test_nan_model_fails_at_the_probe(tmp_path):
    model = tmp_path / "nan.onnx"
    _model(model, nodes=[helper.make_node("Log", ["neg"], ["embedding"]),
                         helper.make_node("Neg", ["mean"], ["neg"])])  # log of a negative number: NaN
    with pytest.raises(ModelError, match="contains NaN or inf for a random 16x16 test image"):
        inspect_model(model, normalization="raw")


def test_nan_embedding_names_the_first_image(tmp_path):
    """A model that is finite on the probe but NaN on some images (log of a channel mean below 0)."""
    model = tmp_path / "log.onnx"
    _model(model, nodes=[helper.make_node("Log", ["mean"], ["embedding"])])
    spec = inspect_model(model, normalization="raw")  # the random probe: channel means about 127, finite
    dark = [np.full((16, 16, 3), 0.5, np.float32), np.full((16, 16, 3), -0.5, np.float32)]
    with pytest.raises(ModelError, match="NaN or inf in the embedding of image 'b.png'"):
        Embedder(spec).run(dark, names=["a.png", "b.png"])
    with pytest.raises(ModelError, match="NaN or inf in the embedding of image number 1 of the batch"):
        Embedder(spec).run(dark)


def test_model_path_directory_is_named_a_directory(tmp_path):
    with pytest.raises(ModelError, match="is a directory, not an ONNX model file"):
        inspect_model(tmp_path)


def test_run_names_the_image_whose_embedding_is_not_finite(tmp_path):
    """log(channel mean): finite for the start-up probe and noise images, -inf for a black image."""
    model = tmp_path / "log.onnx"
    _model(model, nodes=[helper.make_node("Log", ["mean"], ["embedding"])])
    images = _images(tmp_path / "images", 5)
    save_image(images / "black.png", noise_image(0).point(lambda _: 0))
    config = PipelineConfig(images, str(tmp_path / "work"), model=ModelConfig(model_path=str(model), normalization="raw"))
    with pytest.raises(ModelError, match=f"NaN or inf in the embedding of image '{images / 'black.png'}'"):
        run_pipeline(config)


def test_built_in_model_cache_problems_are_model_errors(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(effnet_lite0.CACHE_DIR_ENV, str(tmp_path / "file" / "cache"))
    with pytest.raises(ModelError, match="cannot be written to .*set DUP_PIPELINE_CACHE_DIR to a writable folder"):
        effnet_lite0.default_model_path()
    monkeypatch.setenv(effnet_lite0.CACHE_DIR_ENV, str(tmp_path / "cache"))
    (tmp_path / "broken.pth").write_bytes(b"\x80\x02junk")
    monkeypatch.setattr(effnet_lite0, "checkpoint_path", lambda: tmp_path / "broken.pth")
    with pytest.raises(ModelError, match="weights .*broken.pth' cannot be read .*reinstall"):
        effnet_lite0.default_model_path()


def test_prepared_inputs_are_8_bit_and_normalized_by_run(tmp_path) -> None:
    _model(tmp_path / "tiny.onnx")
    spec = inspect_model(tmp_path / "tiny.onnx", normalization="mean=10,20,30;std=2,4,8")
    embedder = Embedder(spec)
    prepared = embedder.prepare(noise_image(3, (40, 24)))
    assert prepared.dtype == np.uint8 and prepared.shape == (16, 16, 3)  # a quarter of float32's bytes
    expected = (prepared.reshape(-1, 3).astype(np.float64).mean(axis=0) - [10, 20, 30]) / [2, 4, 8]
    vectors, _ = embedder.run([prepared])
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), rtol=1e-5)


def test_preprocess_crop_keeps_the_centre_squash_the_whole_image(tmp_path) -> None:
    _model(tmp_path / "tiny.onnx")
    spec = inspect_model(tmp_path / "tiny.onnx", normalization="raw")
    wide = np.zeros((16, 64, 3), dtype=np.uint8)
    wide[:, 24:40] = 200  # a bright centre between black ends
    image = Image.fromarray(wide)
    cropped = Embedder(spec).prepare(image)
    squashed = Embedder(replace(spec, preprocess="squash")).prepare(image)
    assert cropped.shape == squashed.shape == (16, 16, 3)
    assert cropped.min() == 200  # only the centre is fed
    assert squashed[:, 0].max() == 0 and squashed[:, 8].min() == 200  # the ends are kept, squeezed
    assert spec.preprocess == "crop" and spec.model_id != replace(spec, preprocess="squash").model_id


def test_preprocess_setting_reaches_the_spec_and_is_checked(tmp_path) -> None:
    _model(tmp_path / "tiny.onnx")
    config = ModelConfig(model_path=str(tmp_path / "tiny.onnx"), normalization="raw", preprocess="squash")
    assert config.spec().preprocess == "squash"
    with pytest.raises(ConfigError, match="preprocess must be one of crop, squash, got 'pad'"):
        Settings(preprocess="pad")
    with pytest.raises(ConfigError, match="preprocess must be one of crop, squash, got 'pad'"):
        ModelConfig(preprocess="pad")


def test_a_changed_preprocess_changes_the_features_tag() -> None:
    """Stored vectors made with another preprocessing are stale: the range is embedded again."""
    decode = DecodeSettings()
    crop = ModelConfig(model_path="efficientnet_lite0").features_tag(decode)
    assert crop != ModelConfig(model_path="efficientnet_lite0", preprocess="squash").features_tag(decode)
    assert crop == ModelConfig(model_path="efficientnet_lite0", preprocess="crop").features_tag(decode)
