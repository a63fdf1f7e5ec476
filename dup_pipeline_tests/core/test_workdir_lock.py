"""The work_dir lock: one writing run at a time, a dead run's lock taken over (real processes)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from dup_pipeline.core.errors import WorkDirError
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline, update_manifest
from dup_pipeline.core.range_scan import scan_range
from dup_pipeline.core.ranges import OffsetRange
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import build_scan_assets, resource_key
from dup_pipeline_tests.conftest import noise_image, save_image

HOLDER = """
import sys
from dup_pipeline.core.workdir import WorkDir
with WorkDir(sys.argv[1]).locked(shared=sys.argv[2] == "shared"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _holder(work, shared: bool = False) -> subprocess.Popen:
    """Another process holding the work_dir's lock until its stdin is closed (or it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(work), "shared" if shared else "exclusive"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from dup_pipeline.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _images(folder, n: int = 3):
    for i in range(n):
        save_image(folder / f"{i}.png", noise_image(i))


def test_second_run_is_refused_naming_the_holder_and_keeps_its_temp_files(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    _images(images)
    holder = _holder(work)
    in_flight = work / ".manifest.parquet.abc123.tmp"  # the other run's half-written output
    in_flight.write_bytes(b"partial")
    done = _cli("run", str(images), str(work), "--stats-only", "--quiet")
    assert done.returncode == 1
    assert "in use by another run" in done.stderr and f"pid {holder.pid}@{socket.gethostname()}" in done.stderr
    assert "Traceback" not in done.stderr
    assert in_flight.exists() and not (work / "manifest.parquet").exists()
    report = _cli("report", str(work))  # nor is the report rewritten while a run writes
    assert report.returncode == 1 and f"pid {holder.pid}@" in report.stderr
    holder.communicate("")  # the first run ends and releases the lock
    assert WorkDir(work).lock_file.read_text() == ""
    done = _cli("run", str(images), str(work), "--stats-only", "--quiet")
    assert done.returncode == 0, done.stderr
    assert not in_flight.exists()  # left by a run that is over: cleaned up now


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    _images(images)
    holder = _holder(work)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert f"pid {holder.pid}@" in WorkDir(work).lock_file.read_text()  # the dead run's stale lock file
    summary = run_pipeline(PipelineConfig(images, str(work), report=False), features=False)
    assert summary.good == 3
    assert WorkDir(work).lock_file.read_text() == ""


def test_python_api_is_refused_and_waiting_works(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    _images(images)
    holder = _holder(work)
    with pytest.raises(WorkDirError, match=f"pid {holder.pid}@"):
        update_manifest(WorkDir(work), images)
    started = time.monotonic()
    with pytest.raises(WorkDirError):
        with WorkDir(work).locked(wait=0.5):
            pass
    assert time.monotonic() - started >= 0.5
    messages: list[str] = []
    threading.Timer(1.0, holder.stdin.close).start()  # the other run ends while this one waits
    with WorkDir(work).locked(wait=None, on_wait=messages.append):
        assert f"pid {os.getpid()}@" in WorkDir(work).lock_file.read_text()
    holder.wait()
    assert len(messages) == 1 and f"pid {holder.pid}@" in messages[0]


def test_shared_holders_run_side_by_side_and_exclude_an_exclusive_run(tmp_path):
    work = tmp_path / "work"
    first, second = _holder(work, shared=True), _holder(work, shared=True)  # e.g. two range scans
    with pytest.raises(WorkDirError, match="in use by another run"):
        with WorkDir(work).locked():
            pass
    first.communicate("")
    second.communicate("")
    with WorkDir(work).locked():
        pass


def test_lock_is_reentrant_within_a_process(tmp_path):
    work = WorkDir(tmp_path / "work")
    with work.locked():
        with WorkDir(tmp_path / "work").locked(), work.locked(shared=True):  # nested calls share it
            pass
        assert f"pid {os.getpid()}@" in work.lock_file.read_text()
        holder = subprocess.run([sys.executable, "-c", HOLDER, str(work.root), "shared"], input="",
                                capture_output=True, text=True, timeout=60)
        assert holder.returncode == 1 and "in use by another run" in holder.stderr
    assert work.lock_file.read_text() == ""
    with work.locked(shared=True):
        with pytest.raises(WorkDirError, match="held shared by this process"):
            with work.locked():  # an upgrade would drop the shared lock for a moment
                pass


def test_dagster_steps_wait_for_another_run_and_range_steps_share_the_lock(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    _images(images)
    assets = build_scan_assets("lk")
    resources = {resource_key("lk"): DatasetResource(input_dir=str(images), work_dir=str(work), range_size=5)}
    instance = dg.DagsterInstance.ephemeral()
    holder = _holder(work)  # e.g. a command-line run writing this work_dir
    threading.Timer(2.0, holder.stdin.close).start()
    started = time.monotonic()
    manifest_run = dg.materialize([assets[0]], resources=resources, instance=instance)
    assert manifest_run.success and time.monotonic() - started >= 2.0  # waited for it, did not fail
    holder.wait()
    logs = [e.user_message for e in instance.all_logs(manifest_run.run_id)]
    assert any("waiting for work_dir" in m and f"pid {holder.pid}@" in m for m in logs)
    sharing = _holder(work, shared=True)  # another range step: both scan at once
    scan_run = dg.materialize(assets, selection=[dg.AssetKey(["lk", "image_stats"])], partition_key="0-4",
                              resources=resources, instance=instance)
    assert scan_run.success
    assert not any("waiting for work_dir" in e.user_message for e in instance.all_logs(scan_run.run_id))
    sharing.communicate("")


def test_a_lock_file_that_cannot_be_opened_is_a_work_dir_error(tmp_path):
    work = WorkDir(tmp_path / "work")
    work.lock_file.mkdir(parents=True)  # e.g. left by something else under that name
    with pytest.raises(WorkDirError, match="lock file .* cannot be opened"):
        with work.locked():
            pass


RANGE_HOLDER = """
import sys
from dup_pipeline.core.ranges import OffsetRange
from dup_pipeline.core.workdir import WorkDir
with WorkDir(sys.argv[1]).locked(shared=True), WorkDir(sys.argv[1]).range_locked(OffsetRange.parse(sys.argv[2])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _take_and_release(work: WorkDir) -> None:
    with work.locked():
        pass


def test_two_runs_sharing_the_work_dir_never_scan_one_range_at_once(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    _images(images)
    manifest = update_manifest(WorkDir(work), images)
    holder = subprocess.Popen([sys.executable, "-c", RANGE_HOLDER, str(work), "0-9"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # e.g. a Dagster step of another run
    assert holder.stdout.readline().strip() == "locked"
    in_flight = work / "ranges" / "0-9" / ".scan.rows.abc.parquet.tmp"
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(b"partial")  # the other step's half-written file
    outcomes = []
    step = threading.Thread(target=lambda: outcomes.append(
        scan_range(WorkDir(work), manifest, OffsetRange(0, 9), DecodeSettings(), 1)))
    other = threading.Thread(target=_take_and_release, args=(WorkDir(tmp_path / "other"),), daemon=True)
    with WorkDir(work).locked(shared=True):
        step.start()
        step.join(1.5)
        waited = step.is_alive() and in_flight.exists()  # waits; deletes nothing of the live step
        other.start()
        other.join(10)
        other_blocked = other.is_alive()
        holder.communicate("")  # released in any case, so a failure never hangs the test
        step.join(60)
    assert waited
    assert not other_blocked  # this process's other locks worked while one of its threads waited
    assert outcomes[0].rows == 3 and not in_flight.exists()


def test_fastdup_overwrite_never_clears_a_work_dir_another_run_holds(tmp_path):
    import dup_pipeline as fastdup

    images, work = tmp_path / "images", tmp_path / "work"
    _images(images)
    done = _cli("run", str(images), str(work), "--stats-only", "--quiet")
    assert done.returncode == 0, done.stderr
    holder = _holder(work)
    try:
        fd = fastdup.create(work_dir=str(work), input_dir=str(images))
        assert fd.run(overwrite=True, print_summary=False) == 1  # fastdup's contract: a failed run returns 1
        assert f"pid {holder.pid}@" in fd.error
        assert (work / "manifest.parquet").exists()  # the other run's outputs are untouched
    finally:
        holder.communicate("")
