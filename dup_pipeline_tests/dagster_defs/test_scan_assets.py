import importlib
import sys

import dagster as dg
import polars as pl
from PIL import Image

from dup_pipeline.dagster_defs.audit import materialize_dataset
from dup_pipeline.dagster_defs.automation import RANGE_END, RANGE_START
from dup_pipeline.dagster_defs.datasets import datasets_from_environment
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import build_scan_assets, resource_key


def test_materialize_dataset_end_to_end(demo_dataset, tmp_path):
    work = tmp_path / "work"
    defs = build_definitions({"demo": DatasetResource(input_dir=str(demo_dataset.images), work_dir=str(work),
                                                      range_size=30)})
    instance = dg.DagsterInstance.ephemeral()
    keys = materialize_dataset(defs, "demo", instance)
    n = pl.read_parquet(work / "manifest.parquet").height
    assert keys == [f"{s}-{s + 29}" for s in range(0, n, 30)]
    bad = pl.read_csv(work / "features.bad.csv")
    assert sorted(bad["error_code"].to_list()) == sorted(demo_dataset.ground_truth()["bad_files"].values())
    event = instance.get_latest_materialization_event(dg.AssetKey(["demo", "dataset_bad_files"]))
    meta = event.asset_materialization.metadata
    assert meta["bad_files"].value == 4 and meta["path"].path == str(work / "bad_files.parquet")
    assert instance.get_materialized_partitions(dg.AssetKey(["demo", "image_stats"])) == set(keys)
    records = instance.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION,
                                                               asset_key=dg.AssetKey(["demo", "features"])))
    per_range = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    assert {k: m["decoded_this_run"].value for k, m in per_range.items()} == {
        k: min(30, n - int(k.split("-")[0])) for k in keys}
    assert per_range[keys[0]]["path"].path == str(work / "ranges" / keys[0])


def test_partition_rerun_reuses_the_range(demo_dataset, tmp_path):
    dataset = DatasetResource(input_dir=str(demo_dataset.images), work_dir=str(tmp_path / "work"), range_size=50)
    assets = build_scan_assets("ds")
    resources = {resource_key("ds"): dataset}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([assets[0]], resources=resources, instance=instance).success
    runs = [
        dg.materialize(assets, selection=[dg.AssetKey(["ds", "image_stats"])], partition_key="0-49",
                       resources=resources, instance=instance)
        for _ in range(2)
    ]
    decoded = [r.asset_materializations_for_node("ds_scan_range")[0].metadata["decoded_this_run"].value
               for r in runs]
    assert decoded == [50, 0]


def test_datasets_from_environment(tmp_path):
    config = tmp_path / "datasets.yaml"
    config.write_text("datasets:\n  flowers:\n    input_dir: /data/f\n    work_dir: /data/w\n    range_size: 5\n"
                      "  cars:\n    input_dir: /data/c\n    work_dir: /data/cw\n")
    datasets = datasets_from_environment({"DUP_PIPELINE_DATASETS": str(config)})
    assert set(datasets) == {"flowers", "cars"} and datasets["flowers"].range_size == 5
    defs = build_definitions(datasets)
    dg.Definitions.validate_loadable(defs)  # what `dagster dev` does: e.g. op names must be unique
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"flowers/file_manifest", "cars/image_stats"} <= keys
    default = datasets_from_environment({"DUP_PIPELINE_DEMO_DIR": str(tmp_path / "d")})
    assert default["demo"].generate_demo_if_missing
    dg.Definitions.validate_loadable(build_definitions(default))


def test_code_location_registers_partitions_so_materialize_all_launches_on_a_fresh_instance(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(7):
        Image.effect_noise((64, 48), 40 + 10 * i).convert("RGB").save(images / f"{i}.png")
    (tmp_path / "datasets.yaml").write_text(f"datasets:\n  fresh:\n    input_dir: {images}\n"
                                            f"    work_dir: {tmp_path / 'work'}\n    range_size: 4\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DUP_PIPELINE_DATASETS", str(tmp_path / "datasets.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delitem(sys.modules, "dup_pipeline.dagster_defs.location", raising=False)
    location = importlib.import_module("dup_pipeline.dagster_defs.location")  # what loading the code location does
    with dg.DagsterInstance.get() as instance:
        keys = list(instance.get_dynamic_partitions("fresh_offset_ranges"))
        assert keys == ["0-3", "4-7"]  # before anything ran
        # "Materialize all": every asset over every partition, in one run (single-run backfill policy)
        result = location.defs.resolve_job_def("fresh_audit_job").execute_in_process(
            instance=instance, tags={RANGE_START: keys[0], RANGE_END: keys[-1]})
        assert result.success
        assert instance.get_materialized_partitions(dg.AssetKey(["fresh", "features"])) == set(keys)
        report = instance.get_latest_materialization_event(dg.AssetKey(["fresh", "report"])).asset_materialization
        assert report.metadata["path"].path == str(tmp_path / "work" / "report" / "index.html")
        issues = instance.get_latest_materialization_event(dg.AssetKey(["fresh", "image_issues"]))
        assert issues.asset_materialization.metadata["grayscale"].value == 7  # effect_noise: gray images
