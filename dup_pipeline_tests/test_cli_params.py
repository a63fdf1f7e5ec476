"""Model and faiss parameters on the command line: bad values exit 2 naming the parameter, before any work."""

import pytest
from click.testing import CliRunner

from dup_pipeline.cli import main
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import noise_image, save_image
from dup_pipeline_tests.core.test_model import _model


@pytest.fixture()
def images(tmp_path):
    for i in range(3):
        save_image(tmp_path / "imgs" / f"{i}.png", noise_image(i))
    return tmp_path / "imgs"


@pytest.mark.parametrize("mode, param, message", [
    ("HNSW32", "efSearch=0", "faiss_param efSearch must be an integer in [1, 1000000]"),
    ("HNSW32", "efSearch=-1", "faiss_param efSearch must be an integer in [1, 1000000]"),
    ("HNSW32", "efSearch=nan", "faiss_param efSearch must be an integer in [1, 1000000]"),
    ("HNSW32", "efConstruction=0", "faiss_param efConstruction must be an integer in [1, 1000000]"),
    ("IVF4,Flat", "nprobe=0", "faiss_param nprobe must be an integer in [1, 2147483647]"),
])
def test_bad_faiss_param_exits_2_before_the_manifest(images, tmp_path, mode, param, message):
    work = tmp_path / "w"
    result = CliRunner().invoke(main, ["run", str(images), str(work), "--faiss-mode", mode, "--faiss-param", param])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not WorkDir(work).manifest.exists()


def test_input_size_option_runs_a_model_with_a_dynamic_input_size(images, tmp_path):
    model = tmp_path / "dynamic.onnx"
    _model(model, height="H", width="W")
    args = ["run", str(images), str(tmp_path / "w"), "--model-path", str(model), "--normalization", "raw", "--quiet"]
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code == 1 and "--input-size HEIGHT,WIDTH" in missing.output
    result = CliRunner().invoke(main, [*args, "--input-size", "24,32"])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(main, [*args, "--input-size", "24"])
    assert bad.exit_code == 2 and "input_size must be HEIGHT,WIDTH" in bad.output


def test_model_path_directory_and_too_many_threads(images, tmp_path):
    folder = CliRunner().invoke(main, ["run", str(images), str(tmp_path / "w"), "--model-path", str(tmp_path)])
    assert folder.exit_code == 1 and "is a directory, not an ONNX model file" in folder.output
    with pytest.warns(UserWarning, match="num_threads=10000 is more than this machine's"):
        many = CliRunner().invoke(main, ["run", str(images), str(tmp_path / "w2"), "--num-threads", "10000",
                                         "--stats-only", "--quiet"])
    assert many.exit_code == 0, many.output
