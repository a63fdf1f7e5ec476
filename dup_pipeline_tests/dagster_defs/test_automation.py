"""The audit automation on real folders: the new-images sensor and the audit schedule run the audit
asset job from their own run requests (asserting the metadata every asset records), a killed audit
resumed, and the audit under the multiprocess and Dask executors.

Every test decodes and embeds real images with the default model; folders are small (13–30
images) and ranges short (5–6 rows) so that partitions, reuse and resumption are all exercised.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob
from PIL import Image
from polars.testing import assert_frame_equal

from dup_pipeline.core.demo import SCENES, draw_class_image, draw_scene
from dup_pipeline.dagster_defs.audit import materialize_dataset
from dup_pipeline.dagster_defs.automation import RANGE_END, RANGE_START, audit_request, register_partitions
from dup_pipeline.dagster_defs.datasets import datasets_from_environment
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import sync_partitions
from dup_pipeline_tests.dagster_defs import jobs_for_tests

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = (160, 120)


# ---------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def scratch_dagster_home(fallback: Path) -> Iterator[Path]:
    """An empty folder for a persistent instance's DAGSTER_HOME: on tmpfs when there is one, because
    every Dagster event is an SQLite commit (~15 ms on this disk, ~0.05 ms on /dev/shm)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        fallback.mkdir(parents=True)
        yield fallback
        return
    path = Path(tempfile.mkdtemp(prefix="dup_pipeline_dagster_home_", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dagster_home(tmp_path) -> Iterator[Path]:
    with scratch_dagster_home(tmp_path / "dagster_home") as home:
        yield home


def reconstructable_audit_job() -> ReconstructableJob:
    """``jobs_for_tests.audit_job`` as a reconstructable job, rebuilt from the current environment.

    Dagster keeps the last reconstructed definition per process (``lru_cache`` on
    ``ReconstructableJob``), and every test here points the same function at another dataset or
    executor through the environment, so the cache is dropped first.
    """
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    return dg.reconstructable(jobs_for_tests.audit_job)


def make_images(folder: Path, count: int, first: int = 0, prefix: str = "img") -> list[Path]:
    """``count`` distinct photo-like scenes ``<prefix>_<i>.jpg`` (deterministic per ``i``; no two pair at
    the default threshold)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(first, first + count):
        path = folder / f"{prefix}_{i:03d}.jpg"
        scene = draw_scene(SCENES[i % len(SCENES)], np.random.default_rng(1000 + i), i, IMAGE_SIZE)
        scene.save(path, quality=90)
        paths.append(path)
    return paths


def make_folder_with_duplicates(folder: Path) -> Path:
    """12 images: 10 distinct ones, a byte-identical copy of the first and a resized copy of the second."""
    paths = make_images(folder, 10)
    (folder / "img_010_copy.jpg").write_bytes(paths[0].read_bytes())
    with Image.open(paths[1]) as img:
        img.resize((128, 96), Image.Resampling.LANCZOS).save(folder / "img_011_resized.jpg", quality=80)
    return folder


def write_datasets_yaml(path: Path, name: str, images: Path, work: Path, range_size: int) -> Path:
    """A ``DUP_PIPELINE_DATASETS`` file, as an operator would write it."""
    path.write_text(f"datasets:\n  {name}:\n    input_dir: {images}\n    work_dir: {work}\n"
                    f"    range_size: {range_size}\n")
    return path


def apply_partition_requests(instance: dg.DagsterInstance, data) -> None:
    """What the daemon does with a tick's dynamic-partition requests."""
    for request in data.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def state_stamps(work: Path) -> dict[str, tuple[int, int]]:
    """Modification times of each finished range's state files (``scan.json``, ``features.json``)."""
    stamps = {}
    for folder in sorted((work / "ranges").iterdir()):
        scan, features = folder / "scan.json", folder / "features.json"
        if scan.exists() and features.exists():
            stamps[folder.name] = (scan.stat().st_mtime_ns, features.stat().st_mtime_ns)
    return stamps


def range_step(dataset: str) -> str:
    """The audit's one step over the run's offset-range partitions."""
    return f"{dataset}_scan_range"


def step_keys(events) -> set[str]:
    return {e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_START}


def materializations(result, dataset: str, name: str) -> dict[str | None, dict]:
    """Metadata values of ``<dataset>/<name>``'s materializations in a run, by partition."""
    found = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key == dg.AssetKey([dataset, name]):
            found[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    return found


def decoded_by_range(result, dataset: str) -> dict[str, tuple[int, int]]:
    """``(decoded_this_run, reused)`` per range, from the features partitions' materializations."""
    return {k: (m["decoded_this_run"], m["reused"]) for k, m in materializations(result, dataset, "features").items()}


def check_evaluations(result) -> dict[str, bool]:
    return {e.event_specific_data.check_name: e.event_specific_data.passed for e in result.all_events
            if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}


def read_outputs(work: Path, images: Path) -> dict:
    """The fastdup-named outputs, with file names made relative to ``images`` (comparable across copies)."""
    prefix = str(images) + os.sep
    relative = pl.col("filename").str.replace(prefix, "", literal=True)
    meta = json.loads((work / "features.json").read_text())
    return {
        "stats": pl.read_csv(work / "atrain_stats.csv").with_columns(relative),
        "similarity": pl.read_csv(work / "similarity.csv", schema_overrides={"from": pl.Int64, "to": pl.Int64,
                                                                             "distance": pl.Float64}),
        "bad": pl.read_csv(work / "features.bad.csv"),
        "feature_rows": pl.read_csv(work / "features.dat.csv").with_columns(relative),
        "features": np.fromfile(work / "features.dat", dtype=np.float32).reshape(meta["count"], meta["dim"]),
    }


def assert_same_outputs(got: dict, expected: dict) -> None:
    assert_frame_equal(got["stats"], expected["stats"])
    assert_frame_equal(got["bad"], expected["bad"])
    assert_frame_equal(got["feature_rows"], expected["feature_rows"], check_exact=True)
    assert_frame_equal(got["similarity"].select("from", "to"), expected["similarity"].select("from", "to"),
                       check_exact=True)
    np.testing.assert_allclose(got["similarity"]["distance"].to_numpy(),
                               expected["similarity"]["distance"].to_numpy(), atol=1e-5)
    assert got["features"].shape == expected["features"].shape
    np.testing.assert_allclose(got["features"], expected["features"], atol=1e-5)


def audit_in_process(yaml_path: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run the configured dataset's audit job in this process, as the schedule requests it (the
    reference for the executors)."""
    datasets = datasets_from_environment({"DUP_PIPELINE_DATASETS": str(yaml_path)})
    ((name, dataset),) = datasets.items()
    job = build_definitions(datasets, executor=dg.in_process_executor).resolve_job_def(f"{name}_audit_job")
    result = job.execute_in_process(instance=instance,
                                    tags=audit_request(name, register_partitions(instance, name, dataset)).tags)
    assert result.success
    return result


# ---------------------------------------------------------------------------------------------
# 1. sensor


def test_sensor_requests_audits_only_for_new_or_changed_images(tmp_path):
    images, work = tmp_path / "images", tmp_path / "work"
    make_images(images, 13)  # ranges 0-4, 5-9, 10-14
    dataset = DatasetResource(input_dir=str(images), work_dir=str(work), range_size=5)
    defs = build_definitions({"sens": dataset}, executor=dg.in_process_executor)
    sensor, job = defs.resolve_sensor_def("sens_new_images_sensor"), defs.resolve_job_def("sens_audit_job")
    assert sensor.job_name == "sens_audit_job"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    instance = dg.DagsterInstance.ephemeral()  # a fresh instance: no partition registered yet

    def evaluate():  # SensorExecutionData, through the sensor daemon's code path
        with dg.build_sensor_context(instance=instance, resources={"sens_dataset": dataset}) as context:
            return sensor.evaluate_tick(context)

    def run(data) -> dg.ExecuteInProcessResult:
        """What the daemon does with the tick: apply the partition requests, launch the run request."""
        apply_partition_requests(instance, data)
        (request,) = data.run_requests
        result = job.execute_in_process(instance=instance, tags=request.tags)
        assert result.success
        return result

    # first evaluation: nothing audited yet -> one run over every range, all registered by the tick
    first = evaluate()
    assert first.skip_message is None and len(first.run_requests) == 1
    first_key = first.run_requests[0].run_key
    assert first.run_requests[0].tags["dup_pipeline/changes"] == "13 new, 0 changed, 0 removed files"
    (request,) = first.dynamic_partitions_requests
    assert request.partitions_def_name == "sens_offset_ranges"
    assert list(request.partition_keys) == ["0-4", "5-9", "10-14"]
    result = run(first)
    assert step_keys(result.all_events) >= {range_step("sens"), "sens__file_manifest", "sens__report"}
    assert decoded_by_range(result, "sens") == {"0-4": (5, 0), "5-9": (5, 0), "10-14": (3, 0)}
    # every asset recorded what a manual materialization records
    assert materializations(result, "sens", "file_manifest")[None]["files"] == 13
    bad = materializations(result, "sens", "dataset_bad_files")[None]
    assert bad["bad_files"] == 0 and bad["bad_fraction"] == 0.0 and bad["path"] == str(work / "bad_files.parquet")
    assert materializations(result, "sens", "feature_matrix")[None]["rows"] == 13
    similarity = materializations(result, "sens", "similarity")[None]
    assert similarity["pairs"] == 0 and similarity["duplicate_fraction"] == 0.0 and "preview" in similarity
    outliers = materializations(result, "sens", "outliers")[None]
    assert outliers["outliers"] == 1 and outliers["outlier_fraction"] == 1 / 13
    report = materializations(result, "sens", "report")[None]
    assert report["path"] == str(work / "report" / "index.html") and report["files"] == 13
    assert "**outliers**: 1" in report["summary"]
    audit = materializations(result, "sens", "audit_summary")[None]
    assert audit["outliers"] == 1 and "wrong_labels" not in audit  # no labels: not measured, not 0
    assert check_evaluations(result) == {"bad_fraction": True, "duplicate_fraction": True,
                                         "isolated_fraction": True}

    # audited and untouched -> skip
    skipped = evaluate()
    assert not skipped.run_requests and skipped.skip_message == "no new, changed or removed images"

    # 3 new images (rows 13, 14 -> range 10-14; row 15 -> new range 15-19),
    # and one changed image (row 2 -> range 0-4)
    make_images(images, 3, first=100, prefix="new")
    changed = images / "img_002.jpg"
    draw_class_image("waves", np.random.default_rng(7), IMAGE_SIZE).save(changed, quality=90)
    os.utime(changed, ns=(time.time_ns(), changed.stat().st_mtime_ns + 5_000_000_000))
    before = state_stamps(work)

    second = evaluate()
    assert second.skip_message is None and len(second.run_requests) == 1
    assert second.run_requests[0].run_key != first_key
    assert second.run_requests[0].tags["dup_pipeline/changes"] == "3 new, 1 changed, 0 removed files"
    (request,) = second.dynamic_partitions_requests
    assert list(request.partition_keys) == ["15-19"]  # only the key that did not exist yet
    result = run(second)
    # only the new or changed images are decoded; range 5-9 is reused and says so
    assert decoded_by_range(result, "sens") == {"0-4": (1, 4), "5-9": (0, 5), "10-14": (2, 3), "15-19": (1, 0)}
    assert materializations(result, "sens", "features")["5-9"]["reused_range"] is True
    after = state_stamps(work)
    assert after["5-9"] == before["5-9"]
    assert after["0-4"] != before["0-4"] and after["10-14"] != before["10-14"] and "15-19" in after
    assert list(instance.get_dynamic_partitions("sens_offset_ranges")) == ["0-4", "5-9", "10-14", "15-19"]
    assert pl.read_csv(work / "features.dat.csv").height == 16
    assert materializations(result, "sens", "feature_matrix")[None]["reused"] is False
    assert evaluate().skip_message == "no new, changed or removed images"


def test_sensor_run_key_differs_when_the_same_file_changes_again(tmp_path):
    images = tmp_path / "images"
    make_images(images, 6)
    dataset = DatasetResource(input_dir=str(images), work_dir=str(tmp_path / "work"), range_size=5)
    defs = build_definitions({"again": dataset}, executor=dg.in_process_executor)
    sensor, job = defs.resolve_sensor_def("again_new_images_sensor"), defs.resolve_job_def("again_audit_job")
    instance = dg.DagsterInstance.ephemeral()

    def evaluate():
        with dg.build_sensor_context(instance=instance, resources={"again_dataset": dataset}) as context:
            return sensor.evaluate_tick(context)

    used_keys = set()
    target = images / "img_003.jpg"
    for edit in range(3):
        data = evaluate()
        (request,) = data.run_requests
        assert request.run_key not in used_keys  # the daemon never launches a run_key twice
        used_keys.add(request.run_key)
        for partitions in data.dynamic_partitions_requests:
            instance.add_dynamic_partitions(partitions.partitions_def_name, list(partitions.partition_keys))
        assert job.execute_in_process(instance=instance, tags=request.tags).success
        draw_class_image("circles", np.random.default_rng(50 + edit), IMAGE_SIZE).save(target, quality=90)
        os.utime(target, ns=(time.time_ns(), target.stat().st_mtime_ns + (edit + 1) * 5_000_000_000))


# ---------------------------------------------------------------------------------------------
# 2. schedule and audit summary


def test_schedule_requests_the_audit_and_the_summary_reports_what_is_new(tmp_path, dagster_home):
    images, work = tmp_path / "images", tmp_path / "work"
    paths = make_images(images, 12)
    dataset = DatasetResource(input_dir=str(images), work_dir=str(work), range_size=5,
                              audit_cron="30 2 * * *")
    defs = build_definitions({"sched": dataset}, executor=dg.in_process_executor)
    schedule, job = defs.resolve_schedule_def("sched_audit_schedule"), defs.resolve_job_def("sched_audit_job")
    assert schedule.job_name == "sched_audit_job"
    assert schedule.cron_schedule == "30 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:  # fresh: the schedule registers partitions
        _audit_twice_then_grow(schedule, job, instance, dataset, images, work, paths)


def _audit_twice_then_grow(schedule, job, instance, dataset, images: Path, work: Path, paths: list[Path]) -> None:

    def tick(when: datetime) -> dg.ExecuteInProcessResult:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                       resources={"sched_dataset": dataset}) as context:
            data = schedule.evaluate_tick(context)
        assert data.skip_message is None and len(data.run_requests) == 1
        request = data.run_requests[0]
        assert request.job_name in (None, "sched_audit_job")
        result = job.execute_in_process(instance=instance, run_config=request.run_config, tags=request.tags)
        assert result.success
        return result

    first = tick(datetime(2026, 1, 5, 2, 30, tzinfo=UTC))
    assert list(instance.get_dynamic_partitions("sched_offset_ranges")) == ["0-4", "5-9", "10-14"]
    totals = materializations(first, "sched", "audit_summary")[None]
    assert totals["duplicate_pairs"] == 0 and totals["bad_files"] == 0
    latest = json.loads((work / "audits" / "latest.json").read_text())
    assert latest["findings"]["duplicate_pairs"] == []
    assert "Compared with: nothing (first audit)" in (work / "audit_summary.md").read_text()

    # nothing changed: every range and every dataset-level asset is reused, and says so
    again = tick(datetime(2026, 1, 6, 2, 30, tzinfo=UTC))
    assert {k: d for k, (d, _) in decoded_by_range(again, "sched").items()} == {"0-4": 0, "5-9": 0, "10-14": 0}
    for name in ("dataset_bad_files", "feature_matrix", "faiss_index", "similarity", "outliers", "report",
                 "audit_summary"):
        assert materializations(again, "sched", name)[None]["reused"] is True, name
    assert materializations(again, "sched", "similarity")[None]["pairs"] == 0  # the same metadata as before

    # between audits: a byte-identical copy of one image and a file that is not an image
    copy = images / "zz_copy_of_003.jpg"
    copy.write_bytes(paths[3].read_bytes())
    (images / "zz_broken.jpg").write_bytes(b"not a jpeg at all")
    second = tick(datetime(2026, 1, 7, 2, 30, tzinfo=UTC))
    # both new rows (12, 13) are in range 10-14
    assert {k for k, (d, _) in decoded_by_range(second, "sched").items() if d} == {"10-14"}
    totals = materializations(second, "sched", "audit_summary")[None]
    assert totals["duplicate_pairs"] == 1 and totals["bad_files"] == 1
    assert totals["new_duplicate_pairs"] == 1 and totals["new_outliers"] == 0

    markdown = (work / "audit_summary.md").read_text()
    assert "| duplicate_pairs | 1 | 1 | 0 |" in markdown
    assert "| bad_files | 1 | 1 | 0 |" in markdown
    assert "| wrong_labels | not measured (no labels) | | |" in markdown
    assert f"Compared with: {latest['when']}" in markdown
    assert f"- `{paths[3]} | {copy}`" in markdown
    now = json.loads((work / "audits" / "latest.json").read_text())
    assert now["findings"]["duplicate_pairs"] == [f"{paths[3]} | {copy}"]
    assert now["findings"]["bad_files"] == [f"{images / 'zz_broken.jpg'} | not_an_image"]


# ---------------------------------------------------------------------------------------------
# 3. kill and resume

CHILD = textwrap.dedent("""
    import sys, time
    import dagster as dg
    import dup_pipeline.core.stages as stages
    from dup_pipeline_tests.dagster_defs import jobs_for_tests

    real_scan_range = stages.scan_range

    def scan_range_then_pause(*args, **kwargs):
        # widen the gap between two ranges so that the parent's SIGKILL lands mid-audit
        outcome = real_scan_range(*args, **kwargs)
        time.sleep(float(sys.argv[1]))
        return outcome

    stages.scan_range = scan_range_then_pause
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(jobs_for_tests.audit_job), instance=instance,
                                tags=jobs_for_tests.audit_tags(instance))
        sys.exit(0 if result.success else 1)
""")

KILL_IMAGES, KILL_RANGE_SIZE = 30, 5
KILL_RANGES = [f"{s}-{s + KILL_RANGE_SIZE - 1}" for s in range(0, KILL_IMAGES, KILL_RANGE_SIZE)]


@pytest.fixture(scope="module")
def killed_audit(tmp_path_factory) -> Iterator[dict]:
    """An audit killed with SIGKILL after its first range finished: its work_dir and DAGSTER_HOME
    (tests resume copies of them), plus the outputs of an uninterrupted audit of a copy of the folder."""
    root = tmp_path_factory.mktemp("killed")
    with scratch_dagster_home(root / "dagster_home") as home:
        yield _kill_an_audit(root, home)


def _kill_an_audit(root: Path, home: Path) -> dict:
    images, work = root / "images", root / "work"
    make_images(images, KILL_IMAGES)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = write_datasets_yaml(root / "datasets.yaml", "kr", images, work, KILL_RANGE_SIZE)
    env = {**os.environ, "DUP_PIPELINE_DATASETS": str(config), "DUP_PIPELINE_EXECUTOR": "in_process",
           "DAGSTER_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(root / "child.log", "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, "1.5"], env=env, cwd=REPO, stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not list(work.glob("ranges/*/features.json")):
                assert child.poll() is None, (root / "child.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no range finished within 120 s"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
            assert child.wait(30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    finished = state_stamps(work)
    assert 1 <= len(finished) < len(KILL_RANGES), finished
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (killed_run,) = instance.get_runs()
        assert killed_run.status == dg.DagsterRunStatus.STARTED  # nobody told the instance it died
    # the same audit, never interrupted, on a copy of the folder
    reference_images, reference_work = root / "reference" / "images", root / "reference" / "work"
    shutil.copytree(images, reference_images)
    reference_config = write_datasets_yaml(root / "reference.yaml", "kr", reference_images, reference_work,
                                           KILL_RANGE_SIZE)
    audit_in_process(reference_config, dg.DagsterInstance.ephemeral())
    return {"root": root, "images": images, "work": work, "home": home, "finished": finished,
            "run_id": killed_run.run_id, "expected": read_outputs(reference_work, reference_images)}


def resume_copy(killed: dict, target: Path, home: Path | None = None) -> tuple[Path, Path]:
    """A private copy of the killed audit's work_dir (in ``target``) and DAGSTER_HOME (in ``home``)."""
    work = target / "work"
    shutil.copytree(killed["work"], work)
    if home is not None:
        shutil.copytree(killed["home"], home, dirs_exist_ok=True)
    config = write_datasets_yaml(target / "datasets.yaml", "kr", killed["images"], work, KILL_RANGE_SIZE)
    return work, config


def test_killed_audit_resumes_without_redoing_finished_ranges(killed_audit, tmp_path, dagster_home):
    work, config = resume_copy(killed_audit, tmp_path, dagster_home)
    finished = killed_audit["finished"]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:  # the killed run's instance
        result = audit_in_process(config, instance)
    # finished ranges are reused (their state files untouched), only the others are decoded
    assert {k: v for k, v in state_stamps(work).items() if k in finished} == finished
    assert decoded_by_range(result, "kr") == {k: (0, KILL_RANGE_SIZE) if k in finished else (KILL_RANGE_SIZE, 0)
                                              for k in KILL_RANGES}
    assert not [p for p in work.rglob("*") if p.name.endswith(".tmp")]
    assert_same_outputs(read_outputs(work, killed_audit["images"]), killed_audit["expected"])


def test_resumed_audit_removes_half_written_files(killed_audit, tmp_path, dagster_home):
    work, config = resume_copy(killed_audit, tmp_path, dagster_home)
    unfinished = next(k for k in KILL_RANGES if k not in killed_audit["finished"])
    # what SIGKILL between atomic_path's mkstemp and its os.replace leaves behind
    (work / "ranges" / unfinished).mkdir(exist_ok=True)
    (work / "ranges" / unfinished / ".features.npy.k1ll3d.tmp").write_bytes(b"\x93NUMPY half")
    (work / ".features.dat.k1ll3d.tmp").write_bytes(b"\0" * 4096)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        audit_in_process(config, instance)
    assert not [p for p in work.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("product", ["scan", "features"])
def test_audit_recovers_from_a_kill_between_the_two_state_writes(killed_audit, tmp_path, product):
    work, config = resume_copy(killed_audit, tmp_path)
    finished = next(iter(killed_audit["finished"]))
    # _save_state writes <product>.rows.parquet, then <product>.json: killed in between (first scan)
    (work / "ranges" / finished / f"{product}.json").unlink()
    audit_in_process(config, dg.DagsterInstance.ephemeral())
    assert_same_outputs(read_outputs(work, killed_audit["images"]), killed_audit["expected"])


def test_killed_audit_reexecuted_from_failure_is_complete(killed_audit, tmp_path, dagster_home,
                                                          monkeypatch):
    work, config = resume_copy(killed_audit, tmp_path, dagster_home)
    monkeypatch.setenv("DUP_PIPELINE_DATASETS", str(config))
    monkeypatch.setenv("DUP_PIPELINE_EXECUTOR", "in_process")
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        killed = instance.get_run_by_id(killed_audit["run_id"])
        instance.report_run_failed(killed)  # what run monitoring does when the run worker is gone
        options = dg.ReexecutionOptions.from_failure(killed.run_id, instance)
        partitions = {k: v for k, v in killed.tags.items() if k in (RANGE_START, RANGE_END)}  # as the UI keeps them
        assert partitions[RANGE_START] == KILL_RANGES[0] and partitions[RANGE_END] == KILL_RANGES[-1]
        with dg.execute_job(reconstructable_audit_job(), instance=instance, reexecution_options=options,
                            tags=partitions) as result:
            assert result.success
    assert_same_outputs(read_outputs(work, killed_audit["images"]), killed_audit["expected"])


# ---------------------------------------------------------------------------------------------
# 4./5. executors


@pytest.fixture(scope="module")
def executor_folder(tmp_path_factory):
    """A 12-image folder with duplicates (2 ranges of 6) and its in-process audit outputs."""
    root = tmp_path_factory.mktemp("executors")
    images = make_folder_with_duplicates(root / "in_process" / "images")
    config = write_datasets_yaml(root / "in_process.yaml", "ex", images, root / "in_process" / "work", 6)
    audit_in_process(config, dg.DagsterInstance.ephemeral())
    expected = read_outputs(root / "in_process" / "work", images)
    assert expected["similarity"].height >= 2 and expected["features"].shape == (12, 1280)
    return {"images": images, "expected": expected}


def run_audit_with_executor(executor: str, folder: dict, tmp_path: Path, home: Path, monkeypatch) -> list:
    """Audit a copy of the folder with ``DUP_PIPELINE_EXECUTOR=executor`` on a persistent instance."""
    images, work = tmp_path / "images", tmp_path / "work"
    shutil.copytree(folder["images"], images)
    config = write_datasets_yaml(tmp_path / "datasets.yaml", "ex", images, work, 6)
    monkeypatch.setenv("DUP_PIPELINE_DATASETS", str(config))
    monkeypatch.setenv("DUP_PIPELINE_EXECUTOR", executor)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        with dg.execute_job(reconstructable_audit_job(), instance=instance,
                            tags=jobs_for_tests.audit_tags(instance)) as result:
            assert result.success
            events = list(result.all_events)
    assert_same_outputs(read_outputs(work, images), folder["expected"])
    return events


def step_pids(events) -> set[int]:
    """Process ids of the steps."""
    return {e.pid for e in events if e.event_type == dg.DagsterEventType.STEP_START}


@pytest.mark.slow  # a process per step: minutes on a loaded 2-core machine
def test_multiprocess_executor_matches_in_process(executor_folder, tmp_path, dagster_home, monkeypatch):
    events = run_audit_with_executor("multiprocess", executor_folder, tmp_path, dagster_home, monkeypatch)
    assert any("multiprocess executor" in (e.message or "") for e in events)
    assert os.getpid() not in step_pids(events)  # each step in a child process


@pytest.mark.slow
def test_dask_executor_matches_in_process(executor_folder, tmp_path, dagster_home, monkeypatch):
    pytest.importorskip("dagster_dask")
    events = run_audit_with_executor("dask", executor_folder, tmp_path, dagster_home, monkeypatch)
    assert any("Dask cluster" in (e.message or "") for e in events)
    assert os.getpid() not in step_pids(events)  # steps ran on the Dask workers


# ---------------------------------------------------------------------------------------------
# 5. partitions and run mode 3 in the audit


def test_sync_partitions_adds_new_and_deletes_stale_keys():
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("x_offset_ranges", ["0-9", "10-19", "20-29"])
    added, deleted = sync_partitions(instance, dg.DynamicPartitionsDefinition(name="x_offset_ranges"),
                                     ["0-14", "15-29", "10-19"])
    assert (added, deleted) == (["0-14", "15-29"], ["0-9", "20-29"])
    assert set(instance.get_dynamic_partitions("x_offset_ranges")) == {"0-14", "15-29", "10-19"}
    assert sync_partitions(instance, "x_offset_ranges", ["0-14", "15-29", "10-19"]) == ([], [])


def test_audit_refreshes_cross_similarity_and_deletes_stale_partitions(demo_dataset, tmp_path):
    train = DatasetResource(input_dir=str(demo_dataset.images / "train"), work_dir=str(tmp_path / "train"))
    test = DatasetResource(input_dir=str(demo_dataset.images / "test"), work_dir=str(tmp_path / "test"),
                           compare_to="train")
    defs = build_definitions({"train": train, "test": test}, executor=dg.in_process_executor)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("train_offset_ranges", ["900000-999999"])  # e.g. from another range_size
    # the reference has no index yet: the audit succeeds and says so
    materialize_dataset(defs, "test", instance)
    assert instance.get_latest_materialization_event(dg.AssetKey(["test", "cross_similarity"])) is None
    materialize_dataset(defs, "train", instance)
    assert "900000-999999" not in instance.get_dynamic_partitions("train_offset_ranges")
    materialize_dataset(defs, "test", instance)
    event = instance.get_latest_materialization_event(dg.AssetKey(["test", "cross_similarity"]))
    assert event.asset_materialization.metadata["pairs"].value >= 4
    pairs = pl.read_parquet(tmp_path / "test" / "cross_similarity.parquet")
    root = str(demo_dataset.images) + "/"
    found = {(a.removeprefix(root), b.removeprefix(root)) for a, b in zip(pairs["filename_to"], pairs["filename_from"])}
    assert {tuple(p) for p in demo_dataset.ground_truth()["leakage"]} <= found
