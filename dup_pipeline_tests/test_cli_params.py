"""Bad model and faiss parameters end with exit 2 naming the parameter, before any work."""

import pytest
from click.testing import CliRunner

from dup_pipeline.cli import main
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import noise_image, save_image


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
