"""A run killed by SIGKILL at every atomic write, then resumed, ends with a clean run's outputs.

The run under test (the whole pipeline with its report, at the command line's defaults) has
changed, added and deleted images (and a bad file) in its offset ranges, so every kind of range
rewrite is interrupted. A child process counts the os.replace calls (every
atomic write ends in one) and SIGKILLs itself just before the Nth, for every N of the run; the
children are forked from a server that has imported the pipeline once, to keep the test short.
"""

import json
import multiprocessing
import os
import re
import shutil
import signal
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline
from dup_pipeline_tests.conftest import save_image
from dup_pipeline_tests.core.test_features import _mean_color_model


def _run_killed_at(kill_at: int, tmp: str) -> None:
    """The run under test, SIGKILLed just before its ``kill_at``-th os.replace (in a child process)."""
    calls, real_replace = [], os.replace

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    os.replace = replace
    run_pipeline(fault_config(tmp))


def fault_config(tmp: str) -> PipelineConfig:
    """The run under test (also built by the killed child process)."""
    tmp_path = Path(tmp)
    model = ModelConfig(model_path=str(tmp_path / "m.onnx"), normalization="raw")
    return PipelineConfig(tmp_path / "images", str(tmp_path / "work"), range_size=4, num_threads=1,
                          model=model)


def _image(folder: Path, name: str, color: tuple[int, int, int]) -> None:
    save_image(folder / name, Image.new("RGB", (48, 32), color))


# The audit history (one record per run, named by its time; "new"/"resolved" since the previous
# record; audit_summary.md) differs after a kill that lets the killed run store its record: the
# audit's current findings and counts (audits/latest.json without new_*/resolved_*) must not.
AUDIT_HISTORY = re.compile(r"audit_summary\.md|audits/\d{4}-\d\d-\d\dT\d+\.\d+Z\.json")
REPORT_TIME = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d")  # when the report pages were generated


def _audit_now(data: bytes) -> bytes:
    record = json.loads(data)
    metrics = {k: v for k, v in record["metrics"].items() if not k.startswith(("new_", "resolved_"))}
    return json.dumps({"findings": record["findings"], "metrics": metrics}, sort_keys=True).encode()


def _outputs(work: Path) -> dict[str, bytes]:
    """Every file of the work_dir, byte for byte, but for the audit history and the report's time
    (see above)."""
    found = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        name, data = str(path.relative_to(work)), path.read_bytes()
        if name == "audits/latest.json":
            found[name] = _audit_now(data)
        elif name.endswith(".html"):
            found[name] = REPORT_TIME.sub(b"<time>", data)
        elif not AUDIT_HISTORY.fullmatch(name):
            found[name] = data
    return found


def _around_difference(got: bytes, expected: bytes) -> tuple[bytes, bytes]:
    at = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), min(len(got), len(expected)))
    return got[max(0, at - 100):at + 60], expected[max(0, at - 100):at + 60]


def _changed_folder(tmp_path: Path) -> None:
    """A first run's work_dir in ``snapshot``, then images changed, added and deleted. Ranges of 4:
    0-3 gets a changed and a deleted image, 4-7 is unchanged, 8-11 loses an image before a kept one
    and gains another (the same number of rows: the case where row counts cannot tell old from new)."""
    images = tmp_path / "images"
    colors = [(200, 30, 30), (198, 32, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200),
              (120, 60, 200), (60, 120, 30), (90, 90, 90), (250, 120, 10)]
    for i, color in enumerate(colors):
        _image(images, f"{i}.png", color)
    (images / "9z_broken.png").write_bytes(b"not a png")
    run_pipeline(fault_config(str(tmp_path)))
    shutil.copytree(tmp_path / "work", tmp_path / "snapshot")
    _image(images, "2.png", (31, 199, 31))  # changed (same name, new bytes)
    (images / "3.png").unlink()  # deleted
    (images / "8.png").unlink()  # deleted, before 9.png in its range
    _image(images, "9a.png", (30, 202, 198))  # added: a near-copy of 5.png


@pytest.mark.slow
def test_kill_at_every_atomic_write_then_resume_gives_the_clean_outputs(tmp_path, monkeypatch):
    _mean_color_model(tmp_path / "m.onnx")
    _changed_folder(tmp_path)
    work, config = tmp_path / "work", fault_config(str(tmp_path))
    shutil.rmtree(work)
    shutil.copytree(tmp_path / "snapshot", work)
    targets, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (targets.append(dst), real_replace(src, dst)))
    clean = run_pipeline(config)
    monkeypatch.setattr(os, "replace", real_replace)
    expected = _outputs(work)
    assert clean.decoded == 4 and clean.bad_reasons == {"missing": 2, "not_an_image": 1}
    assert {Path(t).parent.name for t in targets if Path(t).parent.parent.name == "ranges"} == {"0-3", "8-11"}
    pairs = pl.read_parquet(work / "similarity.parquet")
    names = {(Path(a).name, Path(b).name) for a, b in pairs.select("filename_from", "filename_to").rows()}
    assert names >= {("0.png", "1.png"), ("5.png", "9a.png")}

    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload([__name__])
    for kill_at in range(1, len(targets) + 1):
        shutil.rmtree(work)
        shutil.copytree(tmp_path / "snapshot", work)
        killed = forkserver.Process(target=_run_killed_at, args=(kill_at, str(tmp_path)))
        killed.start()
        killed.join(timeout=120)
        if killed.is_alive():
            killed.kill()  # hung: fails below
        assert killed.exitcode == -signal.SIGKILL, kill_at
        run_pipeline(config)
        resumed = _outputs(work)
        assert resumed.keys() == expected.keys(), (kill_at, targets[kill_at - 1])
        for name, data in expected.items():
            assert resumed[name] == data, (kill_at, targets[kill_at - 1], name,
                                           _around_difference(resumed[name], data))
    print(f"kill points covered: {len(targets)}")
