"""What a run keeps in memory: the modules it imports, the model after the range scans, and glibc's malloc."""

import ctypes
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

import dup_pipeline.core.config as config_module
import dup_pipeline.core.pipeline as pipeline_module
from dup_pipeline.core.embed.choice import auto_model_spec
from dup_pipeline.core.embed.model import Embedder
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline_tests.conftest import noise_image, save_image

# Loaded only by the features that need them: Dagster and its webserver (the UI), onnx and
# onnxruntime.quantization (building the built-in models), cleanlab with scikit-learn and pandas
# (label issues: 135 MiB of a run's peak RSS).
HEAVY = ("dagster", "dagster_webserver", "onnx", "onnxruntime.quantization", "cleanlab", "sklearn", "pandas")
_REPORT = "import sys, json; print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"


def _python(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_cli_import_loads_no_heavy_optional_module() -> None:
    loaded = _python("import dup_pipeline.cli\n" + _REPORT.format(heavy=HEAVY))
    assert json.loads(loaded) == []


@pytest.mark.slow
def test_run_without_labels_loads_no_heavy_optional_module(tmp_path: Path) -> None:
    """A whole ``dup-pipeline run`` (model, index, report) without labels never imports them."""
    auto_model_spec()  # built and chosen here on a fresh cache (building imports onnx), so the run finds them
    for i in range(6):
        save_image(tmp_path / "images" / f"{i}.png", noise_image(i))
    code = ("from dup_pipeline.cli import main\n"
            f"main(['run', {str(tmp_path / 'images')!r}, {str(tmp_path / 'work')!r}, '--quiet'], "
            "standalone_mode=False)\n" + _REPORT.format(heavy=HEAVY))
    assert json.loads(_python(code)) == []
    assert (tmp_path / "work" / "report" / "index.html").exists()


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc(), reason="malloc arenas are glibc's")
def test_arena_limit_is_set_unless_the_user_set_one() -> None:
    code = "from dup_pipeline.core.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.split() == ["True"], done.stderr
    assert _python(code, {"MALLOC_ARENA_MAX": "4"}) == "False"


@pytest.mark.skipif(not _glibc(), reason="the mmap threshold is glibc's")
def test_mmap_threshold_is_fixed_unless_the_user_set_one() -> None:
    code = "from dup_pipeline.core.memory import fix_mmap_threshold; print(fix_mmap_threshold())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.split() == ["True"], done.stderr
    assert _python(code, {"MALLOC_MMAP_THRESHOLD_": "65536"}) == "False"


def test_model_is_released_before_the_stages_after_the_range_scans(tmp_path: Path, monkeypatch) -> None:
    """The onnxruntime session (model, arena) is gone once the features are written: the index,
    label and report stages never hold it."""
    made: list[weakref.ref] = []

    class Tracked(Embedder):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    alive_at_stages: list[int] = []

    def run_stages(ctx, names=None):
        alive_at_stages.append(sum(ref() is not None for ref in made))
        return real_run_stages(ctx, names)

    real_run_stages = pipeline_module.run_stages
    monkeypatch.setattr(config_module, "Embedder", Tracked)
    monkeypatch.setattr(pipeline_module, "run_stages", run_stages)
    for i in range(6):
        save_image(tmp_path / "images" / f"{i}.png", noise_image(i))
    summary = run_pipeline(PipelineConfig(str(tmp_path / "images"), str(tmp_path / "work"), report=False))
    assert summary.embedded == 6 and made
    assert alive_at_stages[-1] == 0  # the stages after the scans (features, index, similarity) start without it


def _rss_file_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("RssFile:"))) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssFile from Linux's /proc")
def test_released_matrix_pages_leave_the_resident_set_and_read_back_the_same(tmp_path: Path) -> None:
    import numpy as np

    from dup_pipeline.core.memory import release_mapped_pages

    values = np.random.default_rng(0).standard_normal((8192, 1280)).astype(np.float32)  # 40 MiB
    values.tofile(tmp_path / "features.dat")
    matrix = np.memmap(tmp_path / "features.dat", dtype=np.float32, mode="r", shape=values.shape)
    before = _rss_file_mib()
    total = float(matrix.sum(dtype=np.float64))  # every page read
    assert _rss_file_mib() - before > 30
    assert release_mapped_pages(matrix)
    assert _rss_file_mib() - before < 5
    assert float(matrix.sum(dtype=np.float64)) == total
    assert not release_mapped_pages(values)  # not file-mapped: nothing to release
