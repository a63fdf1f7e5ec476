"""What a run keeps in memory: the modules it imports, and glibc's malloc arenas."""

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dup_pipeline.core.embed.choice import auto_model_spec
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
