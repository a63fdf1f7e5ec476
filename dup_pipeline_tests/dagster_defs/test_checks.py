import dagster as dg
import polars as pl

from dup_pipeline.dagster_defs.audit import materialize_dataset
from dup_pipeline.dagster_defs.automation import audit_request
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline.dagster_defs.resources import DatasetResource


def _evaluations(instance: dg.DagsterInstance, dataset: str) -> dict[str, dg.AssetCheckEvaluation]:
    found = {}
    for record in instance.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION)):
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.asset_key.path[0] == dataset:
            found[evaluation.check_name] = evaluation
    return found


def test_label_assets_and_checks_pass_and_fail(demo_dataset, tmp_path):
    strict = DatasetResource(input_dir=str(demo_dataset.images), work_dir=str(tmp_path / "strict"),
                             labels=str(demo_dataset.labels))
    lenient = DatasetResource(input_dir=str(demo_dataset.images), work_dir=str(tmp_path / "lenient"),
                              labels=str(demo_dataset.labels), max_duplicate_fraction=0.5, max_label_error_rate=0.1,
                              max_leakage_pairs=10, max_bad_fraction=0.1)
    defs = build_definitions({"strict": strict, "lenient": lenient})
    instance = dg.DagsterInstance.ephemeral()
    for name in ("strict", "lenient"):
        materialize_dataset(defs, name, instance)
    strict_checks, lenient_checks = _evaluations(instance, "strict"), _evaluations(instance, "lenient")
    assert set(strict_checks) == {"bad_fraction", "duplicate_fraction", "isolated_fraction", "label_error_rate",
                                  "leakage_pairs"}
    assert all(e.passed for e in lenient_checks.values())
    assert strict_checks["bad_fraction"].passed  # 4 of 84 files
    assert not strict_checks["duplicate_fraction"].passed  # the demo plants many duplicates
    assert strict_checks["duplicate_fraction"].severity == dg.AssetCheckSeverity.ERROR
    assert not strict_checks["leakage_pairs"].passed
    assert strict_checks["leakage_pairs"].severity == dg.AssetCheckSeverity.WARN
    assert strict_checks["leakage_pairs"].metadata["leakage_pairs"].value == 4
    mislabels = pl.read_csv(tmp_path / "strict" / "mislabels.csv")
    assert mislabels.height == len(demo_dataset.ground_truth()["wrong_labels"])
    report = instance.get_latest_materialization_event(dg.AssetKey(["strict", "report"])).asset_materialization
    assert "likely wrong labels**: 4" in report.metadata["summary"].value
    assert report.metadata["path"].path == str(tmp_path / "strict" / "report" / "index.html")


def test_audit_job_evaluates_checks_and_blocking_checks_fail_the_run(demo_dataset, tmp_path):
    work = tmp_path / "audited"
    settings = {"input_dir": str(demo_dataset.images), "work_dir": str(work), "labels": str(demo_dataset.labels)}
    defs = build_definitions({"audited": DatasetResource(**settings, expected_failures=["duplicate_fraction"]),
                              "blocking": DatasetResource(**settings, blocking_checks=True)})
    instance = dg.DagsterInstance.ephemeral()
    materialize_dataset(defs, "audited", instance)
    checks = _evaluations(instance, "audited")
    assert set(checks) == {"bad_fraction", "duplicate_fraction", "isolated_fraction", "label_error_rate",
                           "leakage_pairs"}
    assert checks["bad_fraction"].passed
    assert not checks["duplicate_fraction"].passed
    assert checks["duplicate_fraction"].severity == dg.AssetCheckSeverity.ERROR
    assert not checks["leakage_pairs"].passed
    assert checks["leakage_pairs"].severity == dg.AssetCheckSeverity.WARN
    assert checks["leakage_pairs"].metadata["leakage_pairs"].value == 4
    assert "fails on purpose" in checks["duplicate_fraction"].metadata["expected"].value
    assert "expected" not in checks["leakage_pairs"].metadata
    # the same outputs (nothing stale to scan again), but failing ERROR checks now fail the run
    defs.resolve_job_def("blocking_manifest_job").execute_in_process(instance=instance)
    keys = instance.get_dynamic_partitions("blocking_offset_ranges")
    blocked = defs.resolve_job_def("blocking_audit_job").execute_in_process(
        instance=instance, raise_on_error=False, tags=audit_request("blocking", keys).tags)
    assert not blocked.success
    failure = next(e for e in blocked.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message
    assert "duplicate_fraction" in message and "leakage_pairs" not in message
    assert not _evaluations(instance, "blocking")["duplicate_fraction"].passed


def test_dataset_without_good_images_skips_the_index_and_writes_empty_tables(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"broken_{i}.jpg").write_bytes(b"not an image %d" % i)
    defs = build_definitions({"broken": DatasetResource(input_dir=str(images), work_dir=str(tmp_path / "work"),
                                                        max_bad_fraction=1.0)})
    instance = dg.DagsterInstance.ephemeral()
    materialize_dataset(defs, "broken", instance)
    index = instance.get_latest_materialization_event(dg.AssetKey(["broken", "faiss_index"])).asset_materialization
    assert index.metadata["vectors"].value == 0 and "no vectors" in index.metadata["skipped"].value
    assert pl.read_csv(tmp_path / "work" / "similarity.csv").height == 0
    assert pl.read_csv(tmp_path / "work" / "outliers.csv").height == 0
    checks = _evaluations(instance, "broken")
    assert set(checks) == {"bad_fraction", "duplicate_fraction", "isolated_fraction"}
    assert all(e.passed for e in checks.values())
    materialize_dataset(defs, "broken", instance)  # again: nothing changed, every asset reused
    index = instance.get_latest_materialization_event(dg.AssetKey(["broken", "faiss_index"])).asset_materialization
    assert index.metadata["reused"].value is True
